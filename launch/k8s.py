"""Prints the Kubernetes manifests that run one training command as N workers.

    python -m launch.k8s --name=mnist --image=registry.example.com/suite:0.1 --num_workers=4 \\
        -- python -m apps.train_mnist --flagfile=apps/flags/mnist.flags > job.yaml
    kubectl apply -f job.yaml

Everything after `--` is the worker command, as for launch.local: each worker gets TF_CONFIG,
so the same command runs here and on a laptop. Worker 0 is the chief. Two kinds (--kind):
- indexed_job (the default): a headless Service and an Indexed Job (batch/v1), plain
  Kubernetes >= 1.27 with no operator. Pod i runs the command behind launch.k8s_tf_config, which
  builds TF_CONFIG from the pod's JOB_COMPLETION_INDEX and the pods' DNS names
  <name>-<i>.<name>. Its podFailurePolicy fails the job on an exit code other than 130, 137, 138
  or 143 (SIGINT, SIGKILL, a lost peer, SIGTERM; the app exits 143 after a preemption with its
  state saved, 138 when a node or link of the cluster failed; 2 is its bad-input code), recreates pods the cluster disrupted without counting them, and
  counts the rest: at most --max_restarts restarts of all the workers.
- tfjob: a Kubeflow TFJob, for clusters where the (no longer maintained) training operator still
  runs; the operator sets TF_CONFIG in the pods (container name "tensorflow"). restartPolicy
  ExitCode: it recreates pods that exit 130, 137, 138 (user-defined) or 143 and fails the job
  on other codes.
Either way the job:
- adds --strategy=multi_worker to the command if it is missing, and a --model_dir on the shared
  volume (<mount_path>/<name>) if none is given; a --model_dir elsewhere is refused, because
  every worker must see the chief's backup to resume;
- mounts the PersistentVolumeClaim --pvc (it must be ReadWriteMany: all pods mount it);
- gives pods --grace_period_s between SIGTERM and SIGKILL to finish a step and save.
The manifests are checked against their schemas (launch/schemas: the Kubernetes API's for Job
and Service, the Kubeflow CRD's for TFJob) before they are printed, and written by a small YAML
emitter here, whose output is read back (PyYAML) to be those manifests.
"""
from __future__ import annotations

import json
import posixpath
import re
import shlex
import sys

from absl import app, flags

from suite.runtime.flags import parse_flags, usage_error
from suite.runtime.stopping import EXIT_CODES, RETRYABLE_EXIT_CODES

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: the operator's webhook
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label
CONTAINER = "tensorflow"  # the name the operator looks for to set TF_CONFIG and the port
TFJOB_PORT = 2222
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # the Job controller labels its pods (1.27+)
# SIGINT, SIGKILL, a lost peer, SIGTERM: the codes after which the same command resumes.
RETRYABLE = tuple(sorted((EXIT_CODES["SIGINT"], *RETRYABLE_EXIT_CODES)))

FLAGS = flags.FLAGS


