"""The cluster launch templates: launch/slurm.sbatch (run with stand-in srun and scontrol;
tests/test_slurm.py submits it to a real Slurm), the Slurm resolver and device choice it relies
on, and launch/k8s.py's TFJob manifests."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import FIXTURE_MNIST, PATIENT_PEERS, assert_workers_identical
from launch.k8s import indexed_job_manifests, tfjob_manifest, to_yaml, worker_command
from launch.schemas.kubernetes import validate

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "launch" / "slurm.sbatch"
EXAMPLES = [REPO / "launch" / "tfjob_mnist.yaml", REPO / "launch" / "indexed_job_mnist.yaml"]
TIMEOUT_S = 60

# Stand-ins: each records its arguments (one per line) and srun exits with $STUB_RC. With
# $STUB_RUN_TASK srun first runs its task command as rank 0 (the app: python, a stand-in that
# exits with $STUB_APP_RC); with $STUB_HANG it then never returns, as srun waiting for a task
# exit message that was lost.
SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/srun.args"
echo "${TF_CONFIG-unset}" > "$STUB_DIR/srun.tf_config"
if [ -n "${STUB_RUN_TASK:-}" ]; then shift 3; SLURM_PROCID=0 "$@"; fi
if [ -n "${STUB_HANG:-}" ]; then exec sleep 600; fi
exit "${STUB_RC:-0}"
"""
PYTHON = """#!/bin/bash
exit "${STUB_APP_RC:-0}"
"""
SCONTROL = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/scontrol.args"
exit "${STUB_SCONTROL_RC:-0}"
"""


def run_sbatch(tmp_path, *args, rc=0, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL), ("python", PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
                "STUB_RC": str(rc), "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO),
                "TF_CONFIG": '{"cluster": {}}', "SUITE_TASK_EXITS": str(tmp_path / "exits"),
                **env}
    result = subprocess.run(["bash", str(SBATCH), *args], env=full_env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    recorded = {name: (tmp_path / f"{name}.args").read_text().splitlines()
                for name in ("srun", "scontrol") if (tmp_path / f"{name}.args").exists()}
    return result, recorded


def test_slurm_template_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr


def test_slurm_template_directives():
    directives = {line.split()[1].split("=")[0]: line.split()[1]
                  for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH ")}
    assert directives["--ntasks-per-node"] == "--ntasks-per-node=1"  # one task per node: all GPUs
    assert directives["--signal"].startswith("--signal=TERM@")  # no B:, every task gets it
    assert "--requeue" in directives and "--exclusive" in directives  # its ports are ours


def test_a_requeue_slurm_already_made_is_not_an_error(tmp_path):
    """Slurm requeues a job by itself when it counts one of its nodes as failed; the script's
    own `scontrol requeue` then fails, and the job still ends with the app's code."""
    result, recorded = run_sbatch(tmp_path, rc=138, STUB_SCONTROL_RC="1")
    assert result.returncode == 138 and recorded["scontrol"] == ["requeue", "4242"]
    assert "scontrol requeue failed (already requeued?)" in result.stdout


def test_a_silent_task_is_waited_for_task_exit_wait_s(tmp_path):
    result, recorded = run_sbatch(tmp_path, TASK_EXIT_WAIT_S="20")
    assert result.returncode == 0 and recorded["srun"][:2] == ["--kill-on-bad-exit=1",
                                                               "--wait=20"]


def test_srun_runs_the_app_with_the_arguments_given(tmp_path):
    result, recorded = run_sbatch(tmp_path, "--flagfile=apps/flags/mnist.flags",
                                  "--model_dir=/shared/runs/mnist")
    assert result.returncode == 0, result.stderr
    # No --strategy: inside a step of several tasks the app's auto is multi_worker, and a
    # one-task job keeps the single-machine strategies (mirrored over the node's GPUs).
    srun = recorded["srun"]
    assert srun[:4] == ["--kill-on-bad-exit=1", "--wait=60", "--label", "bash"]
    assert srun[-4:] == ["python", "apps.train_mnist", "--flagfile=apps/flags/mnist.flags",
                        "--model_dir=/shared/runs/mnist"]  # the task: python -m app args
    assert (tmp_path / "srun.tf_config").read_text().strip() == "unset"  # Slurm's resolver
    assert "scontrol" not in recorded and "job 4242: finished" in result.stdout


