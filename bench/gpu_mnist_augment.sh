export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
timeout ${BUDGET_S:-300} python3 bench/mnist_accuracy.py --recipes=mnist_augment --seeds=0,1,2,3,4 --jobs=5 --host_augment --data_dir=.devdata --out_dir=/tmp/acc2
tar czf $OUT/results2.tgz -C /tmp/acc2 .; tail -n 3 /tmp/acc2/*.log; cat /tmp/acc2/summary.md
