#!/usr/bin/env bash
# The accuracy runs of README.md on one GPU with the JAX backend (no TensorFlow needed):
#   bash bench/gpu_accuracy.sh <mnist_idx_dir> <cifar_zip> <out_dir>
# MNIST: the book recipe (3 seeds) and the augmented recipe (5 seeds, also the ensemble);
# CIFAR: ResNet-20 (100 epochs) and the plain/residual depth comparison (40 epochs).
# All runs share the GPU at once; each writes its results as it goes.
set -u
mnist=${1:?mnist dir} cifar=${2:?cifar zip} out=${3:?out dir}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$out/cifar" "$out/mnist"
budget=${BUDGET_S:-480}
for spec in resnet20:100 plain20:40 plain56:40 resnet56:40; do
  timeout "$budget" python3 bench/cifar_resnet.py --models="${spec%%:*}" --epochs="${spec##*:}" \
    --data="$cifar" --out_dir="$out/cifar" > "$out/cifar/${spec%%:*}.log" 2>&1 &
done
timeout "$budget" python3 bench/mnist_accuracy.py --recipes=mnist,mnist_augment --seeds=0,1,2,3,4 \
  --jobs=10 --host_augment --data_dir="$mnist" --out_dir="$out/mnist"
wait
python3 bench/cifar_resnet.py --plot --models=plain20,plain56,resnet20,resnet56 --out_dir="$out/cifar"
tail -n 2 "$out"/cifar/*.log
