"""launch.local, run as users run it (`python -m launch.local ... -- <command>`), with tiny
`python -c` workers: no TensorFlow, each test a few seconds at most."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60

# Prints the worker's task and cluster on stdout and a line on stderr.
REPORT = """
import json, os, sys
config = json.loads(os.environ["TF_CONFIG"])
print("task", config["task"]["type"], config["task"]["index"])
print("cluster", json.dumps(config["cluster"]))
print("done", file=sys.stderr)
"""

# The worker named by argv[3] waits for the other's pid file and exits with code 3; the other
# writes its pid and sleeps.
FAIL_ONE = """
import json, os, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
pid_file = sys.argv[1]
if index != int(sys.argv[3]):
    if sys.argv[2] == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(60)
else:
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(3)
"""

# Each worker marks itself ready, then reports the signal it gets and exits 0.
ON_SIGTERM = """
import json, os, signal, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
def bye(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
open(os.path.join(sys.argv[1], f"ready{index}"), "w").close()
time.sleep(60)
"""


def _launcher(*args):
    return [sys.executable, "-m", "launch.local", *args]


def _run(*args):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    return subprocess.run(_launcher(*args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_each_worker_gets_its_tf_config_and_prefixed_output():
    result = _run("--num_workers=2", "--", sys.executable, "-c", REPORT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(("[worker 0] ", "[worker 1] ")) for line in lines)
    assert sorted(result.stderr.splitlines()) == ["[worker 0] done", "[worker 1] done"]
    for i in range(2):
        assert f"[worker {i}] task worker {i}" in lines
    clusters = [json.loads(line.split(" ", 3)[3]) for line in lines if " cluster " in line]
    assert clusters[0] == clusters[1]
    addresses = clusters[0]["worker"]
    assert len(addresses) == 2 and len(set(addresses)) == 2
    assert all(address.startswith("127.0.0.1:") for address in addresses)


def test_port_base_sets_consecutive_ports():
    result = _run("--num_workers=3", "--port_base=23450", "--", sys.executable, "-c", REPORT)
    assert result.returncode == 0, result.stderr
    cluster = next(line for line in result.stdout.splitlines() if " cluster " in line)
    assert json.loads(cluster.split(" ", 3)[3]) == {
        "worker": ["127.0.0.1:23450", "127.0.0.1:23451", "127.0.0.1:23452"]}


@pytest.mark.parametrize("sleeper, failing", [("obeys_sigterm", 0), ("ignore_sigterm", 0),
                                              ("obeys_sigterm", 1)])
def test_a_failing_worker_stops_the_others_and_sets_the_exit_code(tmp_path, sleeper, failing):
    """Worker 1 failing while worker 0 runs is the case a poll of the first worker alone missed."""
    pid_file = tmp_path / "sleeper.pid"
    start = time.monotonic()
    result = _run("--num_workers=2", "--grace_period_s=1", "--",
                  sys.executable, "-c", FAIL_ONE, str(pid_file), sleeper, str(failing))
    elapsed = time.monotonic() - start
    assert result.returncode == 3, result.stderr
    assert elapsed < 20, f"launcher took {elapsed:.1f} s to stop a 60 s sleeper"
    assert _gone(int(pid_file.read_text()))


def test_sigterm_to_the_launcher_reaches_every_worker(tmp_path):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    proc = subprocess.Popen(
        _launcher("--num_workers=2", "--", sys.executable, "-c", ON_SIGTERM, str(tmp_path)),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline and proc.poll() is None, "workers never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sorted(stdout.splitlines()) == ["[worker 0] got SIGTERM", "[worker 1] got SIGTERM"]
    assert proc.returncode == 128 + signal.SIGTERM, stderr


# Prints more than a pipe holds, then a last line on stderr.
CHATTY = """
import sys
for i in range(100000):
    print(i)
print("finished", file=sys.stderr)
"""


def test_a_closed_stdout_does_not_block_the_workers():
    """`launch.local ... | head -1`: the workers' output is still drained, so they finish."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    proc = subprocess.Popen(_launcher("--num_workers=2", "--", sys.executable, "-c", CHATTY),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().startswith("[worker ")
        proc.stdout.close()  # as head does after its line
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert sorted(stderr.splitlines()) == ["[worker 0] finished", "[worker 1] finished"]


@pytest.mark.parametrize("args", [["--num_workers=2"], ["--num_workers=2", "--"]])
def test_missing_command_is_a_clear_error(args):
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    assert "no worker command: put the command to run after `--`" in result.stderr


def test_bad_port_base_is_rejected():
    result = _run("--num_workers=2", "--port_base=65535", "--", sys.executable, "-c", "pass")
    assert result.returncode == 2, result.stderr
    assert "--port_base + --num_workers - 1 must be a port number" in result.stderr


def test_unknown_worker_program_is_a_clear_error():
    result = _run("--num_workers=2", "--", "no-such-program-for-launch-local")
    assert result.returncode == 2, result.stderr
    assert "cannot start the worker command 'no-such-program-for-launch-local'" in result.stderr


# Worker 1 exits with the code given in argv[2] on the first run (no marker file yet), then
# every worker exits 0; each run appends its worker's index to the log.
RETRY = """
import json, os, sys
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
folder, code = sys.argv[1], int(sys.argv[2])
with open(os.path.join(folder, "log"), "a") as f:
    f.write(f"{index}\\n")
marker = os.path.join(folder, "failed")
if index == 1 and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(code)
"""


@pytest.mark.parametrize("code, restarted", [(138, True), (137, True), (143, True), (2, False),
                                             (1, False)])
def test_a_retryable_exit_restarts_the_whole_cluster(tmp_path, code, restarted):
    result = _run("--num_workers=2", "--max_restarts=2", "--grace_period_s=1", "--",
                  sys.executable, "-c", RETRY, str(tmp_path), str(code))
    runs = (tmp_path / "log").read_text().split()
    if restarted:
        assert result.returncode == 0, result.stderr
        assert sorted(runs) == ["0", "0", "1", "1"]  # both workers, twice
        assert (f"[launch.local] a worker exited {code} (retryable): starting all 2 workers "
                "again (restart 1 of at most 2)") in result.stdout
    else:
        assert result.returncode == code and sorted(runs) == ["0", "1"]
        assert "[launch.local]" not in result.stdout


def test_restarts_stop_at_max_restarts(tmp_path):
    always = RETRY.replace("not os.path.exists(marker)", "True")
    result = _run("--num_workers=2", "--max_restarts=1", "--grace_period_s=1", "--",
                  sys.executable, "-c", always, str(tmp_path), "138")
    assert result.returncode == 138
    assert len((tmp_path / "log").read_text().split()) == 4  # the first run and one restart
