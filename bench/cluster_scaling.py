"""Step time across 1, 2 and 3 nodes at several link speeds, against bench/SCALING.md's model.

Usage (root: it builds a cluster of network namespaces with launch/slurm_cluster.sh and takes
it down at the end, also after a failure):

    python -m bench.cluster_scaling --out=bench/results/cluster_scaling.json
    python -m bench.cluster_scaling --networks=deep_convnet --caps=unlimited,10mbit --steps=10

Every worker is a process in its own namespace (its own address, a veth into a bridge), the
links capped both ways with `tc tbf` by `slurm_cluster.sh cap`. Each worker keeps its batch
(weak scaling, as the model assumes): DeepConvNet 100 images, ResNet-20 64 (with synchronised
batch norm across workers, as the classifier trains it). Each worker gets 1 intra-op and 1
inter-op thread, so a node is "one core"; 3 workers share this machine's 2 cores, which the
model's compute term sees because it is measured under the same load.

Per worker and configuration it measures
- the training step (Keras `fit`, MultiWorkerMirroredStrategy, median after the warm-up);
- the compute alone: the same network trained locally, without collectives, by all workers at
  once (so under the same CPU sharing as the step);
- the bare all-reduce of the model's gradients (every trainable variable's shape, one
  `ReplicaContext.all_reduce` as Keras' optimizer calls it) and of one float (the latency of one
  collective).
The model (SCALING.md) predicts each step from parts measured on an uncapped link plus the link:

    step = compute + all-reduce(uncapped) + syncs x one-float all-reduce + 2 (N-1)/N x S / B

where S is the gradient's bytes, B the cap and syncs the small collectives inside a step (five
per synchronised batch-norm layer: three statistics forward, two gradients back). Rows at a cap are
predictions: nothing measured at that cap goes into them.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from bench import REPO, cli, machine

NETWORKS = {  # per-worker batch, optimizer
    "deep_convnet": 100,
    "resnet20": 64,
}
CAPS = ("unlimited", "1gbit", "100mbit", "10mbit")
PORT = 23456
# Keras' synchronised batch norm all-reduces the sum, the squared sum and the count of its inputs
# (keras/src/backend/tensorflow/nn.py, _compute_moments_sync), and ReplicaContext.all_reduce's
# gradient all-reduces the two that have one: five collectives per layer and step, in order.
SYNCS_PER_BATCH_NORM = 5
PREFIX, SUBNET = "scal", "10.215.0"  # apart from the slow tests' cluster (suite, 10.214.0)
STATE = "/tmp/suite-cluster-scaling"
CLUSTER = os.path.join(REPO, "launch", "slurm_cluster.sh")


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("role", "main", ["main", "worker"],
                      "main runs the configurations; worker is one process of one of them.",
                      flag_values=fv)
    flags.DEFINE_list("networks", list(NETWORKS), f"Networks to measure, of {list(NETWORKS)}.",
                      flag_values=fv)
    flags.DEFINE_list("nodes", ["1", "2", "3"], "Worker (node) counts.", flag_values=fv)
    flags.DEFINE_list("caps", list(CAPS), "Link caps (tc tbf rates such as 100mbit, or "
                      "'unlimited'); a node count of 1 has no link and runs once.",
                      flag_values=fv)
    flags.DEFINE_integer("steps", 20, "Timed training steps per configuration.", lower_bound=5,
                         flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 5, "Untimed first steps.", lower_bound=2,
                         flag_values=fv)
    flags.DEFINE_integer("allreduce_repeats", 10, "Timed calls of each bare all-reduce.",
                         lower_bound=3, flag_values=fv)
    flags.DEFINE_string("out", None, "Write every measurement and the model's rows here (JSON).",
                        flag_values=fv)
    # worker-only
    flags.DEFINE_string("network", "deep_convnet", "(worker) the network.", flag_values=fv)
    flags.DEFINE_string("result_dir", None, "(worker) where it writes worker<i>.json.",
                        flag_values=fv)


# -- one worker -----------------------------------------------------------------------------
def _median_ms(ends: list[float], warmup: int) -> float:
    steps = [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    return 1e3 * statistics.median(steps)


def _build(network: str, sync_batch_norm: bool):
    import keras

    if network == "deep_convnet":
        from suite.models.deep_convnet import build_deep_convnet

        model, shape = build_deep_convnet(), (28, 28, 1)
        optimizer = keras.optimizers.Adam(1e-3)
    else:
        from suite.models.resnet import build_cifar_resnet

        model, shape = build_cifar_resnet(20, sync_batch_norm=sync_batch_norm), (32, 32, 3)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=False),
                  metrics=["accuracy"])
    return model, shape


def measure(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    workers = len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
                  .get("worker", [None]))
    if workers > 1:
        from suite.runtime import multiworker_compat

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        multiworker_compat.apply()
    else:
        strategy = tf.distribute.get_strategy()
    import keras
    import numpy as np

    from suite.data.pipeline import train_dataset

    batch = NETWORKS[args.network]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, shape = _build(args.network, sync_batch_norm=workers > 1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4 * batch * workers, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images)).astype(np.int64)
    dataset = train_dataset(images, labels, batch * workers, seed=0).repeat()

    class Stamps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    total = args.warmup_steps + args.steps
    stamps = Stamps()
    model.fit(dataset, epochs=1, steps_per_epoch=total, callbacks=[stamps], verbose=0)
    result = {"network": args.network, "workers": workers, "batch_per_worker": batch,
              "params": model.count_params(),
              "gradient_bytes": 4 * sum(int(np.prod(v.shape)) for v in model.trainable_variables),
              "gradient_tensors": len(model.trainable_variables),
              "sync_batch_norm_layers": sum(bool(getattr(layer, "synchronized", False))
                                            for layer in model.layers),
              "step_ms": _median_ms(stamps.ends, args.warmup_steps),
              "step_ms_all": [1e3 * (b - a) for a, b in zip(stamps.ends, stamps.ends[1:])]}
    if workers > 1:
        shapes = [v.shape for v in model.trainable_variables]
        result["gradient_allreduce_ms"] = _time_allreduce(strategy, shapes, args.allreduce_repeats)
        result["one_float_allreduce_ms"] = _time_allreduce(strategy, [[1]],
                                                           args.allreduce_repeats)
    # The compute alone, all workers at once: a barrier first so that they start together.
    if workers > 1:
        _time_allreduce(strategy, [[1]], 1)
    local, _ = _build(args.network, sync_batch_norm=False)
    local_data = train_dataset(images[:4 * batch], labels[:4 * batch], batch, seed=0).repeat()
    stamps = Stamps()
    local.fit(local_data, epochs=1, steps_per_epoch=total, callbacks=[stamps], verbose=0)
    result["compute_ms"] = _median_ms(stamps.ends, args.warmup_steps)
    if workers > 1:
        _time_allreduce(strategy, [[1]], 1)  # nobody leaves while another still computes
    return result


def _time_allreduce(strategy, shapes, repeats: int) -> float:
    import tensorflow as tf

    values = [tf.ones(shape) for shape in shapes]

    @tf.function
    def allreduce():
        def step():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
        return strategy.run(step)

    allreduce()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), allreduce())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


# -- the model ------------------------------------------------------------------------------
def rate_bytes_s(cap: str) -> float | None:
    if cap == "unlimited":
        return None
    number = float(cap.rstrip("kmgbit"))
    return number * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[cap[len(cap.rstrip("kmgbit")):]] / 8


def link_ms(num_bytes: float, workers: int, cap: str) -> float:
    """The ring's bandwidth term: each worker sends (and receives) 2 (N-1)/N of the bytes."""
    bandwidth = rate_bytes_s(cap)
    return 0.0 if bandwidth is None else 1e3 * 2 * (workers - 1) / workers * num_bytes / bandwidth


