"""A lost peer: a worker of a multi-worker run that died, was killed or was cut off.

Under MultiWorkerMirroredStrategy every step is a collective op. When a worker stops sending
heartbeats to the coordination service for `peer_timeout_s` (a dead node, an unplugged link, a
partition), the service marks it unhealthy and aborts every collective of every worker: the
next all-reduce raises UnavailableError ("The following tasks are unhealthy (stopped sending
heartbeats)"), or the heartbeat itself fails with DeadlineExceededError on the worker that was
cut off. TensorFlow cannot go on in that process ("Restart your program to reset"), but nothing
is lost either: backups are written whole and committed by a rename (suite.runtime.backup), and
a save involves no collective, so the last backup is intact and the rerun resumes from it.

So a lost peer is "retry me", not a crash: one line names this worker, the peer and what was
lost, says the backup is intact, and the process exits with EXIT_LOST_PEER (138 = 128 +
SIGUSR1: a code no signal the schedulers send gives, and one of the codes Kubeflow's training
operator counts as retryable). launch/slurm.sbatch requeues it, launch.local restarts on it
(--max_restarts), and the Kubernetes manifests of launch.k8s recreate the pods.
"""
from __future__ import annotations

import json
import os
import re

from suite.runtime.stopping import EXIT_LOST_PEER

__all__ = ["EXIT_LOST_PEER", "is_lost_peer", "lost_peer_message"]

# TensorFlow's error classes a lost peer raises; InternalError/CancelledError only with words
# of the coordination service or the collectives in them (they have other causes too).
_LOST_CLASSES = ("UnavailableError", "DeadlineExceededError", "AbortedError")
_MAYBE_CLASSES = ("InternalError", "CancelledError", "UnknownError")
_PEER_WORDS = re.compile(r"heartbeat|coordination|[Cc]ollective ops is aborted|unhealthy|"
                         r"barrier|Socket closed|Connection reset|failed to connect", re.I)
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def is_lost_peer(error: BaseException, num_workers: int) -> bool:
    """Whether `error` is TensorFlow's way of saying a peer of this multi-worker run is gone."""
    if num_workers <= 1:
        return False
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return False
    name = type(error).__name__
    return name in _LOST_CLASSES or (name in _MAYBE_CLASSES
                                     and bool(_PEER_WORDS.search(str(error))))


def _unhealthy_tasks(message: str) -> list[tuple[str, int]]:
    """The tasks the coordination service lists as unhealthy, else every task named."""
    tail = message.split("unhealthy", 1)[1] if "unhealthy" in message else message
    found = []
    for job, index in _TASK.findall(tail):
        if (job, int(index)) not in found:
            found.append((job, int(index)))
    return found


def _what_was_lost(message: str) -> str:
    if "stopped sending heartbeats" in message or "unhealthy" in message:
        return "it stopped sending heartbeats (its node died, or the link to it is down)"
    if "heartbeat" in message.lower():
        return ("its coordination service did not answer this worker's heartbeats (its node "
                "died, or the link to it is down)")
    if re.search(r"Connection reset|Socket closed|failed to connect|Connection refused", message):
        return "its connection was reset or refused (its process or node died)"
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first)
    return f"a collective op failed: {first[:160]}"


def lost_peer_message(error: BaseException, role, cluster: dict, backup_dir: str) -> str:
    """One line: which worker, which peer and what was lost, and that the last backup (read
    from `backup_dir`) is intact and resumes. `cluster` is the cluster spec as a dict."""
    message = str(getattr(error, "message", "") or error)
    me = role.name
    peers = [(job, i) for job, i in _unhealthy_tasks(message)
             if (job, i) != (role.task_type, role.task_id)]
    if not peers and "heartbeat" in message.lower():  # the service runs on the first task
        leader = ("chief", 0) if cluster.get("chief") else ("worker", 0)
        if leader != (role.task_type, role.task_id):
            peers = [leader]

    def named(job: str, index: int) -> str:
        tasks = cluster.get(job) or []
        address = tasks[index] if index < len(tasks) else None
        return f"{job}-{index}" + (f" ({address})" if address else "")

    whom = ", ".join(named(job, i) for job, i in peers) or "a peer"
    state = _backup_state(backup_dir)
    if state is None:
        saved = (f"no backup was written yet (in {backup_dir}): the rerun starts from the "
                 "beginning")
    else:
        saved = (f"the last backup, in {backup_dir}, is intact: the rerun resumes from it at "
                 f"epoch {state['epoch'] + 1}, step {state['step']}")
    return (f"{me} lost {whom}: {_what_was_lost(message)} "
            f"[{type(error).__name__}]. Training stopped; {saved}. Run the same command again "
            f"(exit {EXIT_LOST_PEER}: retryable).")


def _backup_state(backup_dir: str) -> dict | None:
    try:
        with open(os.path.join(backup_dir, "state.json")) as f:
            state = json.load(f)
        return {"epoch": int(state["epoch"]), "step": int(state["step"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
