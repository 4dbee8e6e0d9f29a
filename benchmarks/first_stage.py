"""The first stage's training step against the decoder's width, with and without the patch discriminator,
in fp32 and (where the CPU has native bf16) bf16 autocast: what the hours of `sclmd release` buy.

The reference is `make run`'s old autoencoder step: decoder width 1, no discriminator, fp32. Every row is
the release's own loop pieces (`sclmd/train/first_stage.py`: encoder, decoder, discriminator, the same
losses, the adaptive weight) on the same random batch, timed over `--steps` steps after two warm-up
steps, and given as a ratio to the reference measured in the same run.

    python benchmarks/first_stage.py [--steps 8] [--widths 1 2 3 4]

Writes benchmarks/results/first_stage.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.config import FirstStageParams  # noqa: E402
from sclmd.models.perceptual import DSSIM  # noqa: E402
from sclmd.train.autoencoder import adaptive_adversarial_scale, hinge_discriminator_loss, image_gradient_l1  # noqa: E402
from sclmd.train.first_stage import build  # noqa: E402
from sclmd.train.precision import cpu_has_native_bf16  # noqa: E402


def step_seconds(width: float, adversarial: bool, bf16: bool, steps: int, batch: int = 32) -> float:
    params = FirstStageParams(decoder_width=width, perceptual="dssim")
    models = build(params, 64)
    encoder, decoder, discriminator = models["encoder"], models["decoder"], models["discriminator"]
    for m in (encoder, decoder):
        m.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(models.parameters(), 1e-4)
    dssim = DSSIM()
    face = (torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1).contiguous(
        memory_format=torch.channels_last
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        with autocast:
            recon = decoder(encoder.encode(face) + 0.1 * torch.randn(batch, 4, 16, 16)).float()
            loss = reconstruction = (
                (recon - face).abs().mean() + 0.5 * dssim(recon, face).mean() + image_gradient_l1(recon, face)
            )
            if adversarial:
                discriminator.requires_grad_(False)
                adv = -discriminator(recon).float().mean()
                loss = loss + 0.5 * adaptive_adversarial_scale(reconstruction, adv, decoder.last_layer) * adv
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if adversarial:
            discriminator.requires_grad_(True)
            with autocast:
                hinge_discriminator_loss(discriminator(face), discriminator(recon.detach())).backward()
        optimizer.step()
        if step >= 2:  # two warm-up steps: oneDNN picks its kernels
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    args = parser.parse_args()
    torch.manual_seed(0)
    precisions = [False, True] if cpu_has_native_bf16() else [False]
    rows = []
    for width in args.widths:
        for adversarial in (False, True):
            for bf16 in precisions:
                seconds = step_seconds(width, adversarial, bf16, args.steps)
                rows.append(
                    {
                        "decoder_width": width,
                        "discriminator": adversarial,
                        "precision": "bf16" if bf16 else "fp32",
                        "step_s": seconds,
                    }
                )
                print(rows[-1], flush=True)
    reference = next(
        r["step_s"]
        for r in rows
        if r["decoder_width"] == args.widths[0] and not r["discriminator"] and r["precision"] == "fp32"
    )
    for r in rows:
        r["vs_reference"] = r["step_s"] / reference
    result = {
        "machine": machine(),
        "date": str(date.today()),
        "steps": args.steps,
        "batch": 32,
        "rows": rows,
        "reference": f"decoder width {args.widths[0]:g}, no discriminator, fp32",
    }
    body = [
        "| decoder width | discriminator | precision | s / step (batch 32) | vs reference |",
        "|---|---|---|---|---|",
    ]
    body += [
        f"| {r['decoder_width']:g} | {'yes' if r['discriminator'] else 'no'} | {r['precision']} | "
        f"{r['step_s']:.3f} | {r['vs_reference']:.2f}x |"
        for r in rows
    ]
    body += [
        "",
        f"Reference: {result['reference']} (`make run`'s autoencoder step before the first stage shipped). "
        "The release trains decoder width 3 with the discriminator (`release.yaml`).",
        "",
    ]
    save_results(
        "first_stage",
        result,
        "First stage: training step against decoder width",
        f"median of {args.steps} steps after 2 warm-up steps.",
        body,
    )


if __name__ == "__main__":
    main()
