"""One run per model folder: a second run on the same --model_dir is refused at once.

Two runs writing one folder interleave their checkpoints, backups and history rows, and each
resumes from the other's state. The lock is an exclusive `flock` on `<model_dir>/.run.lock`,
held for the life of the process: the kernel releases it when the holder exits in any way,
kill -9 included, so a stale lock is never left to clean up, and the next run takes it over.
The file says who holds it (pid, host, command), for the error message; it is never deleted,
since deleting a lock file while another process waits on it would let two runs in.

A multi-worker job is one run: its chief takes the lock, the other workers write only to their
own folders (suite.runtime.training.RunPaths). On network filesystems flock is only as good as
the client and server make it (Linux NFS clients emulate it with byte-range locks); it was
tested here on a local filesystem.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from suite.errors import RunLockedError

LOCK_FILE = ".run.lock"


def command_line() -> str:
    """This process's command line as the user would type it (python -m for modules)."""
    import shlex

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None else shlex.quote(sys.argv[0])
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])



class RunLock:
    """`with RunLock(model_dir):` or acquire()/release(); `holder` describes this process."""

    def __init__(self, model_dir: str):
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._fd: int | None = None

    @staticmethod
    def describe_self() -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "command": command_line(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def acquire(self) -> "RunLock":
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{folder} is in use by another run ({holder}). Two runs in one `model_dir` "
                "would overwrite each other's checkpoints and history: wait for it to finish, "
                "stop it, or use another `model_dir`.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.describe_self()) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """'pid 123 on host h, started ...: python -m apps.train_mnist ...' from the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "a process that is still starting"
    return (f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}: "
            f"{info.get('command', '?')}")
