"""Prints a Kubeflow TFJob manifest that runs one training command as N workers on Kubernetes.

    python -m launch.k8s --name=mnist --image=registry.example.com/suite:0.1 --num_workers=4 \\
        -- python -m apps.train_mnist --flagfile=apps/flags/mnist.flags > tfjob.yaml
    kubectl apply -f tfjob.yaml

Everything after `--` is the worker command, as for launch.local: the Kubeflow training operator
sets TF_CONFIG in each worker pod (container name "tensorflow"), so the same command runs here
and on a laptop. Worker 0 is the chief. The generated job:
- adds --strategy=multi_worker to the command if it is missing, and a --model_dir on the shared
  volume (<mount_path>/<name>) if none is given; a --model_dir elsewhere is refused, because
  every worker must see the chief's backup to resume;
- mounts the PersistentVolumeClaim --pvc (it must be ReadWriteMany: all pods mount it);
- uses restartPolicy ExitCode: the operator recreates pods that exit 130, 137, 138 or 143
  (SIGINT, SIGKILL, user-defined, SIGTERM; the app exits 143 after a preemption, with its state
  saved) and fails the job on other codes (2 is the app's bad-input code);
- gives pods --grace_period_s between SIGTERM and SIGKILL to finish a step and save.
The manifest is checked against the Kubeflow TFJob schema (launch/schemas) before it is printed,
and written by a small YAML emitter here, whose output is read back (PyYAML) to be that manifest.
"""
from __future__ import annotations

import json
import posixpath
import re
import shlex
import sys

from absl import app, flags

from suite.runtime.flags import parse_flags, usage_error

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: the operator's webhook
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label
CONTAINER = "tensorflow"  # the name the operator looks for to set TF_CONFIG and the port
TFJOB_PORT = 2222

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


def tfjob_manifest(command: list[str], name: str, image: str, num_workers: int,
                   pvc: str = "suite-runs", mount_path: str = "/runs",
                   namespace: str | None = None, gpus_per_worker: int = 0,
                   grace_period_s: int = 120) -> dict:
    """The TFJob (kubeflow.org/v1) as a dict: `num_workers` pods running `command`."""
    if not (DNS_LABEL.match(name) and len(name) <= 50):
        raise ValueError(f"--name={name!r}: use lowercase letters, digits and '-', starting "
                         "with a letter and ending with a letter or digit, at most 50 characters "
                         "(pod names add '-worker-<i>')")
    if namespace is not None and not (NAMESPACE.match(namespace) and len(namespace) <= 63):
        raise ValueError(f"--namespace={namespace!r}: a Kubernetes namespace is lowercase "
                         "letters, digits and '-', starting and ending with a letter or digit, "
                         "at most 63 characters")
    if not posixpath.isabs(mount_path) or posixpath.normpath(mount_path) == "/":
        raise ValueError(f"--mount_path={mount_path!r} must be an absolute path below /, "
                         "e.g. /runs")
    if num_workers < 1:
        raise ValueError(f"--num_workers={num_workers} must be >= 1")
    container = {
        "name": CONTAINER,
        "image": image,
        "command": worker_command(command, name, mount_path),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"name": "tfjob-port", "containerPort": TFJOB_PORT}],
        "volumeMounts": [{"name": "model-dir", "mountPath": mount_path}],
    }
    if gpus_per_worker:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus_per_worker}}
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": metadata,
        "spec": {
            "runPolicy": {"cleanPodPolicy": "None"},
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": num_workers,
                    "restartPolicy": "ExitCode",
                    "template": {"spec": {
                        "terminationGracePeriodSeconds": grace_period_s,
                        "containers": [container],
                        "volumes": [{"name": "model-dir",
                                     "persistentVolumeClaim": {"claimName": pvc}}],
                    }},
                },
            },
        },
    }


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


def render(argv: list[str], manifest: dict) -> str:
    """The manifest after the command that generated it, as comment lines (an `sh -c` script
    spans several). Read back before it is returned: kubectl must get exactly this manifest."""
    import yaml  # only here: importing this module for its functions needs no PyYAML

    comment = "".join(f"# {line}\n" for line in shlex.join(argv).splitlines())
    text = comment + to_yaml(manifest) + "\n"
    try:
        same = yaml.safe_load(text) == manifest
    except yaml.YAMLError:
        same = False
    if not same:
        raise ValueError("the generated YAML does not read back as the TFJob (a control "
                         "character in the command?): remove it, or report a launch.k8s bug")
    return text


def define_flags() -> None:
    """The command line's flags, defined only when run as a program: importing this module for
    its functions defines none (launch.local has a --num_workers of its own)."""
    flags.DEFINE_string("name", None, "TFJob name (lowercase letters, digits, '-'); pods are "
                        "<name>-worker-<i>.")
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
    flags.mark_flags_as_required(["name", "image"])


def main(argv: list[str]) -> None:
    command = argv[1:]
    if not command:
        usage_error(
            "no worker command: put it after `--`, e.g. python -m launch.k8s --name=mnist "
            "--image=registry.example.com/suite:0.1 -- python -m apps.train_mnist "
            "--flagfile=apps/flags/mnist.flags")
    try:
        manifest = tfjob_manifest(command, FLAGS.name, FLAGS.image, FLAGS.num_workers, FLAGS.pvc,
                                  FLAGS.mount_path, FLAGS.namespace, FLAGS.gpus_per_worker,
                                  FLAGS.grace_period_s)
    except ValueError as error:
        usage_error(str(error))
    from launch.schemas import validate_tfjob

    try:  # the Kubeflow TFJob schema, before kubectl sees it
        validate_tfjob(manifest)
    except ValueError as error:
        usage_error(f"the generated TFJob does not validate: {error}")
    try:
        text = render(["python", "-m", "launch.k8s", *sys.argv[1:]], manifest)
    except ValueError as error:
        usage_error(str(error))
    sys.stdout.write(text)


def run() -> None:
    """Console-script entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