def test_a_step_srun_never_ends_is_ended_and_the_tasks_exit_code_decides(tmp_path):
    """The task exited 138 (a lost peer) but srun never returns (the exit message of a task
    behind a lost link never comes): the script ends srun TASK_EXIT_WAIT_S + STEP_END_GRACE_S
    after the task's exit, then requeues as for 138; the task-exit folder is removed."""
    import time

    started = time.monotonic()
    result, recorded = run_sbatch(tmp_path, STUB_RUN_TASK="1", STUB_HANG="1", STUB_APP_RC="138",
                                  TASK_EXIT_WAIT_S="1", STEP_END_GRACE_S="2",
                                  PYTHON=str(tmp_path / "bin" / "python"))
    assert result.returncode == 138, result.stdout + result.stderr
    assert time.monotonic() - started < 30
    assert ("srun still waits for a task 3 s after the first task exited (its node or link lost "
            "the exit message): ending the step") in result.stdout
    assert recorded["scontrol"] == ["requeue", "4242"] and "exit 138): requeueing" in result.stdout
    assert not (tmp_path / "exits").exists()
    # A task that ran to the end is never cut short: srun returns, its code stands.
    (tmp_path / "scontrol.args").unlink()
    result, recorded = run_sbatch(tmp_path, STUB_RUN_TASK="1", STUB_APP_RC="0", STUB_RC="0",
                                  TASK_EXIT_WAIT_S="1", STEP_END_GRACE_S="2",
                                  PYTHON=str(tmp_path / "bin" / "python"))
    assert result.returncode == 0 and "ending the step" not in result.stdout
    assert "job 4242: finished" in result.stdout


def test_only_a_saved_preemption_or_a_lost_peer_is_requeued_and_never_forever(tmp_path):
    result, recorded = run_sbatch(tmp_path, rc=143)
    assert result.returncode == 143 and recorded["scontrol"] == ["requeue", "4242"]
    assert "stopped by SIGTERM with the state saved (exit 143): requeueing" in result.stdout
    (tmp_path / "scontrol.args").unlink()
    result, recorded = run_sbatch(tmp_path, rc=138)
    assert result.returncode == 138 and recorded["scontrol"] == ["requeue", "4242"]
    assert ("lost a peer (a node or link failed) with the last backup intact (exit 138): "
            "requeueing (restart 1 of at most 20)") in result.stdout
    (tmp_path / "scontrol.args").unlink()
    result, recorded = run_sbatch(tmp_path, rc=143, SLURM_RESTART_COUNT="20")
    assert result.returncode == 143 and "scontrol" not in recorded
    assert "requeued 20 times (MAX_REQUEUES): not again" in result.stdout
    for rc in (1, 2, 137):  # diverged, bad input, killed: requeueing would not help
        result, recorded = run_sbatch(tmp_path, rc=rc)
        assert result.returncode == rc and "scontrol" not in recorded
        assert f"failed with exit code {rc}" in result.stdout and "not requeued" in result.stdout


@pytest.fixture
def slurm_task(monkeypatch):
    """Sets the variables srun gives task `rank` of a step (default: 2 nodes, 1 task each)."""
    def set_task(rank, tasks_per_node="1(x2)", num_tasks=2, gpus="0,1,2,3",
                 nodes="gpu[01-02]", local_id=0, node_id=0):
        for name in [n for n in os.environ if n.startswith("SLURM_")] + ["TF_CONFIG"]:
            monkeypatch.delenv(name, raising=False)
        for name, value in {"SLURM_JOB_ID": "4242", "SLURM_PROCID": str(rank),
                            "SLURM_STEP_NUM_TASKS": str(num_tasks),
                            "SLURM_STEP_NODELIST": nodes,
                            "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
                            "SLURM_LOCALID": str(local_id), "SLURM_NODEID": str(node_id),
                            "CUDA_VISIBLE_DEVICES": gpus}.items():
            monkeypatch.setenv(name, value)  # restored after the test, CUDA_VISIBLE_DEVICES too
    return set_task


