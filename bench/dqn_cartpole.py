r"""CartPole-v1 DQN: the app's returns over seeds, and its speed against a PyTorch peer, in one run.

    python -m bench.dqn_cartpole --seeds=0,1,2,3 [--peer_seeds=0,1] \
        [--out=bench/results/dqn_cartpole]

For each seed: `python -m apps.train_dqn --flagfile=apps/flags/dqn_cartpole.flags --seed=S`
(100k environment steps; its results.json has the greedy return over 100 new episodes of the
policy it keeps and of its final network, and the environment steps per second of training,
evaluations excluded), with its wall time from start to exit; then, for --peer_seeds,
bench.dqn_cartpole_torch (the same network, hyperparameters and evaluation in PyTorch).
Runs one at a time, so each has the machine to itself. Writes <out>.json and <out>.md, each
naming the CPU (bench/machine.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, cli, machine


def run_app(seed: int, work_dir: str, extra: list[str]) -> dict:
    model_dir = os.path.join(work_dir, f"seed{seed}")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "apps.train_dqn",
                          "--flagfile=apps/flags/dqn_cartpole.flags", f"--seed={seed}",
                          f"--model_dir={model_dir}", *extra], cwd=REPO, capture_output=True,
                         text=True)
    wall = time.monotonic() - started
    if out.returncode:
        raise SystemExit(f"seed {seed} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    return {"seed": seed, "wall_seconds": round(wall, 1), **{k: results.get(k) for k in (
        "greedy_return_mean", "greedy_return_std", "final_network_return_mean",
        "env_steps_per_second", "gradient_steps_done")}}


def run_peer(seed: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.dqn_cartpole_torch", f"--seed={seed}"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("seeds", "0,1,2,3", "comma-separated seeds of the app's runs",
                        flag_values=fv)
    flags.DEFINE_string("peer_seeds", "0,1", "comma-separated seeds of the PyTorch peer's runs",
                        flag_values=fv)
    flags.DEFINE_string("work_dir", os.path.join(REPO, "runs", "bench_dqn_cartpole"),
                        "where the app's runs go (one model_dir per seed)", flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "dqn_cartpole"),
                        "path prefix of the .md and .json results", flag_values=fv)
    flags.DEFINE_string("extra", "", "extra app flags, space-separated", flag_values=fv)


def main(a) -> None:
    info = machine.describe()
    app = [run_app(int(s), a.work_dir, a.extra.split()) for s in a.seeds.split(",") if s]
    for r in app:
        print(json.dumps(r), flush=True)
    peer = [run_peer(int(s)) for s in a.peer_seeds.split(",") if s]
    for r in peer:
        print(json.dumps(r), flush=True)
    solved = [r for r in app if (r["greedy_return_mean"] or 0) >= 475]
    record = {"machine": info, "app": app, "pytorch": peer, "solved_seeds": len(solved)}
    with open(a.out + ".json", "w") as f:
        json.dump(record, f, indent=1)
    lines = [f"# DQN on CartPole-v1, 100k environment steps ({machine.label(info)}, "
             f"load {info['load_1min']})", "",
             "| run | seed | greedy return, kept policy (100 episodes) | final network | "
             "env steps/s (training) | wall time |", "|---|---|---|---|---|---|"]
    for r in app:
        lines.append(f"| suite (Keras, TF) | {r['seed']} | {r['greedy_return_mean']:.1f} ± "
                     f"{r['greedy_return_std']:.1f} | {r['final_network_return_mean']:.1f} | "
                     f"{r['env_steps_per_second']:.0f} | {r['wall_seconds']:.0f} s |")
    for r in peer:
        lines.append(f"| PyTorch {r['torch']} (final network) | {r['seed']} | | "
                     f"{r['greedy_return_mean']:.1f} ± {r['greedy_return_std']:.1f} | "
                     f"{r['env_steps_per_second']:.0f} | |")
    if app and peer:
        ratio = np.mean([r["env_steps_per_second"] for r in app]) / np.mean(
            [r["env_steps_per_second"] for r in peer])
        lines += ["", f"Training speed, suite / PyTorch: {ratio:.2f}x (means over the runs "
                      "above). Solved (>= 475): "
                      f"{len(solved)} of {len(app)} seeds."]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cli.run(main, define_flags)
