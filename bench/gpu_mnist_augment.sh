# On the lent GPU machine (device tool), from the repository root with the suite's wheels in .whl/
# and the MNIST IDX files in .devdata/: the augmented recipe, one run per seed, all at once, and the
# averaged-softmax ensemble of them (summary.md), returned as $OUT/results2.tgz. Runs already in
# OUT_DIR are kept and join the ensemble, so seeds trained in another session add to it: unpack
# that session's results2.tgz into a folder of the working tree, carry it, and name it:
#   SEEDS=0,1,2,3,4,5,6,7,8,9,10,11 OUT_DIR=.devresults BUDGET_S=540 bash bench/gpu_mnist_augment.sh
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
seeds=${SEEDS:-0,1,2,3,4} out=${OUT_DIR:-/tmp/acc2}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
timeout ${BUDGET_S:-300} python3 -m bench.mnist_accuracy --recipes=mnist_augment --seeds=$seeds --jobs=$(echo $seeds | tr ',' '\n' | wc -l) --host_augment --data_dir=.devdata --out_dir=$out
tar czf $OUT/results2.tgz -C $out .; tail -n 3 $out/*.log; cat $out/summary.md
