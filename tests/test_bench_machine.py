"""bench/machine.py: what every bench report says of its machine and its command."""
from __future__ import annotations

import sys

from bench import machine


def test_command_names_the_script_and_its_arguments(monkeypatch):
    for name in machine.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["/any/where/bench/x.py", "--steps=5"])
    assert machine.command("/repo/bench/training_throughput.py") == (
        "python -m bench.training_throughput --steps=5")
    assert machine.command("training_throughput.py", ["--network=resnet20"]) == (
        "python -m bench.training_throughput --network=resnet20")


def test_isa_caps_lead_the_command_and_the_label(monkeypatch):
    """A capped run's numbers are not the CPU's own: both places say so, so the command
    printed in a report reproduces them."""
    for name in machine.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert machine.command("time_to_accuracy.py", ["--seeds=0"]) == (
        "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m bench.time_to_accuracy "
        "--seeds=0")
    info = {"cpu": "AMD EPYC", "cores": 2, "isa": ["avx2", "avx512f"],
            "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert machine.label(info) == (
        "AMD EPYC, 2 cores, AVX-512 capped by ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2")
