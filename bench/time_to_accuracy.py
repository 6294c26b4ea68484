"""Time to accuracy: the MNIST app's own command, timed from its start to its last line, per seed.

    python bench/time_to_accuracy.py --flagfile=apps/flags/mnist_fast.flags --seeds=0,1,2 \
        --data_dir=../shared/data/mnist

Each seed runs `python -m apps.train_mnist --flagfile=<flagfile> --seed=<s> --data_dir=<dir>
--model_dir=<out_dir>/<preset>-seed<s>` in a fresh process, one after another (a fresh model_dir,
so nothing resumes); the wall time is the whole command: start-up, data, training, the test
evaluation, the figures and the export. The summary gives the mean accuracy and time over the
seeds against the bars (--accuracy_bar, --seconds_bar) and the machine
(bench/machine.py). Results: bench/results/time_to_accuracy_<preset>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE]

import machine  # noqa: E402


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flagfile", default="apps/flags/mnist_fast.flags")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data_dir", default=os.path.join(REPO, "..", "shared", "data", "mnist"))
    p.add_argument("--accuracy_bar", type=float, default=0.9938, help="the book's 99.38%%")
    p.add_argument("--seconds_bar", type=float, default=300.0)
    p.add_argument("--out_dir", default=os.path.join(REPO, "runs", "time_to_accuracy"),
                   help="where the runs' model_dirs go")
    p.add_argument("--results_dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(REPO, args.flagfile)):
        p.error(f"--flagfile {args.flagfile} is not a file (relative to the repository root)")
    if not os.path.isdir(args.data_dir):
        p.error(f"--data_dir {args.data_dir} is not a folder with the MNIST IDX files")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    preset = os.path.splitext(os.path.basename(args.flagfile))[0]
    info = machine.describe()
    runs = [run_seed(args, preset, s) for s in seeds]
    info["onednn"] = runs[0]["onednn"]  # as the app's own process reports it (results.json)
    info["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    accuracy = statistics.fmean(r["test_accuracy"] for r in runs)
    seconds = statistics.fmean(r["seconds"] for r in runs)
    verdict = {"accuracy": accuracy >= args.accuracy_bar,
               "seconds": max(r["seconds"] for r in runs) <= args.seconds_bar}
    command = machine.command(__file__, argv)
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
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    os.makedirs(args.results_dir, exist_ok=True)
    out = os.path.join(args.results_dir, f"time_to_accuracy_{preset}")
    with open(out + ".md", "w") as f:
        f.write(report)
    with open(out + ".json", "w") as f:
        json.dump({"command": command, "machine": info, "runs": runs,
                   "mean_test_accuracy": accuracy, "mean_seconds": seconds,
                   "bars": {"accuracy": args.accuracy_bar, "seconds": args.seconds_bar},
                   "met": verdict}, f, indent=1)
        f.write("\n")
    print(f"wrote {out}.md and {out}.json")


if __name__ == "__main__":
    main()