def predict(parts: dict, workers: int, cap: str, compute_ms: float,
            per_sync_ms: float | None = None) -> dict:
    """SCALING.md's step time from the uncapped configuration's `parts` and the cap; a sync
    costs `per_sync_ms` where given, else one bare one-float all-reduce."""
    syncs = SYNCS_PER_BATCH_NORM * parts["sync_batch_norm_layers"]
    per_sync = parts["one_float_allreduce_ms"] if per_sync_ms is None else per_sync_ms
    terms = {"compute_ms": compute_ms, "allreduce_software_ms": parts["gradient_allreduce_ms"],
             "syncs_ms": syncs * per_sync,
             "link_ms": link_ms(parts["gradient_bytes"], workers, cap)}
    return {**terms, "step_ms": sum(terms.values())}


def _median(workers: list[dict], key: str) -> float:
    return statistics.median(w[key] for w in workers)


def model_rows(configs: list[dict]) -> list[dict]:
    """A row per configuration: the measured step (slowest worker's median) against
    - "model": SCALING.md's model as written, every part measured on the uncapped link (bare
      all-reduces, median over workers) but the compute (measured in the row's configuration);
    - "corrected" (networks with synchronised batch norm): the same with the cost of one sync
      inside a step calibrated on the uncapped row, (step - compute - gradient all-reduce) /
      syncs, which the bare one-float all-reduce underestimates. The uncapped row is then the
      calibration, the capped rows predictions."""
    by_key = {(c["network"], c["workers"], c["cap"]): c for c in configs}
    rows = []
    for c in configs:
        w = c["per_worker"]
        step = max(x["step_ms"] for x in w)
        compute = statistics.mean(x["compute_ms"] for x in w)
        row = {"network": c["network"], "workers": c["workers"], "cap": c["cap"],
               "measured_step_ms": step, "compute_ms": compute}
        base = by_key.get((c["network"], c["workers"], "unlimited"))
        if c["workers"] > 1 and base:
            b = base["per_worker"]
            parts = {"gradient_bytes": w[0]["gradient_bytes"],
                     "sync_batch_norm_layers": w[0]["sync_batch_norm_layers"],
                     "gradient_allreduce_ms": _median(b, "gradient_allreduce_ms"),
                     "one_float_allreduce_ms": _median(b, "one_float_allreduce_ms")}
            model = predict(parts, c["workers"], c["cap"], compute)
            syncs = SYNCS_PER_BATCH_NORM * parts["sync_batch_norm_layers"]
            row.update(model=model, error=model["step_ms"] / step - 1,
                       allreduce_share=1 - compute / step,
                       bare_gradient_allreduce_ms=_median(w, "gradient_allreduce_ms"),
                       gradient_bytes=parts["gradient_bytes"], syncs=syncs)
            if syncs:
                base_step = max(x["step_ms"] for x in b)
                per_sync = (base_step - statistics.mean(x["compute_ms"] for x in b)
                            - parts["gradient_allreduce_ms"]) / syncs
                corrected = predict(parts, c["workers"], c["cap"], compute, per_sync)
                row.update(corrected=corrected, per_sync_ms=per_sync,
                           corrected_error=corrected["step_ms"] / step - 1,
                           calibration=c["cap"] == "unlimited")
        rows.append(row)
    return rows