def test_slurm_resolver_makes_rank_0_the_chief_and_sets_no_devices(slurm_task):
    import tensorflow as tf

    from suite.runtime import devices

    roles = []
    for rank in (0, 1):
        slurm_task(rank, node_id=rank)
        resolver = devices._cluster_resolver()
        assert isinstance(resolver, tf.distribute.cluster_resolver.SlurmClusterResolver)
        assert resolver.cluster_spec().as_dict() == {"worker": ["gpu01:8888", "gpu02:8888"]}
        assert resolver.num_accelerators() == {}  # the GPUs this process sees: none here
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # left as Slurm set it
        roles.append(devices.worker_role(types.SimpleNamespace(cluster_resolver=resolver)))
    assert [(r.task_type, r.task_id, r.num_workers, r.is_chief) for r in roles] == [
        ("worker", 0, 2, True), ("worker", 1, 2, False)]


def test_slurm_resolver_lays_out_several_tasks_per_node_on_consecutive_ports(slurm_task,
                                                                           monkeypatch):
    from suite.runtime import devices

    # Two CPU-only tasks on one node: TensorFlow's own resolver fails there (1 // 2 = 0 GPUs).
    slurm_task(1, tasks_per_node="2", num_tasks=2, gpus="", nodes="cpu01", local_id=1)
    resolver = devices._cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["cpu01:8888", "cpu01:8889"]}
    assert resolver.get_task_info() == ("worker", 1)
    # One task per GPU on 2 nodes of 4, --gpus-per-task=1: each task sees its one GPU.
    slurm_task(5, tasks_per_node="4(x2)", num_tasks=8, gpus="0", local_id=1, node_id=1)
    monkeypatch.setenv("SUITE_SLURM_PORT_BASE", "20000")
    spec = devices._cluster_resolver().cluster_spec().as_dict()["worker"]
    assert spec == [f"gpu0{n}:2000{i}" for n in (1, 2) for i in range(4)]


@pytest.mark.parametrize("tasks_per_node, gpus, local_id, node_id, expected", [
    ("4(x2)", "0,1,2,3", 2, 1, "2"),  # --gres=gpu:4, a task per GPU: each takes its own
    ("2", "0,1,2,3", 1, 0, "2,3"),  # 2 tasks on 4 GPUs: two each
    ("4", "4,5,6,7", 3, 0, "7"),  # the GPUs Slurm gave, not 0..3
    ("4(x2)", "3", 2, 0, None),  # --gpus-per-task=1: Slurm already bound them
    ("2", "", 1, 0, None),  # CPU-only node
    ("1(x2)", "0,1,2,3", 0, 1, None),  # one task per node: all its GPUs
    ("3", "0,1,2,3", 0, 0, None),  # 4 GPUs do not split evenly over 3 tasks: left alone
])
def test_each_task_takes_its_own_gpus_before_cuda_starts(tasks_per_node, gpus, local_id, node_id,
                                                         expected):
    from suite.runtime.startup import slurm_task_devices

    environ = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
               "SLURM_LOCALID": str(local_id), "SLURM_NODEID": str(node_id),
               "CUDA_VISIBLE_DEVICES": gpus}
    assert slurm_task_devices(environ) == expected
    assert slurm_task_devices({"CUDA_VISIBLE_DEVICES": gpus}) is None  # not under srun


# -- Kubernetes -------------------------------------------------------------------------------
COMMAND = ["python", "-m", "apps.train_mnist", "--flagfile=apps/flags/mnist.flags"]


