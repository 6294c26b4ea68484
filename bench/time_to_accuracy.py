r"""Time to accuracy: the MNIST app's own command, timed from its start to its last line, per seed.

    python -m bench.time_to_accuracy --flagfile=apps/flags/mnist_fast.flags --seeds=0,1,2 \
        --data_dir=../shared/data/mnist

Each seed runs `python -m apps.train_mnist --flagfile=<flagfile> --seed=<s> --data_dir=<dir>
--model_dir=<out_dir>/<preset>-seed<s>` in a fresh process, one after another (a fresh model_dir,
so nothing resumes); the wall time is the whole command: start-up, data, training, the test
evaluation, the figures and the export. The summary gives the mean accuracy and time over the
seeds against the bars (--accuracy_bar, --seconds_bar) and the machine
(bench/machine.py). Results: bench/results/time_to_accuracy_<preset>.{md,json}.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import flags

from bench import REPO, RESULTS, SHARED_DATA, cli, interleaved, machine


def run_seed(args, preset: str, seed: int) -> dict:
    model_dir = os.path.join(args.out_dir, f"{preset}-seed{seed}")
    shutil.rmtree(model_dir, ignore_errors=True)
    command = [sys.executable, "-m", "apps.train_mnist", f"--flagfile={args.flagfile}",
               f"--seed={seed}", f"--data_dir={args.data_dir}", f"--model_dir={model_dir}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    print(f"seed {seed}: {results['test_accuracy']:.2%} in {seconds:.1f} s "
          f"({results['precision']})", flush=True)
    return {"seed": seed, "seconds": round(seconds, 1), "test_accuracy": results["test_accuracy"],
            "precision": results["precision"], "onednn": results.get("onednn"),
            "command": " ".join(["python"] + command[1:])}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("flagfile", "apps/flags/mnist_fast.flags", "the app's preset, passed on "
                        "to it (not read as this bench's flags)", flag_values=fv)
    flags.DEFINE_string("seeds", "0,1,2", "comma-separated seeds, run one after another",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", os.path.join(SHARED_DATA, "mnist"),
                        "folder with the MNIST IDX files", flag_values=fv)
    flags.DEFINE_float("accuracy_bar", 0.9938, "the book's 99.38%", flag_values=fv)
    flags.DEFINE_float("seconds_bar", 300.0, "the most seconds a run may take", flag_values=fv)
    flags.DEFINE_string("out_dir", os.path.join(REPO, "runs", "time_to_accuracy"),
                        "where the runs' model_dirs go", flag_values=fv)
    flags.DEFINE_string("results_dir", RESULTS, "where time_to_accuracy_<preset>.{md,json} go",
                        flag_values=fv)


def main(args):
    if not os.path.isfile(os.path.join(REPO, args.flagfile)):
        cli.usage_error(f"--flagfile {args.flagfile} is not a file (relative to the repository "
                        "root)")
    if not os.path.isdir(args.data_dir):
        cli.usage_error(f"--data_dir {args.data_dir} is not a folder with the MNIST IDX files")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        cli.usage_error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    preset = os.path.splitext(os.path.basename(args.flagfile))[0]
    info = machine.describe()
    runs = [run_seed(args, preset, s) for s in seeds]
    info["onednn"] = runs[0]["onednn"]  # as the app's own process reports it (results.json)
    info["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    accuracy = statistics.fmean(r["test_accuracy"] for r in runs)
    seconds = statistics.fmean(r["seconds"] for r in runs)
    verdict = {"accuracy": accuracy >= args.accuracy_bar,
               "seconds": max(r["seconds"] for r in runs) <= args.seconds_bar}
    command = machine.command(__file__)
    lines = [f"# Time to accuracy: {preset} ({machine.label(info)}, load {info['load_1min']})", "",
             f"`{command}`", "", "| seed | test accuracy | wall seconds (whole command) | precision |",
             "|---:|---:|---:|---|",
             *(f"| {r['seed']} | {r['test_accuracy']:.2%} | {r['seconds']:.0f} | {r['precision']} |"
               for r in runs),
             f"| mean | **{accuracy:.2%}** | **{seconds:.0f}** | |", "",
             f"Bars: mean accuracy >= {args.accuracy_bar:.2%}: "
             f"{'met' if verdict['accuracy'] else 'NOT met'}; every run <= "
             f"{args.seconds_bar:.0f} s: {'met' if verdict['seconds'] else 'NOT met'}.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    interleaved.write(os.path.join(args.results_dir, f"time_to_accuracy_{preset}"),
                      "\n".join(lines) + "\n",
                      {"command": command, "machine": info, "runs": runs,
                       "mean_test_accuracy": accuracy, "mean_seconds": seconds,
                       "bars": {"accuracy": args.accuracy_bar, "seconds": args.seconds_bar},
                       "met": verdict})


if __name__ == "__main__":
    cli.run(main, define_flags)