# -- the orchestration ----------------------------------------------------------------------
def _cluster(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUITE_CLUSTER_PREFIX": PREFIX, "SUITE_CLUSTER_SUBNET": SUBNET,
           "SUITE_CLUSTER_CTLD_PORT": "6927", "SUITE_CLUSTER_STATE": STATE}
    return subprocess.run(["bash", CLUSTER, *argv], env=env, check=check,
                          capture_output=True, text=True)



def run_config(args, network: str, workers: int, cap: str) -> dict:
    for node in range(1, workers + 1):
        _cluster("cap", str(node), "off" if cap == "unlimited" else cap, STATE)
    hosts = [f"{SUBNET}.{10 + i}:{PORT}" for i in range(1, workers + 1)]
    with tempfile.TemporaryDirectory(prefix="cluster-scaling-") as tmp:
        procs = []
        for index in range(workers):
            env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
                   "CUDA_VISIBLE_DEVICES": "", "SUITE_CLUSTER_STATE": STATE}
            env.pop("TF_CONFIG", None)
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts},
                                               "task": {"type": "worker", "index": index}})
            command = [sys.executable, "-m", "bench.cluster_scaling", "--role=worker",
                       f"--network={network}", f"--result_dir={tmp}",
                       f"--steps={args.steps}", f"--warmup_steps={args.warmup_steps}",
                       f"--allreduce_repeats={args.allreduce_repeats}"]
            procs.append(subprocess.Popen(["bash", CLUSTER, "run", str(index + 1),
                                           *command], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=900)[0])
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise
        for proc, out in zip(procs, outputs):
            if proc.returncode:
                raise RuntimeError(f"{network} x{workers} at {cap}: a worker failed "
                                   f"({proc.returncode}):\n{out[-3000:]}")
        return {"network": network, "workers": workers, "cap": cap,
                "per_worker": [json.loads(Path(tmp, f"worker{i}.json").read_text())
                               for i in range(workers)]}


