"""Sets TF_CONFIG from a pod's Indexed Job completion index, then runs the worker command.

    python -m launch.k8s_tf_config --num_workers=4 --worker_address='mnist-{index}.mnist:2222' \\
        -- python -m apps.train_mnist ...

What launch.k8s --kind=indexed_job puts in front of the worker command: without an operator
nobody sets TF_CONFIG, but Kubernetes gives pod i of an Indexed Job JOB_COMPLETION_INDEX=i and
the hostname <job>-<i>, which the job's headless Service (the pods' subdomain) makes resolvable
as <job>-<i>.<service>. Worker i of --num_workers is --worker_address with {index} = i; worker 0
is the chief. The command then replaces this process (exec), so its exit code, the one the Job's
podFailurePolicy acts on, and the SIGTERM Kubernetes sends reach the app directly.
"""
from __future__ import annotations

import json
import os
import sys

INDEX_VARIABLE = "JOB_COMPLETION_INDEX"  # set by Kubernetes in every Indexed Job pod


def tf_config(workers: list[str], index: int) -> str:
    """The TF_CONFIG of worker `index` in a cluster of `workers` (host:port each)."""
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": "worker", "index": index}})


def worker_addresses(pattern: str, num_workers: int) -> list[str]:
    """`pattern` with {index} = 0 .. num_workers - 1, each a host:port."""
    if num_workers < 1:
        raise ValueError(f"--num_workers={num_workers} must be >= 1")
    if "{index}" not in pattern:
        raise ValueError(f"--worker_address={pattern!r} has no {{index}}: every worker needs "
                         "its own address, e.g. 'mnist-{index}.mnist:2222'")
    try:
        workers = [pattern.format(index=i) for i in range(num_workers)]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"--worker_address={pattern!r}: only {{index}} may be in braces "
                         f"({error!r})") from None
    if not all(address.rpartition(":")[2].isdigit() for address in workers):
        raise ValueError(f"--worker_address={pattern!r} must end with :<port>")
    return workers


def completion_index(environ, num_workers: int) -> int:
    """JOB_COMPLETION_INDEX from `environ`, checked to name one of the workers."""
    value = environ.get(INDEX_VARIABLE)
    if value is None:
        raise ValueError(f"{INDEX_VARIABLE} is not set: this runs in a pod of an Indexed Job "
                         "(completionMode: Indexed), which Kubernetes gives its index")
    if not value.isdigit() or int(value) >= num_workers:
        raise ValueError(f"{INDEX_VARIABLE}={value!r} is not a worker index 0..{num_workers - 1}"
                         ": the Job's completions must equal --num_workers")
    return int(value)


def _parse(argv: list[str]) -> tuple[int, str, list[str]]:
    """(num_workers, worker_address, command) from `--num_workers=N --worker_address=P -- cmd`:
    parsed by hand, since the command's own flags must stay out of absl's way."""
    if "--" not in argv:
        raise ValueError("no worker command: put it after `--`")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    values = {}
    for option in options:
        name, equals, value = option.partition("=")
        if name not in ("--num_workers", "--worker_address") or not equals:
            raise ValueError(f"unknown option {option!r}: use --num_workers=N and "
                             "--worker_address=host-{index}.service:port")
        values[name[2:]] = value
    if set(values) != {"num_workers", "worker_address"} or not command:
        raise ValueError("give --num_workers, --worker_address and a command after `--`")
    if not values["num_workers"].isdigit():
        raise ValueError(f"--num_workers={values['num_workers']!r} is not a number")
    return int(values["num_workers"]), values["worker_address"], command


def main(argv: list[str]) -> None:
    try:
        num_workers, pattern, command = _parse(argv)
        workers = worker_addresses(pattern, num_workers)
        index = completion_index(os.environ, num_workers)
    except ValueError as error:
        print(f"error: launch.k8s_tf_config: {error}", file=sys.stderr, flush=True)
        sys.exit(2)  # bad input, the app's code for it: the Job fails at once, not retried
    os.environ["TF_CONFIG"] = tf_config(workers, index)
    print(f"worker {index} of {num_workers}: {workers[index]}", file=sys.stderr, flush=True)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"error: launch.k8s_tf_config: cannot run {command[0]!r}: {error}",
              file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
