"""What has to happen before TensorFlow loads: oneDNN's default on x86, and a quiet start.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads. Left unset, it turns its oneDNN
kernels on only on CPUs with AVX-512 VNNI/BF16, AVX-VNNI or AMX (tensorflow/core/util/port.cc),
so an AVX2-only CPU such as an AMD EPYC Zen 3 runs the slower Eigen kernels: DeepConvNet trained
1.5x faster there with oneDNN on, ResNet-20 1.4x (../shared/FINDINGS.md). `apply_cpu_defaults`
turns it on for x86 CPUs unless the user has set the variable, either way.

TensorFlow's C++ start-up lines ("Could not find cuda drivers", "failed call to cuInit ...",
the oneDNN and CPU-feature notes) are written before absl's C++ logging is initialised, so
TF_CPP_MIN_LOG_LEVEL does not hide them, and they come twice (two shared libraries each log).
`quiet_native_startup` captures file descriptor 2 while TensorFlow loads and first lists its
devices, and passes on every captured line that is not one of those known notes: a real
warning or error still shows.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import tempfile

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")

# Known start-up notes; each pattern matches a whole line (continuations included).
STARTUP_NOISE = tuple(re.compile(p) for p in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are (on|off)",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ cuda_platform\.cc:\d+\] failed call to cuInit",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ computation_placer\.cc:\d+\] computation placer already",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ .*TF-TRT Warning: Could not find TensorRT",
))


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (avx2, avx512_bf16, amx_tile, ...) from the first `flags` line of
    /proc/cpuinfo; empty where there is none (not Linux, not x86). Read without TensorFlow, so
    the benches' machine record can use it too."""
    try:
        with open(cpuinfo) as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


def apply_cpu_defaults(environ=os.environ) -> None:
    """Sets oneDNN on for x86 CPUs unless `TF_ENABLE_ONEDNN_OPTS` is already set (to anything),
    TensorFlow's C++ log level to warnings unless `TF_CPP_MIN_LOG_LEVEL` is set, and a Slurm
    task's own GPUs (slurm_task_devices). Only has an effect before TensorFlow is imported."""
    if "tensorflow" in sys.modules:
        return
    if platform.machine().lower() in _X86:
        environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    devices = slurm_task_devices(environ)
    if devices is not None:
        environ["CUDA_VISIBLE_DEVICES"] = devices


def _tasks_per_node(text: str) -> list[int]:
    """Slurm's "2(x3),1" -> [2, 2, 2, 1]."""
    counts = []
    for part in text.split(","):
        if "(x" in part:
            count, times = part.rstrip(")").split("(x")
            counts += [int(count)] * int(times)
        elif part:
            counts.append(int(part))
    return counts


def slurm_task_devices(environ=os.environ) -> str | None:
    """CUDA_VISIBLE_DEVICES for this task of a Slurm step, or None to leave it as it is.

    With one task per GPU (`--ntasks-per-node=4 --gres=gpu:4`) srun shows every task all of the
    node's GPUs; each must take its own before CUDA starts (once TensorFlow has listed the
    devices it is too late). So when the node's tasks see N GPUs, N a multiple of the tasks,
    local task i takes the i-th equal share. With --gpus-per-task Slurm binds them itself (each
    task already sees only its own), and a CPU-only node has none: left alone.
    """
    if not environ.get("SLURM_STEP_NUM_TASKS") or "SLURM_LOCALID" not in environ:
        return None
    visible = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    try:
        per_node = _tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", ""))
        here = per_node[int(environ.get("SLURM_NODEID", "0"))] if len(per_node) > 1 else (
            per_node[0] if per_node else 1)
        local = int(environ["SLURM_LOCALID"])
    except (ValueError, IndexError):
        return None
    if here <= 1 or len(visible) < here or len(visible) % here or local >= here:
        return None
    share = len(visible) // here
    return ",".join(visible[local * share:(local + 1) * share])


def without_startup_noise(text: str) -> str:
    """`text` minus the lines that are known TensorFlow start-up notes."""
    kept = [line for line in text.splitlines(keepends=True)
            if not any(p.search(line.rstrip("\n")) for p in STARTUP_NOISE)]
    return "".join(kept)


@contextlib.contextmanager
def quiet_native_startup(enabled: bool = True):
    """Captures fd 2 inside the block and re-emits all but the known start-up notes."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = without_startup_noise(capture.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def load_tensorflow(quiet: bool = True):
    """Imports TensorFlow and lists its devices (where CUDA is probed) with the start-up notes
    hidden when `quiet`; returns the module."""
    with quiet_native_startup(quiet):
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (after it is imported)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # another build of TensorFlow
        return False
    return bool(_pywrap_util_port.IsMklEnabled())
