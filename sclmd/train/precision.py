"""Which mixed precision a training loop runs in: one rule for every stage.

`auto` picks bf16 autocast where the hardware does bf16 arithmetic natively: CUDA GPUs
(fp16 on GPUs without bf16), and CPUs with AVX-512 BF16 or AMX (on those a face
autoencoder step ran 1.85x faster than in fp32, same quality; `benchmarks/precision.py`).
Elsewhere bf16 is emulated and slower than fp32, so `auto` stays in fp32 there.
"""

from __future__ import annotations

from pathlib import Path

import torch

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises bf16 arithmetic (Linux cpuinfo flags); False when unknown."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)
    return False


def resolve_mixed_precision(choice: str, cuda: bool | None = None, native_cpu_bf16: bool | None = None) -> str:
    """`auto` -> "bf16" | "fp16" | "no" for this machine; any other choice is returned as given."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available() if cuda is None else cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if (cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16) else "no"
