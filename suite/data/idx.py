"""Reader for the IDX format of the original MNIST files (LeCun et al.), gzip or raw.

IDX: two zero bytes, a type code (0x08 = uint8), the number of dimensions, one big-endian
uint32 per dimension, then the data. We check every one of those against the file size so a
truncated or corrupt download fails here with its name, not later as a shape error.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib

import numpy as np

from suite.errors import DataError

_UINT8 = 0x08



def read_idx(path: str) -> np.ndarray:
    """Returns the array stored in an IDX file (.gz or raw) as uint8, shape from its header."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'IDX'} "
                        f"({e}); the file is truncated or corrupt, download it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _UINT8:
        raise DataError(f"{path}: IDX type code 0x{raw[2]:02x} is not uint8 (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path}: header promises shape {shape} ({expected} bytes) but the file "
                        f"holds {len(raw)} bytes; it is truncated or corrupt, download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as IDX (gzip when the name ends in .gz); used for fixtures and tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UINT8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
