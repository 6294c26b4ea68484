"""What multi-worker training costs per step: 2 workers on 127.0.0.1 against 1 process.

Usage (from the repository root; see bench/SCALING.md for results and the scaling analysis):

    python -m bench.multiworker_overhead --steps=300 --repeats=3   # the measurement
    python -m bench.multiworker_overhead --steps=60 --warmup_steps=10   # a short run
    python -m bench.multiworker_overhead --cost_model         # ring all-reduce table only

Both sides train the suite's DeepConvNet (123,552 parameters, Adam) with Keras fit on the same
global batch of 100 random MNIST-shaped images through suite.data.pipeline (DATA sharding):
- "1 process": the default strategy, 100 images a step, 2 intra-op and 2 inter-op threads;
- "2 workers": MultiWorkerMirroredStrategy (suite.runtime.multiworker_compat) started by
  launch.local, 50 images a step each, 1 intra-op and 1 inter-op thread each,
so both use 2 threads in all on a 2-core machine, and the difference is the price of the
collectives (gradient all-reduce, metric reductions) and of running two processes. They run
one after the other, never together. Each step is stamped at on_train_batch_end; the first
--warmup_steps (tracing, shuffle buffer) are dropped, and the median over the rest is reported.
The workers then also time the bare all-reduces (the gradient's 494 KB, and the 2 floats of
suite.runtime.stopping's per-step stop agreement) and a fit with that agreement every step.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from bench import REPO, cli

GLOBAL_BATCH = 100
NUM_PARAMETERS = 123_552


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("role", "main", ["main", "single", "worker"],
                      "main runs both sides and reports; single/worker are its subprocesses.",
                      flag_values=fv)
    flags.DEFINE_integer("steps", 300, "Timed training steps (after the warm-up).",
                         lower_bound=10, flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 20, "Untimed first steps.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("repeats", 1, "Runs of each side, alternating; each row reports the "
                         "median over runs of each run's median.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("allreduce_repeats", 200, "Timed calls of each bare all-reduce.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("stop_agreement", True, "Workers also time a fit with "
                         "MultiWorkerBackup's per-step stop agreement.", flag_values=fv)
    flags.DEFINE_integer("threads", 2, "CPU threads in all: the single process gets them all, "
                         "each worker threads // 2 (intra-op and inter-op alike).", lower_bound=2,
                         flag_values=fv)
    flags.DEFINE_string("out", None, "Also write the results as JSON here.", flag_values=fv)
    flags.DEFINE_string("result_dir", None, "(single/worker) where a subprocess writes its JSON.",
                        flag_values=fv)
    flags.DEFINE_boolean("cost_model", False, "Print the ring all-reduce cost model table and "
                         "exit.", flag_values=fv)


# -- the cost model of bench/SCALING.md ------------------------------------------------------
def ring_allreduce_s(num_bytes: float, workers: int, bandwidth_bytes_s: float,
                     latency_s: float) -> float:
    """Ring all-reduce time: 2(N-1) steps, each moving bytes/N and paying one latency."""
    if workers <= 1:
        return 0.0
    steps = 2 * (workers - 1)
    return steps / workers * num_bytes / bandwidth_bytes_s + steps * latency_s


def scaling_efficiency(compute_s: float, comm_s: float, overlap: float = 0.0) -> float:
    """Time per step on 1 GPU / on N GPUs when each GPU keeps its per-GPU batch (weak scaling)."""
    return compute_s / (compute_s + (1 - overlap) * comm_s)


def link_for_efficiency(compute_s: float, num_bytes: float, workers: int, latency_s: float,
                        collectives: int = 1, target: float = 0.9,
                        fixed_s: float = 0.0) -> float | None:
    """The slowest link (bytes/s) at which `workers` keep `target` efficiency without overlap:
    the bandwidth term of one gradient ring, `collectives` rings' latency and any `fixed_s` (a
    measured software cost) must fit in compute x (1/target - 1). None when the rest does not
    leave the bandwidth term any time: no link is fast enough."""
    if workers <= 1:
        return 0.0
    budget = (compute_s * (1 / target - 1) - collectives * 2 * (workers - 1) * latency_s
              - fixed_s)
    if budget <= 0:
        return None
    return 2 * (workers - 1) / workers * num_bytes / budget


# A GPU's compute per training step, assumed (no GPU measured them): DeepConvNet at 100 images
# (as MODELS), ResNet-20 at 128 (about 31 GFLOP a step, which small convolutions leave
# launch-bound: ~5 ms on a current GPU).
GPU_STEP_S = {"deep_convnet": 0.002, "resnet20": 0.005}

MODELS = {  # gradient bytes (fp32) and a compute time per step per GPU, both stated in SCALING.md
    "DeepConvNet (batch 100/GPU)": (NUM_PARAMETERS * 4, 0.002),
    "ResNet-50 (batch 64/GPU, fp16)": (25.6e6 * 4, 0.100),
}
LINKS = {  # bandwidth (bytes/s), per-hop latency (s)
    "NVLink node (150 GB/s, 5 us)": (150e9, 5e-6),
    "100 Gb/s InfiniBand (12.5 GB/s, 5 us)": (12.5e9, 5e-6),
    "25 Gb/s Ethernet (3.1 GB/s, 50 us)": (3.125e9, 50e-6),
    "10 Gb/s Ethernet (1.25 GB/s, 50 us)": (1.25e9, 50e-6),
}


def cost_model_table() -> str:
    rows = ["| model | link | N | all-reduce ms | compute ms | efficiency, no overlap | "
            "speed-up |", "|---|---|---:|---:|---:|---:|---:|"]
    for model, (num_bytes, compute_s) in MODELS.items():
        for link, (bandwidth, latency) in LINKS.items():
            for n in (8, 100):
                comm = ring_allreduce_s(num_bytes, n, bandwidth, latency)
                eff = scaling_efficiency(compute_s, comm)
                rows.append(f"| {model} | {link} | {n} | {1e3 * comm:.2f} | {1e3 * compute_s:.0f}"
                            f" | {100 * eff:.0f}% | {n * eff:.0f}x |")
    return "\n".join(rows)


# -- one side of the measurement (a subprocess) ----------------------------------------------
def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(ends: list[float], cpu: list[float], warmup: int) -> dict:
    wall = [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    cpu_steps = [b - a for a, b in zip(cpu[warmup - 1:], cpu[warmup:])]
    quantiles = statistics.quantiles(wall, n=10)
    return {"steps": len(wall), "median_ms": 1e3 * statistics.median(wall),
            "p10_ms": 1e3 * quantiles[0], "p90_ms": 1e3 * quantiles[-1],
            "mean_ms": 1e3 * statistics.fmean(wall),
            "cpu_ms_per_step": 1e3 * statistics.fmean(cpu_steps)}


def measure(args) -> dict:
    role = args.role
    threads = args.threads if role == "single" else args.threads // 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if role == "worker":
        from suite.runtime import multiworker_compat

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        multiworker_compat.apply()
    else:
        strategy = tf.distribute.get_strategy()
    import keras
    import numpy as np

    from suite.data.pipeline import train_dataset
    from suite.models.deep_convnet import build_deep_convnet

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6000, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 6000).astype(np.int64)
    with strategy.scope():
        model = build_deep_convnet()
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    assert model.count_params() == NUM_PARAMETERS, model.count_params()
    dataset = train_dataset(images, labels, GLOBAL_BATCH, seed=0)

    class Stamps(keras.callbacks.Callback):
        def __init__(self, extra=None):
            super().__init__()
            self.ends, self.cpu, self.extra = [], [], extra

        def on_train_batch_end(self, batch, logs=None):
            if self.extra:
                self.extra()
            self.ends.append(time.perf_counter())
            self.cpu.append(_cpu_s())

    total = args.warmup_steps + args.steps
    stamps = Stamps()
    model.fit(dataset, epochs=1, steps_per_epoch=total, callbacks=[stamps], verbose=0)
    result = {"role": role, "threads": threads, "replicas": strategy.num_replicas_in_sync,
              "fit": _summary(stamps.ends, stamps.cpu, args.warmup_steps)}
    if role == "worker":
        from suite.runtime.stopping import WorkerSum

        agree = WorkerSum(strategy)
        result["allreduce_ms"] = {
            "gradient_494KB_fp32": _time_allreduce(strategy, NUM_PARAMETERS,
                                                   args.allreduce_repeats),
            "stop_agreement_2_floats": _time_calls(lambda: agree([0.0, 0.0]),
                                                   args.allreduce_repeats),
        }
        if args.stop_agreement:
            stamps = Stamps(extra=lambda: agree([0.0, 0.0]))
            model.fit(dataset, epochs=1, steps_per_epoch=total, callbacks=[stamps], verbose=0)
            result["fit_with_stop_agreement"] = _summary(stamps.ends, stamps.cpu,
                                                         args.warmup_steps)
    return result


def _time_calls(call, repeats: int) -> dict:
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median": 1e3 * statistics.median(times),
            "p90": 1e3 * statistics.quantiles(times, n=10)[-1]}


def _time_allreduce(strategy, size: int, repeats: int) -> dict:
    import tensorflow as tf

    value = tf.random.normal([size])

    @tf.function
    def allreduce():
        per_replica = strategy.experimental_distribute_values_from_function(lambda _: value)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return _time_calls(lambda: allreduce().numpy(), repeats)


# -- the orchestration -------------------------------------------------------------------------
def _run(command: list[str], timeout_s: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _side_args(args, role: str, result_dir: str) -> list[str]:
    return [sys.executable, "-m", "bench.multiworker_overhead", f"--role={role}",
            f"--result_dir={result_dir}", f"--steps={args.steps}",
            f"--warmup_steps={args.warmup_steps}", f"--threads={args.threads}",
            f"--allreduce_repeats={args.allreduce_repeats}",
            f"--stop_agreement={args.stop_agreement}"]


def _median_of(fits: list[dict]) -> dict:
    return {key: statistics.median(fit[key] for fit in fits) for key in fits[0]}


def report(runs: list[dict]) -> str:
    """The table over `runs` (each {"single": ..., "workers": [w0, w1]})."""
    rows = ["| setup | threads (intra + inter) | median ms/step | p10-p90 ms | images/s | "
            "CPU ms/step |", "|---|---|---:|---:|---:|---:|"]

    def row(name, threads, fits):
        fit = _median_of(fits)
        rows.append(f"| {name} | {threads} + {threads} | {fit['median_ms']:.1f} | "
                    f"{fit['p10_ms']:.1f}-{fit['p90_ms']:.1f} | "
                    f"{GLOBAL_BATCH * 1e3 / fit['median_ms']:.0f} | {fit['cpu_ms_per_step']:.1f} |")
        return fit["median_ms"]

    single = row("1 process, 100 images/step", runs[0]["single"]["threads"],
                 [r["single"]["fit"] for r in runs])
    worker_ms = []
    for i in range(2):
        worker_ms.append(row(f"worker {i} of 2, 50 images/step", runs[0]["workers"][i]["threads"],
                             [r["workers"][i]["fit"] for r in runs]))
    agreed = "fit_with_stop_agreement" in runs[0]["workers"][0]
    for i in range(2 if agreed else 0):
        row(f"worker {i} + stop agreement each step", runs[0]["workers"][i]["threads"],
            [r["workers"][i]["fit_with_stop_agreement"] for r in runs])
    ratio = max(worker_ms) / single
    lines = rows + ["", f"2 workers / 1 process, median step time: {ratio:.2f}x over "
                        f"{len(runs)} run(s) of each", ""]
    for i in range(2):
        allreduce = runs[0]["workers"][i]["allreduce_ms"]
        lines.append(f"worker {i} bare all-reduces, median (p90) ms, run 1: " + ", ".join(
            f"{name} {v['median']:.2f} ({v['p90']:.2f})" for name, v in allreduce.items()))
    return "\n".join(lines)


def main(args):
    if args.cost_model:
        print(cost_model_table())
        return
    if args.role != "main":
        result = measure(args)
        name = "single" if args.role == "single" else "worker{}".format(
            json.loads(os.environ["TF_CONFIG"])["task"]["index"])
        result["index"] = int(name[-1]) if args.role == "worker" else None
        Path(args.result_dir, f"{name}.json").write_text(json.dumps(result))
        return
    load_before = os.getloadavg()
    timeout_s = 120 + 3 * args.steps  # generous: 2 fits of `steps` at well under 1 s a step
    started, runs = time.monotonic(), []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="mw-overhead-") as tmp:
            _run(_side_args(args, "single", tmp), timeout_s)
            _run([sys.executable, "-m", "launch.local", "--num_workers=2", "--grace_period_s=5",
                  "--", *_side_args(args, "worker", tmp)], timeout_s)
            runs.append({"single": json.loads(Path(tmp, "single.json").read_text()),
                         "workers": [json.loads(Path(tmp, f"worker{i}.json").read_text())
                                     for i in range(2)]})
    results = {"runs": runs, "global_batch": GLOBAL_BATCH, "steps": args.steps,
               "warmup_steps": args.warmup_steps, "wall_s": time.monotonic() - started,
               "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
               "cpu_count": os.cpu_count()}
    print(report(runs))
    print(f"\nload average before/after: {load_before[0]:.2f} / {results['load_avg_after'][0]:.2f}"
          f" on {os.cpu_count()} CPUs; {results['wall_s']:.0f} s in all")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine was busy at the start: compare ratios, not absolute times")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    cli.run(main, define_flags)
