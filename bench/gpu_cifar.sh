#!/usr/bin/env bash
# The CIFAR-10 runs of README.md on one GPU with the JAX backend (no TensorFlow needed):
#   BUDGET_S=520 bash bench/gpu_cifar.sh <cifar_zip> <out_dir>
# (MAX_SCALE=0.03 with a tiny zip checks the script itself in minutes on a CPU.)
# ResNet-20 with the paper's recipe and with the modern improvements (weight decay 5e-4, cosine,
# cutout), and the plain/residual depth comparison at one equal budget, all sharing the GPU.
# The GPU's speed under this load is measured first (3 epochs of every run at once) and the
# planned epochs are scaled down together, if need be, so that every run finishes in BUDGET_S.
set -u
cifar=${1:?cifar zip} out=${2:?out dir}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
budget=${BUDGET_S:-520}
start=$(date +%s)
mkdir -p "$out/calib" "$out/cifar"
# name:model:planned epochs:extra flags ("," for spaces)
runs=(
  "paper:resnet20:200:"
  "wd5e-4:resnet20:200:--weight_decay=5e-4"
  "wd5e-4_cosine:resnet20:200:--weight_decay=5e-4,--schedule=cosine"
  "wd5e-4_cosine_cutout:resnet20:200:--weight_decay=5e-4,--schedule=cosine,--cutout=16"
  "depth:plain20:100:"
  "depth:plain56:100:"
  "depth:resnet20:100:"
  "depth:resnet56:100:"
)
launch() {  # launch <dir> <epochs-or-scale> ; epochs=0 means scale the planned epochs
  local dir=$1 scale=$2 spec tag model planned extra epochs
  for spec in "${runs[@]}"; do
    IFS=: read -r tag model planned extra <<< "$spec"
    if [ "$dir" = calib ]; then epochs=3; else epochs=$(python3 -c "print(max(4, int($planned * $scale)))"); fi
    [ "$tag" = depth ] && tag=depth_e$(python3 -c "print(max(4, int(100 * $scale)))")
    [ "$dir" = calib ] && tag=calib_${spec%%:*}
    timeout $((budget - ($(date +%s) - start))) python3 bench/cifar_resnet.py --models="$model" \
      --epochs="$epochs" --tag="$tag" ${extra//,/ } --steps_per_execution="${SPE:-4}" \
      --data="$cifar" --out_dir="$out/$dir" \
      > "$out/$dir/${model}_$tag.log" 2>&1 &
  done
  wait
}
launch calib 1
# Seconds per epoch of each run at full load (epochs 2-3, after compilation), and the scale that
# fits the slowest planned run into what is left of the budget (a 10% margin, 40 s to compile).
scale=$(python3 - "$out/calib" "$budget" "$start" "${MAX_SCALE:-1}" <<'PY'
import glob, json, sys, time
folder, budget, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
planned = {"resnet20": 200, "plain20": 100, "plain56": 100, "resnet56": 100}
need = []
for f in glob.glob(f"{folder}/*.json"):
    r = json.load(open(f))
    t = r["epoch_end_seconds"]
    per_epoch = (t[2] - t[0]) / 2
    print(f"{r['run']}: {per_epoch:.2f} s/epoch at full load", file=sys.stderr)
    need.append(planned[r["model"]] * per_epoch)
left = budget - (time.time() - start) - 40
print(f"{min(float(sys.argv[4]), 0.9 * left / max(need)):.3f}")
PY
)
echo "scale of the planned epochs: $scale"
launch cifar "$scale"
python3 bench/cifar_resnet.py --plot --models=plain20,plain56,resnet20,resnet56 \
  --tag=depth_e$(python3 -c "print(max(4, int(100 * $scale)))") --out_dir="$out/cifar"
tail -qn 1 "$out"/cifar/*.log
