#!/usr/bin/env bash
# The MNIST accuracy runs of docs/mnist.md on one GPU with the JAX backend (no TensorFlow needed):
#   bash bench/gpu_accuracy.sh <mnist_idx_dir> <out_dir>
# The book recipe and the augmented recipe, 5 seeds each (the latter also as an ensemble), all
# sharing the GPU at once; each writes its results as it goes. The CIFAR runs: bench/gpu_cifar.sh.
set -u
mnist=${1:?mnist dir} out=${2:?out dir}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$out/mnist"
timeout "${BUDGET_S:-480}" python3 -m bench.mnist_accuracy --recipes=mnist,mnist_augment \
  --seeds=0,1,2,3,4 --jobs=10 --host_augment --data_dir="$mnist" --out_dir="$out/mnist"
