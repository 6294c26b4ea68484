#!/usr/bin/env bash
# The CIFAR-10 runs of docs/classifier.md on one GPU with the JAX backend (no TensorFlow needed):
#   BUDGET_S=520 RUNS=depth bash bench/gpu_cifar.sh <cifar_zip> <out_dir>
# RUNS=recipes: ResNet-20 with the paper's recipe and with the modern improvements (weight decay
# 5e-4, cosine, cutout), 3 seeds of the best; RUNS=depth: plain-20/56 and ResNet-20/56 at one
# equal budget (the paper's Figure 6); RUNS=all: both. All runs share the GPU at once.
# The GPU's speed under this load is measured first (5 epochs of every run at once, timing only
# the epochs that end after every run has compiled) and the planned epochs are scaled down
# together, if need be, so that every run finishes within BUDGET_S. Then tar <out_dir>: the
# device tool returns only a few files. (MAX_SCALE=0.03 with a tiny zip checks this script in
# minutes on a CPU.)
set -u
cifar=${1:?cifar zip} out=${2:?out dir}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
budget=${BUDGET_S:-520}
start=$(date +%s)
mkdir -p "$out/calib" "$out/cifar"
# name:model:planned epochs:extra flags ("," for spaces)
recipes=(
  "paper:resnet20:200:"
  "wd5e-4_cosine_cutout:resnet20:200:--weight_decay=5e-4,--schedule=cosine,--cutout=16"
  "wd5e-4_cosine_cutout_seed1:resnet20:200:--weight_decay=5e-4,--schedule=cosine,--cutout=16,--seed=1"
  "wd5e-4_cosine_cutout_seed2:resnet20:200:--weight_decay=5e-4,--schedule=cosine,--cutout=16,--seed=2"
)
depth=("depth:plain20:100:" "depth:plain56:100:" "depth:resnet20:100:" "depth:resnet56:100:")
case ${RUNS:-all} in
  recipes) runs=("${recipes[@]}") ;;
  depth) runs=("${depth[@]}") ;;
  all) runs=("${recipes[@]}" "${depth[@]}") ;;
  *) echo "RUNS must be recipes, depth or all, got ${RUNS}" >&2; exit 2 ;;
esac
depth_tag() { echo "depth_e$(python3 -c "print(max(4, int(100 * $1)))")"; }
launch() {  # launch <calib|cifar> <scale of the planned epochs>
  local dir=$1 scale=$2 spec tag model planned extra epochs
  for spec in "${runs[@]}"; do
    IFS=: read -r tag model planned extra <<< "$spec"
    epochs=$(python3 -c "print(max(4, int($planned * $scale)))")
    [ "$tag" = depth ] && tag=$(depth_tag "$scale")
    [ "$dir" = calib ] && epochs=5 tag=calib_${spec%%:*}
    timeout $((budget - ($(date +%s) - start))) python3 -m bench.cifar_resnet --models="$model" \
      --epochs="$epochs" --tag="$tag" ${extra//,/ } --steps_per_execution="${SPE:-4}" \
      --data="$cifar" --out_dir="$out/$dir" \
      > "$out/$dir/${model}_$tag.log" 2>&1 &
  done
  wait
}
launch calib 1
planned=$(printf '%s\n' "${runs[@]}" | cut -d: -f2,3 | sort -u | tr '\n' ' ')
scale=$(python3 - "$out/calib" "$budget" "$start" "${MAX_SCALE:-1}" $planned <<'PY'
import glob, json, sys, time
folder, budget, start, max_scale = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
planned = {}
for item in sys.argv[5:]:
    model, epochs = item.split(":")
    planned[model] = max(planned.get(model, 0), int(epochs))
runs = [json.load(open(f)) for f in glob.glob(f"{folder}/*.json")]
for r in runs:  # epoch ends in one clock for all runs
    r["ends"] = [r["start_unix"] + t for t in r["epoch_end_seconds"]]
all_compiled = max(r["ends"][0] for r in runs)
need = []
for r in runs:
    ends = [t for t in r["ends"] if t > all_compiled]
    if len(ends) >= 2:
        per_epoch = (ends[-1] - ends[0]) / (len(ends) - 1)
    else:  # the run finished before all compiled: it ran with less company, so pad its rate
        per_epoch = 2 * (r["ends"][-1] - r["ends"][0]) / (len(r["ends"]) - 1)
    print(f"{r['run']}: {per_epoch:.2f} s/epoch at full load", file=sys.stderr)
    need.append(planned[r["model"]] * per_epoch)
left = budget - (time.time() - start) - 60  # 60 s to compile again
print(f"{min(max_scale, 0.85 * left / max(need)):.3f}")
PY
)
echo "scale of the planned epochs: $scale"
launch cifar "$scale"
if [ "${RUNS:-all}" != recipes ]; then
  python3 -m bench.cifar_resnet --plot --models=plain20,plain56,resnet20,resnet56 \
    --tag="$(depth_tag "$scale")" --out_dir="$out/cifar"
fi
tail -qn 1 "$out"/cifar/*.log
