"""The side-by-side training benches' common part: peers built and warmed up, then measured
in interleaved rounds, summarised, and written as <out>.md and <out>.json with the machine.

A peer is any object with `warm_up(steps)` and `run(steps) -> [clock() at each step's end]`.
Each of `repeats` rounds runs every live peer once, the order rotating by one peer per round
(so no peer always runs first, or right after the slowest); a peer's turn is one untimed
lead-in step and `steps` timed ones. A peer listed in `optional` (torch.compile, which needs a
C++ toolchain) may fail: its error text goes into the results instead of a number.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback

from absl import flags

from bench import machine


def add_threads_flag(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("torch_threads", os.cpu_count(),
                         "torch.set_num_threads (default: all CPUs, as the other benches)",
                         lower_bound=1, flag_values=fv)


def start(torch_threads: int | None) -> tuple[dict, str]:
    """How every side-by-side bench begins: TensorFlow loaded first (the suite's oneDNN default,
    its start-up notes hidden), PyTorch's threads set (None: a run without PyTorch peers, which
    then need not have it installed), the machine described and, if it is busy, a warning.
    Returns (machine, warning)."""
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    info = {**machine.describe(), "start_unix": round(time.time(), 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return info, load_warning(info)


def finish(info: dict) -> None:
    """The machine record's end: the load after the rounds, PyTorch's threads (when it ran),
    the wall time since `start` and the commit measured."""
    from bench.preset_run import commit

    info["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    info["wall_s"] = round(time.time() - info["start_unix"], 1)
    info["commit"] = commit()


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds."""
    return time.perf_counter(), time.process_time()


class StepPeer:
    """A peer timed one `step()` call at a time (the PyTorch peers)."""

    def step(self):
        raise NotImplementedError

    def run(self, steps: int):
        ends = []
        for _ in range(steps):
            self.step()
            ends.append(clock())
        return ends

    def warm_up(self, steps: int):
        return self.run(steps)


class FitPeer:
    """A Keras peer: `model.fit` on `dataset` (both set by the subclass), a clock at each step's
    end."""
    model = dataset = None

    def run(self, steps: int):
        import keras

        ends = []
        stamp = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: ends.append(clock()))
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                       callbacks=[stamp], shuffle=False)
        return ends

    def warm_up(self, steps: int):
        return self.run(steps)


def torch_options(name: str) -> dict:
    """The PyTorch peer's options from its name: torch, torch_channels_last, torch_compile,
    torch_compile_channels_last; the autocast peers torch_bfloat16 and torch_compile_bfloat16,
    and the inference peer torch_compile_frozen (Inductor's freezing), all channels-last, the
    faster layout for them."""
    options = {"channels_last": "channels_last" in name, "compiled": "compile" in name}
    if name.endswith("bfloat16"):
        options.update(channels_last=True, bfloat16=True)
    if "frozen" in name:
        options.update(channels_last=True, frozen=True)
    return options


def record_error(record: dict, error: Exception) -> None:
    record["error"] = f"{type(error).__name__}: {error}"[:4000]
    record["traceback"] = traceback.format_exc()[-8000:]


def load_warning(info: dict) -> str:
    if info["load_1min"] <= 0.5 * os.cpu_count():
        return ""
    warning = (f"WARNING: load average {info['load_1min']} on {os.cpu_count()} CPUs at start: "
               "the machine was busy, the numbers are noisy (PyTorch suffers most); do not "
               "quote them.")
    print(warning, flush=True)
    return warning