def report(rows: list[dict]) -> str:
    lines = ["| network | workers | link | measured ms/step | compute ms | model ms | error |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        model = r.get("model")
        lines.append(f"| {r['network']} | {r['workers']} | {r['cap']} | "
                     f"{r['measured_step_ms']:.0f} | {r['compute_ms']:.0f} | "
                     f"{model['step_ms']:.0f} | {100 * r['error']:+.0f}% |" if model else
                     f"| {r['network']} | {r['workers']} | {r['cap']} | "
                     f"{r['measured_step_ms']:.0f} | {r['compute_ms']:.0f} | | |")
    return "\n".join(lines)


def main(args):
    if args.role == "worker":
        result = measure(args)
        index = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
        Path(args.result_dir, f"worker{index}.json").write_text(json.dumps(result))
        return
    unknown = set(args.networks) - set(NETWORKS)
    if unknown:
        cli.usage_error(f"--networks: no network {sorted(unknown)}; choose from {list(NETWORKS)}")
    for cap in args.caps:
        if cap != "unlimited" and not cap.rstrip("kmgbit").isdigit():
            cli.usage_error(f"--caps: {cap!r} is not a tc rate such as 100mbit, nor 'unlimited'")
    if os.geteuid() != 0:
        cli.usage_error("run as root: the bench builds network namespaces")
    nodes = sorted(int(n) for n in args.nodes)
    info = {**machine.describe(), "command": machine.command(__file__),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip()}
    started, configs = time.monotonic(), []
    _cluster("down", STATE, check=False)
    up = _cluster("up", str(max(nodes)), STATE, check=False)
    if up.returncode:
        raise SystemExit(f"cluster_scaling: the cluster did not come up:\n{up.stderr[-2000:]}")
    try:
        for network in args.networks:
            for workers in nodes:
                for cap in (["unlimited"] if workers == 1 else args.caps):
                    config = run_config(args, network, workers, cap)
                    configs.append(config)
                    print(f"{network} x{workers} {cap}: step "
                          f"{max(w['step_ms'] for w in config['per_worker']):.0f} ms, compute "
                          f"{statistics.mean(w['compute_ms'] for w in config['per_worker']):.0f}"
                          " ms", flush=True)
    finally:
        _cluster("down", STATE, check=False)
    rows = model_rows(configs)
    print(report(rows))
    results = {**info, "load_1min_at_end": round(os.getloadavg()[0], 2),
               "wall_s": time.monotonic() - started, "args": {k: v for k, v in vars(args).items()
                                                             if k not in ("role", "result_dir")},
               "configs": configs, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    cli.run(main, define_flags)