def _k8s(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "launch.k8s", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_manifest_runs_the_command_in_n_workers_that_restart_on_retryable_codes():
    manifest = tfjob_manifest(COMMAND, "demo", "img:1", 3, gpus_per_worker=2)
    assert json.loads(json.dumps(manifest)) == manifest  # plain data, as YAML and JSON hold
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    worker = manifest["spec"]["tfReplicaSpecs"]["Worker"]
    assert list(manifest["spec"]["tfReplicaSpecs"]) == ["Worker"]  # worker 0 is the chief
    assert worker["replicas"] == 3 and worker["restartPolicy"] == "ExitCode"
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"  # where the operator sets TF_CONFIG
    assert container["command"] == [*COMMAND, "--strategy=multi_worker", "--model_dir=/runs/demo"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert container["volumeMounts"] == [{"name": "model-dir", "mountPath": "/runs"}]
    assert pod["volumes"] == [{"name": "model-dir",
                               "persistentVolumeClaim": {"claimName": "suite-runs"}}]


def test_generated_yaml_parses_back_to_the_manifest():
    import yaml  # PyYAML: a test dependency (setup.cfg [test])
    result = _k8s("--kind=tfjob", "--name=demo", "--image=registry.example.com/suite:0.1",
                  "--num_workers=3", "--namespace=ml", "--", *COMMAND, "--epochs=2")
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert parsed == tfjob_manifest([*COMMAND, "--epochs=2"], "demo",
                                    "registry.example.com/suite:0.1", 3, namespace="ml")
    assert parsed["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 3
    assert parsed["spec"]["runPolicy"]["cleanPodPolicy"] == "None"  # the string, not null


def test_yaml_quotes_what_yaml_would_misread():
    import yaml  # PyYAML: a test dependency (setup.cfg [test])
    tricky = {"a": ["--x=1", "-m", "yes", "null", "None", "1.0", "a: b", "#c", "", "x y", 7, True]}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


def _command_in(manifest_text):
    import yaml  # PyYAML: a test dependency (setup.cfg [test])
    manifest = yaml.safe_load(manifest_text)
    return manifest["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "command"]


def test_a_multiline_script_stays_in_the_comment():
    script = 'cd /app\nexec python -m apps.train_mnist "$@"'
    result = _k8s("--kind=tfjob", "--name=x", "--image=img", "--", "sh", "-c", script, "sh")
    assert result.returncode == 0, result.stderr
    assert _command_in(result.stdout) == ["sh", "-c", script, "sh", "--strategy=multi_worker",
                                          "--model_dir=/runs/x"]
    comment = [line[2:] for line in result.stdout.splitlines() if line.startswith("# ")]
    assert shlex.split("\n".join(comment))[-3:] == ["-c", script, "sh"]


def test_arguments_yaml_would_read_as_numbers_booleans_or_null_stay_strings():
    words = ["y", "N", "Yes", "off", "null", "~", ".nan", "-.inf", "0b101", "0o17", "1_000",
             "2024-01-02", "=", "<<", "tab\there", "caf\u00e9 \U0001F600"]
    command = ["python", "-m", "apps.train_mnist", "--seed", "0x10", "--learning_rate", ".inf",
               *words]
    result = _k8s("--kind=tfjob", "--name=x", "--image=img", "--", *command)
    assert result.returncode == 0, result.stderr
    assert _command_in(result.stdout)[:len(command)] == command
    for word in ("y", "N"):  # booleans in YAML 1.1 (Kubernetes), strings to PyYAML: quoted
        assert f'- "{word}"\n' in result.stdout


def test_yaml_that_would_not_read_back_is_refused():
    result = _k8s("--name=x", "--image=img", "--", "python", "bell\x07")
    assert result.returncode != 0
    assert "the generated YAML does not read back as the manifests" in result.stderr
    assert not result.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_the_checked_in_example_is_what_its_first_line_generates(example):
    text = example.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# python -m launch.k8s ")
    result = _k8s(*shlex.split(first[2:])[3:])
    assert result.returncode == 0, result.stderr
    assert result.stdout == text


def test_worker_command_keeps_a_model_dir_on_the_volume_and_refuses_others():
    assert worker_command([*COMMAND, "--model_dir=/runs/a/b", "--strategy=multi_worker"], "x",
                          "/runs") == [*COMMAND, "--model_dir=/runs/a/b", "--strategy=multi_worker"]
    with pytest.raises(ValueError, match="not on the shared volume mounted at /runs"):
        worker_command([*COMMAND, "--model_dir=/runs/../tmp"], "x", "/runs")
    with pytest.raises(ValueError, match="only with --strategy=multi_worker"):
        worker_command([*COMMAND, "--strategy=mirrored"], "x", "/runs")
    assert worker_command([*COMMAND, "--strategy=auto"], "x", "/runs")[-2:] == [
        "--strategy=auto", "--model_dir=/runs/x"]  # auto is multi_worker inside the TFJob


@pytest.mark.parametrize("args, message", [
    (["--name=Bad_Name", "--image=i", "--", "python"], "--name='Bad_Name': use lowercase"),
    (["--name=ok", "--image=i", "--mount_path=runs", "--", "python"], "must be an absolute path"),
    (["--name=ok", "--image=i"], "no worker command: put it after `--`"),
    (["--name=ok", "--", "python"], "--image must have a value"),
])
def test_bad_input_is_one_clear_error(args, message):
    result = _k8s(*args)
    assert result.returncode == 2 and message in result.stderr  # 2: bad input
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # no --help dump
    assert not result.stdout


# -- Kubernetes without an operator: headless Service + Indexed Job ----------------------------
def _pod(job):
    return job["spec"]["template"]["spec"]


def test_indexed_job_runs_n_workers_that_find_each_other_by_dns():
    service, job = indexed_job_manifests(COMMAND, "demo", "img:1", 3, namespace="ml",
                                         gpus_per_worker=2, max_restarts=5)
    assert json.loads(json.dumps([service, job])) == [service, job]  # plain data
    assert (service["apiVersion"], service["kind"], job["apiVersion"], job["kind"]) == (
        "v1", "Service", "batch/v1", "Job")
    assert service["metadata"] == job["metadata"] == {"name": "demo", "namespace": "ml"}
    # Headless, selecting the job's pods, their DNS records published before they are ready.
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "demo"}
    spec, pod = job["spec"], _pod(job)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert pod["subdomain"] == "demo"  # hostname demo-<i> (set by the Job) + .demo resolves
    (container,) = pod["containers"]
    assert container["command"] == [
        "python", "-m", "launch.k8s_tf_config", "--num_workers=3",
        "--worker_address=demo-{index}.demo:2222", "--",
        *COMMAND, "--strategy=multi_worker", "--model_dir=/runs/demo"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert pod["volumes"] == [{"name": "model-dir",
                               "persistentVolumeClaim": {"claimName": "suite-runs"}}]


def test_indexed_job_fails_at_once_on_permanent_codes_and_retries_the_others_a_bounded_time():
    _, job = indexed_job_manifests(COMMAND, "demo", "img:1", 4, max_restarts=5)
    spec = job["spec"]
    ignore, fail = spec["podFailurePolicy"]["rules"]
    # Preempted, evicted, drained: the cluster's doing, not counted (the app saved and exits 143).
    assert ignore == {"action": "Ignore",
                      "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    # Bad input (2), divergence or a crash (1), anything else: retrying cannot help.
    assert fail == {"action": "FailJob", "onExitCodes": {
        "containerName": "tensorflow", "operator": "NotIn", "values": [130, 137, 138, 143]}}
    # 130/137/143 fall through to Count: all 4 workers exit together, so 5 restarts = 20 pods.
    assert spec["backoffLimit"] == 20
    assert _pod(job)["restartPolicy"] == "Never"  # what podFailurePolicy requires


def test_generated_indexed_job_yaml_is_the_service_and_the_job_and_validates():
    import yaml  # PyYAML: a test dependency (setup.cfg [test])
    result = _k8s("--name=demo", "--image=img:1", "--num_workers=3", "--max_restarts=2", "--",
                  *COMMAND)
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents == indexed_job_manifests(COMMAND, "demo", "img:1", 3, max_restarts=2)
    for document in documents:
        validate(document)  # the Kubernetes v1.30 API's schemas (launch/schemas)


@pytest.mark.parametrize("args, message", [
    (["--num_workers=0"], "flag --num_workers=0: 0 is not a positive integer"),
    (["--max_restarts=-1"], "flag --max_restarts=-1: -1 is not a non-negative integer"),
    (["--kind=deployment"], "value should be one of <indexed_job|tfjob>"),
    (["--name=Bad_Name"], "--name='Bad_Name': use lowercase"),
    (["--", "python", "-m", "apps.train_mnist", "--model_dir=/tmp/x"],
     "--model_dir=/tmp/x is not on the shared volume mounted at /runs"),
])
def test_bad_input_to_the_indexed_job_is_one_clear_error(args, message):
    if "--" not in args:
        args = [*args, "--", *COMMAND]
    result = _k8s("--name=ok", "--image=i", *args)  # a later --name wins
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not result.stdout


def test_manifest_functions_refuse_what_the_flags_cannot_catch():
    with pytest.raises(ValueError, match="--num_workers=0 must be >= 1"):
        indexed_job_manifests(COMMAND, "demo", "img", 0)
    with pytest.raises(ValueError, match="--max_restarts=-1 must be >= 0"):
        indexed_job_manifests(COMMAND, "demo", "img", 2, max_restarts=-1)


def _tf_config_builder(*args, index="1", command=("import os; print(os.environ['TF_CONFIG'])",)):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOB_COMPLETION_INDEX": index}
    if index is None:
        del env["JOB_COMPLETION_INDEX"]
    return subprocess.run([sys.executable, "-m", "launch.k8s_tf_config", *args, "--",
                           sys.executable, "-c", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_each_pod_gets_the_tf_config_of_its_completion_index_and_runs_the_command():
    result = _tf_config_builder("--num_workers=3", "--worker_address=demo-{index}.demo:2222")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "cluster": {"worker": ["demo-0.demo:2222", "demo-1.demo:2222", "demo-2.demo:2222"]},
        "task": {"type": "worker", "index": 1}}
    # exec: the app's exit code is the pod's, which podFailurePolicy reads.
    result = _tf_config_builder("--num_workers=2", "--worker_address=w{index}:1",
                                command=("raise SystemExit(143)",))
    assert result.returncode == 143


@pytest.mark.parametrize("args, index, message", [
    (["--num_workers=2", "--worker_address=w{index}:1"], None, "JOB_COMPLETION_INDEX is not set"),
    (["--num_workers=2", "--worker_address=w{index}:1"], "2", "is not a worker index 0..1"),
    (["--num_workers=2", "--worker_address=w:1"], "0", "has no {index}"),
    (["--num_workers=2", "--worker_address=w{index}"], "0", "must end with :<port>"),
    (["--num_workers=2", "--worker_address=w{index}{x}:1"], "0", "only {index} may be in braces"),
    (["--num_workers=2"], "0", "give --num_workers, --worker_address"),
    (["--workers=2"], "0", "unknown option '--workers=2'"),
])
def test_bad_input_to_the_tf_config_builder_is_exit_2(args, index, message):
    result = _tf_config_builder(*args, index=index)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not result.stdout


def _free_port_pair() -> str:
    """A port prefix P such that ports P0 and P1 are both free on 127.0.0.1 now."""
    import socket

    for prefix in range(3456, 6553, 97):
        sockets = [socket.socket() for _ in range(2)]
        try:
            for i, s in enumerate(sockets):
                s.bind(("127.0.0.1", int(f"{prefix}{i}")))
            return str(prefix)
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    pytest.skip("no free pair of ports P0, P1 on 127.0.0.1")


@pytest.mark.slow
def test_two_pods_commands_form_one_cluster_and_train(tmp_path):
    """The generated pod command, run as the Job runs it (JOB_COMPLETION_INDEX 0 and 1) as two
    local processes: only the host pattern differs from the manifest's (pods' DNS names do not
    exist here), so {index} picks each worker's port on 127.0.0.1 instead of its host."""
    app = [sys.executable, "-m", "apps.train_mnist", f"--data_dir={FIXTURE_MNIST}",
           "--noverify_checksums", "--batch_size=10", PATIENT_PEERS, "--epochs=1",
           "--steps_per_epoch=5", "--noexport"]
    _, job = indexed_job_manifests(app, "mnist", "img", 2, mount_path=str(tmp_path))
    command = _pod(job)["containers"][0]["command"]
    address = "--worker_address=mnist-{index}.mnist:2222"
    assert command[:6] == ["python", "-m", "launch.k8s_tf_config", "--num_workers=2", address,
                           "--"]
    command = [sys.executable, *command[1:4], f"--worker_address=127.0.0.1:{_free_port_pair()}"
               "{index}", *command[5:]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    workers = [subprocess.Popen(command, cwd=REPO, env={**env, "JOB_COMPLETION_INDEX": str(i)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    try:
        outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    model_dir = tmp_path / "mnist"  # the --model_dir the manifest put on the volume
    results = json.loads((model_dir / "results.json").read_text())  # written by the chief
    assert results["replicas"] == 2
    assert '"strategy": "CollectiveAllReduceStrategy", "replicas": 2' in outputs[0]
    assert assert_workers_identical(model_dir)
