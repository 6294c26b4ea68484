"""Runs one training command as an N-worker cluster on this machine (127.0.0.1).

    python -m launch.local --num_workers=2 -- python -m apps.train_mnist --flagfile=apps/flags/mnist.flags

Everything after `--` is the worker command, started N times. Worker i gets
TF_CONFIG={"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}, the variable
Kubeflow's TFJob sets on a real cluster, so the command runs unchanged on both: its
MultiWorkerMirroredStrategy finds its peers from TF_CONFIG. Each output line is prefixed with
"[worker i] ". If a worker fails, the others are stopped (SIGTERM, then SIGKILL after
--grace_period_s) and the launcher exits with the failed worker's code: a collective training job
cannot go on without one of its workers, and the survivors would otherwise wait on it forever.
SIGINT and SIGTERM sent to the launcher are forwarded to every worker.

With --max_restarts=N a cluster whose worker failed with a retryable code (RETRYABLE_EXIT_CODES:
138 a lost peer, 137 a killed worker, 143 a worker stopped by SIGTERM with its state saved) is
started again, all workers, up to N times: the apps resume from their backup, as a requeued
Slurm job or a recreated Kubernetes pod does. A signal to the launcher itself is never retried.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

from launch.k8s_tf_config import tf_config as cluster_tf_config
from suite.runtime.flags import parse_flags, usage_error
from suite.runtime.stopping import RETRYABLE_EXIT_CODES

HOST = "127.0.0.1"
_POLL_S = 0.05

flags.DEFINE_integer("num_workers", 2, "How many worker processes to start.", lower_bound=1)
flags.DEFINE_integer(
    "port_base", None,
    "Worker i listens on port_base + i. Default: ports the OS reports free on 127.0.0.1.",
    lower_bound=1, upper_bound=65535)
flags.DEFINE_float(
    "grace_period_s", 10.0,
    "Seconds a worker has to exit after SIGTERM before it is killed with SIGKILL.",
    lower_bound=0.0)
flags.DEFINE_integer(
    "max_restarts", 0,
    "Start the whole cluster again, up to this many times, when a worker fails with a retryable "
    "exit code (138: a lost peer, 137: killed, 143: stopped by SIGTERM, state saved).",
    lower_bound=0)
flags.register_multi_flags_validator(
    ["port_base", "num_workers"],
    lambda f: f["port_base"] is None or f["port_base"] + f["num_workers"] - 1 <= 65535,
    "--port_base + --num_workers - 1 must be a port number (<= 65535): lower --port_base")
FLAGS = flags.FLAGS


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """The TF_CONFIG of worker `index` in a cluster of workers on `ports`."""
    return cluster_tf_config([f"{HOST}:{port}" for port in ports], index)


def _pump(stream, out, prefix: bytes, lock: threading.Lock) -> None:
    """Copies a worker's output to ours line by line, each line prefixed with its worker.

    If ours breaks (`| head`, a closed log), the rest is read and dropped: a worker whose pipe
    nobody drains blocks on its next print and never exits.
    """
    for line in iter(stream.readline, b""):
        if out is None:
            continue
        if not line.endswith(b"\n"):
            line += b"\n"
        with lock:
            try:
                out.write(prefix + line)
                out.flush()
            except OSError:
                out = None
    stream.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    # Each worker leads its own process group, so a command such as `sh -c ...` goes down whole.
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _exit_code(returncode: int) -> int:
    """A shell's convention: killed by signal N reads as 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def launch(command: list[str], num_workers: int, port_base: int | None = None,
           grace_period_s: float = 10.0, max_restarts: int = 0) -> int:
    """Runs `command` as `num_workers` workers until all exit; the whole cluster again, up to
    `max_restarts` times, while a worker fails with a retryable code (RETRYABLE_EXIT_CODES).

    Returns 0, the exit code of the first worker seen failing, or 128 + the signal the launcher got.
    """
    for restart in range(max_restarts + 1):
        code, signalled = _launch_once(command, num_workers, port_base, grace_period_s)
        if signalled or code not in RETRYABLE_EXIT_CODES or restart == max_restarts:
            return code
        print(f"[launch.local] a worker exited {code} (retryable): starting all {num_workers} "
              f"workers again (restart {restart + 1} of at most {max_restarts})", flush=True)
    return code


def _launch_once(command: list[str], num_workers: int, port_base: int | None,
                 grace_period_s: float) -> tuple[int, bool]:
    """One run of the cluster: (exit code as launch() returns it, whether the launcher got a
    signal)."""
    if port_base is None:
        ports = free_ports(num_workers)
    else:
        ports = list(range(port_base, port_base + num_workers))
    lock = threading.Lock()
    procs, pumps = [], []
    received = []  # signals sent to the launcher
    kill_at = None  # when workers still running get SIGKILL

    def stop_all(sig: int) -> None:
        nonlocal kill_at
        for proc in procs:
            if proc.poll() is None:
                _signal_group(proc, sig)
        if kill_at is None:
            kill_at = time.monotonic() + grace_period_s

    def forward(signum, _frame):
        received.append(signum)
        stop_all(signum)

    # Installed before any worker starts, so no signal can leave a worker orphaned.
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    failure = 0
    try:
        for i in range(num_workers):
            if received:
                break
            env = dict(os.environ, TF_CONFIG=tf_config(ports, i))
            env.setdefault("PYTHONUNBUFFERED", "1")  # interleave live, not in 8 KiB blocks
            try:
                proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError:
                stop_all(signal.SIGKILL)
                for started in procs:
                    started.wait()
                raise
            procs.append(proc)
            prefix = f"[worker {i}] ".encode()
            for stream, out in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer)):
                pump = threading.Thread(target=_pump, args=(stream, out, prefix, lock), daemon=True)
                pump.start()
                pumps.append(pump)

        while [proc for proc in procs if proc.poll() is None]:  # poll all: see every exit
            if not failure:
                failure = next((_exit_code(p.returncode) for p in procs if p.returncode), 0)
                if failure:
                    stop_all(signal.SIGTERM)
            if kill_at is not None and time.monotonic() >= kill_at:
                for proc in procs:
                    if proc.poll() is None:
                        _signal_group(proc, signal.SIGKILL)
            time.sleep(_POLL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for pump in pumps:
        pump.join(timeout=5)
    if received:
        return 128 + received[0], True
    return failure or next((_exit_code(p.returncode) for p in procs if p.returncode), 0), False


def main(argv: list[str]) -> int:
    command = argv[1:]
    if not command:
        usage_error(
            "no worker command: put the command to run after `--`, e.g. "
            "python -m launch.local --num_workers=2 -- python -m apps.train_mnist "
            "--flagfile=apps/flags/mnist_smoke.flags")
    try:
        return launch(command, FLAGS.num_workers, FLAGS.port_base, FLAGS.grace_period_s,
                      FLAGS.max_restarts)
    except (FileNotFoundError, PermissionError) as error:
        usage_error(f"cannot start the worker command {command[0]!r}: {error}")


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
