"""The cluster launch templates: launch/slurm.sbatch (run with stand-in srun and scontrol),
the SlurmClusterResolver contract it documents, and launch/k8s.py's TFJob manifests."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from launch.k8s import tfjob_manifest, to_yaml, worker_command

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "launch" / "slurm.sbatch"
EXAMPLE = REPO / "launch" / "tfjob_mnist.yaml"
TIMEOUT_S = 60

# Stand-ins: each records its arguments (one per line) and srun exits with $STUB_RC.
SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/srun.args"
echo "${TF_CONFIG-unset}" > "$STUB_DIR/srun.tf_config"
exit "${STUB_RC:-0}"
"""
SCONTROL = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/scontrol.args"
"""


def run_sbatch(tmp_path, *args, rc=0, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    full_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
                "STUB_RC": str(rc), "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO),
                "TF_CONFIG": '{"cluster": {}}', **env}
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
    assert directives["--ntasks-per-node"] == "--ntasks-per-node=1"  # see the GPU notes
    assert directives["--signal"].startswith("--signal=TERM@")  # no B:, every task gets it
    assert "--requeue" in directives and "--exclusive" in directives  # port 8888 is ours
    assert "--gpus-per-task" not in directives


def test_srun_runs_the_app_as_multi_worker_with_the_arguments_given(tmp_path):
    result, recorded = run_sbatch(tmp_path, "--flagfile=apps/flags/mnist.flags",
                                  "--model_dir=/shared/runs/mnist")
    assert result.returncode == 0, result.stderr
    assert recorded["srun"] == ["--kill-on-bad-exit=1", "--ntasks-per-node=1", "python", "-m",
                                "apps.train_mnist", "--strategy=multi_worker",
                                "--flagfile=apps/flags/mnist.flags",
                                "--model_dir=/shared/runs/mnist"]
    assert (tmp_path / "srun.tf_config").read_text().strip() == "unset"  # Slurm's resolver
    assert "scontrol" not in recorded


def test_a_preempted_run_is_requeued_until_the_limit(tmp_path):
    result, recorded = run_sbatch(tmp_path, rc=143)
    assert result.returncode == 143 and recorded["scontrol"] == ["requeue", "4242"]
    (tmp_path / "scontrol.args").unlink()
    result, recorded = run_sbatch(tmp_path, rc=143, SLURM_RESTART_COUNT="20")
    assert result.returncode == 143 and "scontrol" not in recorded
    result, recorded = run_sbatch(tmp_path, rc=2)  # bad input: requeueing would not help
    assert result.returncode == 2 and "scontrol" not in recorded


@pytest.fixture
def slurm_task(monkeypatch):
    """Sets the variables srun gives task `rank` of a 2-node, 1-task-per-node step."""
    def set_task(rank, tasks_per_node="1(x2)", num_tasks=2, gpus="0,1,2,3"):
        for name in [n for n in os.environ if n.startswith("SLURM_")] + ["TF_CONFIG"]:
            monkeypatch.delenv(name, raising=False)
        for name, value in {"SLURM_JOB_ID": "4242", "SLURM_PROCID": str(rank),
                            "SLURM_STEP_NUM_TASKS": str(num_tasks),
                            "SLURM_STEP_NODELIST": "gpu[01-02]",
                            "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
                            "CUDA_VISIBLE_DEVICES": gpus}.items():
            monkeypatch.setenv(name, value)  # restored after the test, CUDA_VISIBLE_DEVICES too
    return set_task


def test_slurm_resolver_makes_rank_0_the_chief_and_keeps_the_nodes_gpus(slurm_task):
    import tensorflow as tf

    from suite.runtime import devices

    roles = []
    for rank in (0, 1):
        slurm_task(rank)
        resolver = devices._cluster_resolver()
        assert isinstance(resolver, tf.distribute.cluster_resolver.SlurmClusterResolver)
        assert resolver.cluster_spec().as_dict() == {"worker": ["gpu01:8888", "gpu02:8888"]}
        assert resolver.num_accelerators() == {"GPU": 4}
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # every GPU of the node
        roles.append(devices.worker_role(types.SimpleNamespace(cluster_resolver=resolver)))
    assert [(r.task_type, r.task_id, r.num_workers, r.is_chief) for r in roles] == [
        ("worker", 0, 2, True), ("worker", 1, 2, False)]


def test_slurm_resolver_fails_with_one_gpu_per_task_as_the_template_warns(slurm_task):
    import tensorflow as tf

    slurm_task(5, tasks_per_node="4(x2)", num_tasks=8, gpus="0")  # what --gpus-per-task=1 gives
    with pytest.raises(ValueError, match="must not be zero"):
        tf.distribute.cluster_resolver.SlurmClusterResolver().cluster_spec()


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
    result = _k8s("--name=demo", "--image=registry.example.com/suite:0.1", "--num_workers=3",
                  "--namespace=ml", "--", *COMMAND, "--epochs=2")
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


def test_the_checked_in_example_is_what_its_first_line_generates():
    text = EXAMPLE.read_text()
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
    assert result.returncode != 0 and message in result.stderr
    assert not result.stdout
