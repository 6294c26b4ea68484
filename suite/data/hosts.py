"""Whether a download host answers: data and weights that would be downloaded fail within
seconds offline, naming what to do, instead of after tensorflow-datasets' ~3.5 minutes of
retries (FINDINGS.md)."""
from __future__ import annotations

import socket

TFDS_HOST = ("storage.googleapis.com", 443)  # tensorflow-datasets' downloads
WEIGHTS_HOST = ("storage.googleapis.com", 443)  # keras.applications' weights


def reachable(host_port: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(host_port, timeout=timeout):
            return True
    except OSError:
        return False