def measure(build_peer, names, descriptions: dict, steps, warmup_steps, repeats: int,
            batch_size: int,
            optional=("torch_compile", "torch_compile_channels_last", "torch_compile_bfloat16")):
    """(results per peer name, the round orders). `steps` and `warmup_steps`: one count for
    every peer, or a count per peer name (a slow peer times fewer steps a round)."""
    steps_of = steps if isinstance(steps, dict) else dict.fromkeys(names, steps)
    warmup_of = (warmup_steps if isinstance(warmup_steps, dict)
                 else dict.fromkeys(names, warmup_steps))
    results = {n: {"description": descriptions[n], "images_per_s": [], "cpu_ms_per_step": [],
                   "error": None} for n in names}
    peers = {}
    for name in names:
        print(f"building and warming up {name} ...", flush=True)
        started = time.perf_counter()
        try:
            peers[name] = build_peer(name)
            peers[name].warm_up(warmup_of[name])
        except Exception as e:  # noqa: BLE001 - keep the other numbers
            peers.pop(name, None)
            record_error(results[name], e)
            print(f"{name} failed:\n{results[name]['traceback']}", flush=True)
            if name not in optional:
                raise
        results[name]["warmup_seconds"] = round(time.perf_counter() - started, 2)
    orders = []
    for round_index in range(repeats):
        live = [n for n in names if n in peers]
        shift = round_index % len(live) if live else 0
        order = live[shift:] + live[:shift]
        orders.append(order)
        for name in order:
            try:
                timed = steps_of[name]
                ends = peers[name].run(1 + timed)  # the lead-in step is not timed
            except Exception as e:  # noqa: BLE001
                peers.pop(name)
                record_error(results[name], e)
                print(f"{name} failed in round {round_index}:\n{results[name]['traceback']}",
                      flush=True)
                if name not in optional:
                    raise
                continue
            (w0, c0), (w1, c1) = ends[0], ends[-1]
            results[name]["images_per_s"].append(round(timed * batch_size / (w1 - w0), 3))
            results[name]["cpu_ms_per_step"].append(round(1e3 * (c1 - c0) / timed, 1))
            print(f"round {round_index}: {name} {results[name]['images_per_s'][-1]:.2f} "
                  "images/s", flush=True)
    for record in results.values():
        ips = record["images_per_s"]
        record["mean_images_per_s"] = round(statistics.fmean(ips), 3) if ips else None
        record["std_images_per_s"] = (round(statistics.stdev(ips), 3) if len(ips) > 1
                                      else (0.0 if ips else None))
        record["median_cpu_ms_per_step"] = (round(statistics.median(record["cpu_ms_per_step"]), 1)
                                            if ips else None)
    return results, orders


def table(results: dict, repeats: int, reference_prefix: str = "torch") -> list[str]:
    """Markdown rows: images/s and the ratio to the best peer whose name starts with
    `reference_prefix`; with a GFLOP/s column where the results have rates
    (roofline.py: `gflops`, `percent_of_peak`)."""
    reference = {k: r["mean_images_per_s"] for k, r in results.items()
                 if k.startswith(reference_prefix) and r["mean_images_per_s"]}
    best = max(reference, key=reference.get) if reference else None
    rates = any(r.get("gflops") for r in results.values())
    lines = [f"| configuration | what | images/s (mean ± std over {repeats}) | "
             f"vs best PyTorch ({best or 'n/a'}) | "
             + ("GFLOP/s (% of GEMM peak) | " if rates else "")
             + "CPU ms/step (median) | warm-up s |",
             "|---|---|---:|---:|" + ("---:|" if rates else "") + "---:|---:|"]
    for name, r in results.items():
        if r.get("error"):
            first = r["error"].strip().splitlines()[0][:200].replace("|", "\\|").replace("`", "'")
            lines.append(f"| {name} | {r['description']} | failed: `{first}` | n/a | "
                         + ("n/a | " if rates else "") + "n/a | n/a |")
            continue
        ratio = f"{r['mean_images_per_s'] / reference[best]:.2f}" if best else "n/a"
        rate = ""
        if rates:
            rate = f"{r['gflops']:,.0f}" + (f" ({r['percent_of_peak']:.0f}%)"
                                            if r.get("percent_of_peak") is not None else "")
            rate += " | "
        lines.append(f"| {name} | {r['description']} | {r['mean_images_per_s']:.2f} ± "
                     f"{r['std_images_per_s']:.2f} | {ratio} | {rate}"
                     f"{r['median_cpu_ms_per_step']:.0f} | {r['warmup_seconds']:.1f} |")
    return lines


def write(out: str, report: str, payload: dict) -> None:
    print("\n" + report)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(report)
    with open(out + ".json", "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    print(f"wrote {out}.md and {out}.json")


def footer(info: dict) -> str:
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())


__all__ = ["FitPeer", "StepPeer", "add_threads_flag", "clock", "finish", "footer",
           "load_warning", "measure", "record_error", "start", "table", "torch_options", "write"]
