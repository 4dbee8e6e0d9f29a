"""Running a small image network over many images on the CPU.

The project's image networks (the first stage's decoder, the talker's mouth probe) hold 32-96
channels at 64 px. In one large batch their activations outgrow the CPU's caches and the layers
become memory-bound; in chunks of ~32 images in channels-last layout, oneDNN's convolutions stay in
cache and run 3-5x faster on 2 cores (benchmarks/face_decode.py). The results equal one batch's up
to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK = 32


@torch.no_grad()
def run_in_chunks(net: nn.Module, images: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """`net` over `images` [N, C, H, W], `chunk` at a time in channels-last; a contiguous [N, ...] result."""
    return torch.cat(
        [
            net(images[s : s + chunk].float().contiguous(memory_format=torch.channels_last))
            for s in range(0, len(images), chunk)
        ]
    ).contiguous()
