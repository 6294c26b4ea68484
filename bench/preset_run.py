r"""Runs an app preset for one or more seeds, as a user would, and records what it measured.

    python -m bench.preset_run --name=mnist_book --app=train_mnist \
        --flagfile=apps/flags/mnist.flags --seeds=0 -- --data_dir=../shared/data/mnist

Each seed is `python -m apps.<app> --flagfile=<flagfile> --seed=<s> --model_dir=<work>/<name>/
seed<s> <extra flags>` in its own process. A run already finished in its folder is kept (the
app's rerun trains nothing). Into bench/results/protocol/<name>/ go each seed's results.json,
history.csv and learning_curves.png, and record.json: the command, the machine (CPU, ISA,
cores, load at the start and the end), the date, the commit, each seed's wall time, the
metrics every seed reports, and their mean and standard deviation over the seeds.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, cli, machine

COPIED = ("results.json", "history.csv", "learning_curves.png")


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def numbers(results: dict) -> dict:
    """The numeric top-level results (and the selection's epoch and value)."""
    found = {k: v for k, v in results.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    chosen = results.get("selection") or {}
    for key in ("epoch", "value"):
        if isinstance(chosen.get(key), (int, float)):
            found[f"selection_{key}"] = chosen[key]
    return found


def summary(runs: list[dict]) -> dict:
    keys = set.intersection(*(set(numbers(r["results"])) for r in runs)) if runs else set()
    return {k: {"mean": float(np.mean([numbers(r["results"])[k] for r in runs])),
                "std": float(np.std([numbers(r["results"])[k] for r in runs])),
                "seeds": len(runs)} for k in sorted(keys)}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("name", None, "results folder under bench/results/protocol",
                        flag_values=fv)
    flags.DEFINE_string("app", None, "apps.<app>, e.g. train_mnist", flag_values=fv)
    flags.DEFINE_string("flagfile", None, "the app's preset, passed on to it (not read as this "
                        "bench's flags); more app flags go after --", flag_values=fv)
    flags.DEFINE_string("seeds", "0", "comma-separated", flag_values=fv)
    flags.DEFINE_string("work_dir", os.path.join(REPO, "runs", "protocol"),
                        "where the runs go: <work_dir>/<name>/seed<s>", flag_values=fv)
    flags.DEFINE_string("out_dir", os.path.join(RESULTS, "protocol"),
                        "where the records go: <out_dir>/<name>/", flag_values=fv)
    for name in ("name", "app", "flagfile"):
        flags.mark_flag_as_required(name, flag_values=fv)


def main(args):
    out = os.path.join(args.out_dir, args.name)
    os.makedirs(out, exist_ok=True)
    record_path = os.path.join(out, "record.json")
    record = json.load(open(record_path)) if os.path.exists(record_path) else {"runs": []}
    done = {r["seed"] for r in record["runs"]}
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed in done:
            print(f"seed {seed}: recorded already", flush=True)
            continue
        model_dir = os.path.join(args.work_dir, args.name, f"seed{seed}")
        command = [sys.executable, "-m", f"apps.{args.app}", f"--flagfile={args.flagfile}",
                   f"--seed={seed}", f"--model_dir={model_dir}", *args.extra]
        before = machine.describe()
        started = time.time()
        done_run = subprocess.run(command, cwd=REPO)
        seconds = time.time() - started
        if done_run.returncode != 0:
            sys.exit(f"seed {seed}: the app exited {done_run.returncode}; nothing recorded")
        folder = os.path.join(out, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        for name in COPIED:
            if os.path.exists(os.path.join(model_dir, name)):
                shutil.copy(os.path.join(model_dir, name), os.path.join(folder, name))
        results = json.load(open(os.path.join(model_dir, "results.json")))
        record["runs"].append({
            "seed": seed, "command": " ".join(command[1:]).replace(REPO + "/", ""),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": commit(), "machine": before,
            "load_1min_at_end": round(os.getloadavg()[0], 2),
            "wall_seconds": round(seconds, 1), "results": results})
        record["summary"] = summary(record["runs"])
        with open(record_path, "w") as f:
            json.dump(record, f, indent=1)
        print(f"seed {seed}: {seconds / 60:.1f} min; recorded in {record_path}", flush=True)


if __name__ == "__main__":
    cli.run(main, define_flags, rest="extra")