def _flag_value(command: list[str], name: str) -> str | None:
    """The value of --name=value in `command` (the last one wins, as absl does), else None."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return values[-1] if values else None


def worker_command(command: list[str], name: str, mount_path: str) -> list[str]:
    """`command` with --strategy=multi_worker and a --model_dir on the shared volume."""
    if any(arg in (f"--{flag}" for flag in ("strategy", "model_dir")) for arg in command):
        raise ValueError("write --strategy and --model_dir as --flag=value in the worker command")
    command = list(command)
    strategy = _flag_value(command, "strategy")
    if strategy is None:
        command.append("--strategy=multi_worker")
    elif strategy not in ("multi_worker", "auto"):
        raise ValueError(f"the worker command says --strategy={strategy}, but a TFJob's workers "
                         "train together only with --strategy=multi_worker (or auto)")
    model_dir = _flag_value(command, "model_dir")
    root = posixpath.normpath(mount_path) + "/"
    if model_dir is None:
        command.append(f"--model_dir={root}{name}")
    elif not posixpath.normpath(model_dir).startswith(root):
        raise ValueError(f"--model_dir={model_dir} is not on the shared volume mounted at "
                         f"{mount_path}: every worker reads the chief's backup there to resume, "
                         f"so use e.g. --model_dir={root}{name}")
    return command


def _check_job(name: str, namespace: str | None, mount_path: str, num_workers: int) -> None:
    """The bad input either kind of job refuses, as one ValueError that says how to fix it."""
    if not (DNS_LABEL.match(name) and len(name) <= 50):
        raise ValueError(f"--name={name!r}: use lowercase letters, digits and '-', starting "
                         "with a letter and ending with a letter or digit, at most 50 characters "
                         "(pod names add '-worker-<i>' or '-<i>')")
    if namespace is not None and not (NAMESPACE.match(namespace) and len(namespace) <= 63):
        raise ValueError(f"--namespace={namespace!r}: a Kubernetes namespace is lowercase "
                         "letters, digits and '-', starting and ending with a letter or digit, "
                         "at most 63 characters")
    if not posixpath.isabs(mount_path) or posixpath.normpath(mount_path) == "/":
        raise ValueError(f"--mount_path={mount_path!r} must be an absolute path below /, "
                         "e.g. /runs")
    if num_workers < 1:
        raise ValueError(f"--num_workers={num_workers} must be >= 1")


def _metadata(name: str, namespace: str | None) -> dict:
    return {"name": name, **({"namespace": namespace} if namespace else {})}


def _pod_spec(command: list[str], image: str, pvc: str, mount_path: str, gpus_per_worker: int,
              grace_period_s: int, port_name: str) -> dict:
    """The worker pod: one container named "tensorflow" running `command`, the claim mounted."""
    container = {
        "name": CONTAINER,
        "image": image,
        "command": command,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"name": port_name, "containerPort": TFJOB_PORT}],
        "volumeMounts": [{"name": "model-dir", "mountPath": mount_path}],
    }
    if gpus_per_worker:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus_per_worker}}
    return {
        "terminationGracePeriodSeconds": grace_period_s,
        "containers": [container],
        "volumes": [{"name": "model-dir", "persistentVolumeClaim": {"claimName": pvc}}],
    }


def tfjob_manifest(command: list[str], name: str, image: str, num_workers: int,
                   pvc: str = "suite-runs", mount_path: str = "/runs",
                   namespace: str | None = None, gpus_per_worker: int = 0,
                   grace_period_s: int = 120) -> dict:
    """The TFJob (kubeflow.org/v1) as a dict: `num_workers` pods running `command`."""
    _check_job(name, namespace, mount_path, num_workers)
    pod = _pod_spec(worker_command(command, name, mount_path), image, pvc, mount_path,
                    gpus_per_worker, grace_period_s, "tfjob-port")
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": _metadata(name, namespace),
        "spec": {
            "runPolicy": {"cleanPodPolicy": "None"},
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": num_workers,
                    "restartPolicy": "ExitCode",
                    "template": {"spec": pod},
                },
            },
        },
    }


def indexed_job_manifests(command: list[str], name: str, image: str, num_workers: int,
                          pvc: str = "suite-runs", mount_path: str = "/runs",
                          namespace: str | None = None, gpus_per_worker: int = 0,
                          grace_period_s: int = 120, max_restarts: int = 20) -> list[dict]:
    """[headless Service, Indexed Job] (v1, batch/v1) as dicts: `num_workers` pods running
    `command` behind launch.k8s_tf_config, which sets TF_CONFIG from the pod's index.

    The Service (clusterIP None, both named `name`) gives pod i the DNS name <name>-<i>.<name>
    (the Job sets hostname <name>-<i>, the pods' subdomain is the Service), published before the
    pods are ready so that the workers find each other while they start. The podFailurePolicy
    ignores pods the cluster disrupted (preemption, eviction, drain: DisruptionTarget), fails the
    job at once on an exit code other than RETRYABLE, and counts the rest against backoffLimit:
    every worker exits at once (they stop together), so each restart of the job costs
    `num_workers` failures, and backoffLimit is max_restarts x num_workers.
    """
    _check_job(name, namespace, mount_path, num_workers)
    if max_restarts < 0:
        raise ValueError(f"--max_restarts={max_restarts} must be >= 0")
    wrapped = ["python", "-m", "launch.k8s_tf_config", f"--num_workers={num_workers}",
               f"--worker_address={name}-{{index}}.{name}:{TFJOB_PORT}", "--",
               *worker_command(command, name, mount_path)]
    pod = {"subdomain": name, "restartPolicy": "Never",
           **_pod_spec(wrapped, image, pvc, mount_path, gpus_per_worker, grace_period_s, "tf")}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: name},
            "ports": [{"name": "tf", "port": TFJOB_PORT}],
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, namespace),
        "spec": {
            "completionMode": "Indexed",
            "completions": num_workers,
            "parallelism": num_workers,
            "backoffLimit": max_restarts * num_workers,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore",
                 "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "NotIn",
                                 "values": list(RETRYABLE)}},
            ]},
            "template": {"spec": pod},
        },
    }
    return [service, job]


# Written unquoted only when no YAML reads them as anything but a string: they start with a
# letter, '_' or '/' (no number, .inf or ~) and are none of YAML 1.1's booleans and nulls, which
# Kubernetes' parser still reads (y, n, on, off...).
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./=@+-]*$")
_WORDS = re.compile(r"^(y|n|yes|no|true|false|on|off|null|none)$", re.I)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and not _WORDS.match(text):
        return text
    # JSON's escapes make a valid double-quoted YAML scalar, except its surrogate pairs for
    # characters past U+FFFF, which YAML reads as two characters: those get YAML's \U.
    return '"' + "".join(json.dumps(c)[1:-1] if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
                         for c in text) + '"'


def to_yaml(value, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (what Kubernetes manifests are made of)."""
    pad = " " * indent
    lines = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        lead = f"{pad}{key}:" if key is not None else f"{pad}-"
        if isinstance(item, (dict, list)) and item:
            nested = to_yaml(item, indent + 2)
            if key is None:  # a list item's first line goes after its dash
                lines.append(f"{lead} {nested[indent + 2:]}")
            else:
                lines.append(f"{lead}\n{nested}")
        elif isinstance(item, (dict, list)):
            lines.append(f"{lead} {'{}' if isinstance(item, dict) else '[]'}")
        else:
            lines.append(f"{lead} {_scalar(item)}")
    return "\n".join(lines)


def render(argv: list[str], manifests: list[dict]) -> str:
    """The manifests, as YAML documents, after the command that generated them as comment lines
    (an `sh -c` script spans several). Read back before it is returned: kubectl must get
    exactly these manifests."""
    import yaml  # only here: importing this module for its functions needs no PyYAML

    comment = "".join(f"# {line}\n" for line in shlex.join(argv).splitlines())
    text = comment + "---\n".join(to_yaml(manifest) + "\n" for manifest in manifests)
    try:
        same = list(yaml.safe_load_all(text)) == manifests
    except yaml.YAMLError:
        same = False
    if not same:
        raise ValueError("the generated YAML does not read back as the manifests (a control "
                         "character in the command?): remove it, or report a launch.k8s bug")
    return text


KINDS = ("indexed_job", "tfjob")


def define_flags() -> None:
    """The command line's flags, defined only when run as a program: importing this module for
    its functions defines none (launch.local has a --num_workers of its own)."""
    flags.DEFINE_enum("kind", "indexed_job", KINDS,
                      "What to write. indexed_job: a headless Service and an Indexed Job, for "
                      "any Kubernetes >= 1.27, no operator needed. tfjob: a Kubeflow TFJob, "
                      "only where the Kubeflow training operator runs.")
    flags.DEFINE_string("name", None, "Job name (lowercase letters, digits, '-'); pods are "
                        "<name>-<i> (indexed_job, also the Service's name) or "
                        "<name>-worker-<i> (tfjob).")
    flags.DEFINE_string("image", None, "Container image with the suite installed, e.g. "
                        "registry.example.com/suite:0.1.")
    flags.DEFINE_integer("num_workers", 2, "Worker pods (worker 0 is the chief).", lower_bound=1)
    flags.DEFINE_string("namespace", None, "Kubernetes namespace; unset: kubectl's current one.")
    flags.DEFINE_string("pvc", "suite-runs",
                        "ReadWriteMany PersistentVolumeClaim holding every --model_dir.")
    flags.DEFINE_string("mount_path", "/runs", "Where the claim is mounted in every pod.")
    flags.DEFINE_integer("gpus_per_worker", 0, "nvidia.com/gpu limit per worker pod.",
                         lower_bound=0)
    flags.DEFINE_integer("grace_period_s", 120,
                         "terminationGracePeriodSeconds: time from SIGTERM to SIGKILL, for the "
                         "workers to finish the current step and save.", lower_bound=1)
    flags.DEFINE_integer("max_restarts", 20,
                         "indexed_job: how often all workers may be restarted after exiting "
                         "130, 137, 138 or 143 (backoffLimit = this x --num_workers); pods the "
                         "cluster preempts or evicts do not count. tfjob: unused (the operator "
                         "restarts without limit).", lower_bound=0)
    flags.mark_flags_as_required(["name", "image"])


def main(argv: list[str]) -> None:
    command = argv[1:]
    if not command:
        usage_error(
            "no worker command: put it after `--`, e.g. python -m launch.k8s --name=mnist "
            "--image=registry.example.com/suite:0.1 -- python -m apps.train_mnist "
            "--flagfile=apps/flags/mnist.flags")
    common = (command, FLAGS.name, FLAGS.image, FLAGS.num_workers, FLAGS.pvc, FLAGS.mount_path,
              FLAGS.namespace, FLAGS.gpus_per_worker, FLAGS.grace_period_s)
    try:
        if FLAGS.kind == "tfjob":
            manifests = [tfjob_manifest(*common)]
        else:
            manifests = indexed_job_manifests(*common, max_restarts=FLAGS.max_restarts)
    except ValueError as error:
        usage_error(str(error))
    from launch.schemas import validate_tfjob
    from launch.schemas.kubernetes import validate

    for manifest in manifests:  # their schemas, before kubectl sees them
        try:
            (validate_tfjob if manifest["kind"] == "TFJob" else validate)(manifest)
        except ValueError as error:
            usage_error(f"the generated {manifest['kind']} does not validate: {error}")
    try:
        text = render(["python", "-m", "launch.k8s", *sys.argv[1:]], manifests)
    except ValueError as error:
        usage_error(str(error))
    sys.stdout.write(text)


def run() -> None:
    """Console-script entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
