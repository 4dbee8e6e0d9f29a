"""Which machine measured a number: models and their numbers differ between machines' kernels."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> dict:
    """CPU model, cores, native bf16, the GPU (if any), Python and torch versions."""
    import torch

    cpu, bf16 = "unknown CPU", False
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), cpu)
        bf16 = "avx512_bf16" in text or "amx_bf16" in text
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "native_bf16": bf16,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def line(info: dict | None = None) -> str:
    """One line: 'AMD EPYC, 2 cores, native bf16, torch 2.14.1'."""
    m = info or describe()
    parts = [m["cpu"], f"{m['cores']} cores"] + (["native bf16"] if m.get("native_bf16") else [])
    parts += [f"GPU {m['gpu']}"] if m.get("gpu") else []
    return ", ".join(parts + [f"torch {m['torch']}"])
