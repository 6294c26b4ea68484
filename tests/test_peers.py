"""suite.runtime.peers: which TensorFlow errors mean a lost peer, and the one line that says so.
The real thing (a node killed, a link unplugged, in a Slurm cluster of network namespaces) is
tests/test_slurm_cluster.py."""
from __future__ import annotations

import json

import pytest
import tensorflow as tf

from suite.runtime.devices import WorkerRole
from suite.runtime.peers import EXIT_LOST_PEER, is_lost_peer, lost_peer_message

CLUSTER = {"worker": ["suite-n1:8888", "suite-n2:8888"]}
CHIEF = WorkerRole("worker", 0, 2, True)
OTHER = WorkerRole("worker", 1, 2, False)
# As TensorFlow 2.21 words them (seen in tests/test_slurm_cluster.py's runs).
UNHEALTHY = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/"
    "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
    "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):\n"
    "/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs for an earlier "
    "error, or scheduler events (e.g. preemption, eviction) to debug further.\n"
    "The error could be from a previous operation. Restart your program to reset. "
    "[Op:CollectiveReduceV2] name: ")
HEARTBEAT = "Deadline Exceeded\n\nRPC: /tensorflow.CoordinationService/Heartbeat"
RESET = ("Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
         "information from remote target /job:worker/replica:0/task:1")


def test_only_tensorflows_peer_errors_in_a_cluster_are_lost_peers():
    unavailable = tf.errors.UnavailableError(None, None, UNHEALTHY)
    assert is_lost_peer(unavailable, 2)
    assert is_lost_peer(tf.errors.DeadlineExceededError(None, None, HEARTBEAT), 3)
    assert not is_lost_peer(unavailable, 1)  # one process: something else is unavailable
    assert not is_lost_peer(RuntimeError(UNHEALTHY), 2)  # not TensorFlow's
    assert not is_lost_peer(tf.errors.InvalidArgumentError(None, None, "bad shape"), 2)
    assert not is_lost_peer(tf.errors.InternalError(None, None, "out of memory"), 2)
    assert is_lost_peer(tf.errors.InternalError(None, None, "coordination service error"), 2)


def test_the_message_names_the_worker_the_peer_what_was_lost_and_the_intact_backup(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 2, "step": 0, "saved": "ckpt-3"}))
    error = tf.errors.UnavailableError(None, None, UNHEALTHY)
    line = lost_peer_message(error, CHIEF, CLUSTER, str(tmp_path))
    assert "\n" not in line
    assert line.startswith("worker-0 lost worker-1 (suite-n2:8888): it stopped sending heartbeats")
    assert "[UnavailableError]" in line
    assert f"the last backup, in {tmp_path}, is intact: the rerun resumes from it at epoch 3, " \
           "step 0" in line
    assert line.endswith(f"(exit {EXIT_LOST_PEER}: retryable).")


@pytest.mark.parametrize("role, message, peer, lost", [
    (OTHER, HEARTBEAT, "worker-0 (suite-n1:8888)", "its coordination service did not answer"),
    (CHIEF, RESET, "worker-1 (suite-n2:8888)", "its connection was reset or refused"),
    (CHIEF, "Collective ops is aborted by: something new", "a peer", "a collective op failed: "
     "Collective ops is aborted by: something new"),
])
def test_other_ways_of_losing_a_peer(tmp_path, role, message, peer, lost):
    line = lost_peer_message(tf.errors.UnavailableError(None, None, message), role, CLUSTER,
                             str(tmp_path))
    assert line.startswith(f"{role.name} lost {peer}: {lost}"), line
    assert "no backup was written yet" in line and "the rerun starts from the beginning" in line
    assert "\n" not in line
