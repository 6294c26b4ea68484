"""What a speed figure was measured on: CPU model, its vector ISA, cores, load, oneDNN.

Every bench result records `describe()`, so a number never travels without its machine (the
CPU kind changes between machines here: AVX2-only EPYCs and AVX-512 ones differ by up to 2x).
"""
from __future__ import annotations

import os
import platform
import sys

from suite.runtime.startup import cpu_flags  # no TensorFlow: safe before it


def cpu_model() -> str:
    """'AMD EPYC (family 25, model 17)': virtual machines often hide the full model name, and
    the family and model numbers still tell Zen 3 (25/1) from Zen 4 (25/17)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def isa() -> list[str]:
    """The vector extensions that decide TensorFlow's and PyTorch's kernels."""
    flags = cpu_flags()
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "avx_vnni")
    return [name for name in wanted if name in flags]


def describe() -> dict:
    onednn = None
    if "tensorflow" in sys.modules:
        from suite.runtime.startup import onednn_enabled

        onednn = onednn_enabled()
    return {"cpu": cpu_model(), "isa": isa(), "cores": os.cpu_count(),
            "load_1min": round(os.getloadavg()[0], 2), "onednn": onednn,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            **{name: os.environ[name] for name in ISA_CAPS if name in os.environ}}


# Environment variables that cap the ISA the kernels use below what the CPU has: oneDNN's (in
# TensorFlow and PyTorch) and PyTorch's own ATen dispatch. An AVX-512 machine so capped runs
# AVX2 kernels, which stands in for, but is not, an AVX2-only CPU.
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def command(script_file: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces a bench run, as its report prints it: the ISA caps in
    force first (they change every number), then `python -m bench.<name> <arguments>`."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    caps = [f"{name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name)]
    name = os.path.splitext(os.path.basename(script_file))[0]
    return " ".join(caps + ["python", "-m", f"bench.{name}", *arguments])


def label(info: dict | None = None) -> str:
    """'AMD EPYC 9R14, 2 cores, AVX-512' style, for tables; a capped ISA is said."""
    info = info or describe()
    kind = "AVX-512" if "avx512f" in info["isa"] else "AVX2" if "avx2" in info["isa"] else "SSE"
    caps = [f"{name}={info[name]}" for name in ISA_CAPS if info.get(name)]
    return f"{info['cpu']}, {info['cores']} cores, {kind}" + (
        f" capped by {' '.join(caps)}" if caps else "")
