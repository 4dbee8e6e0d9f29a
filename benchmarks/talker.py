"""The talker's training step in bf16 autocast against fp32 on the CPU, in one run.

The pipeline's autoencoder runs bf16 autocast where the CPU has native bf16 (`mixed_precision:
auto`, `benchmarks/precision.py`); the talker's loops run in fp32. This measures whether bf16
would buy the talker anything: a diffusion-autoencoder training step (the `talker` defaults:
UNet channels 32/64/64 over 4 x 16 x 16 face latents, batch 64, loss, backward and AdamW) and a
decode of 100 frames (10 DDIM steps, what `sclmd talk` does per 4 s of voice), each timed in
rounds that alternate fp32 (the reference) and bf16 so a drifting machine hits both alike.

    python benchmarks/talker.py [--steps 15] [--rounds 2]

Writes benchmarks/results/talker.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.models.talker import TalkerBundle, TalkerConfig  # noqa: E402
from sclmd.train.precision import cpu_has_native_bf16  # noqa: E402


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def time_train_step(bundle: TalkerBundle, precision: str, steps: int, batch: int = 64) -> float:
    dae = bundle.dae.train()
    optimizer = torch.optim.AdamW(dae.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    target, reference = (
        torch.randn(batch, 4, 16, 16, generator=generator),
        torch.randn(batch, 4, 16, 16, generator=generator),
    )

    def step():
        with _autocast(precision):
            loss = dae.loss(target, reference, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: oneDNN picks its kernels
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


@torch.no_grad()
def time_decode(bundle: TalkerBundle, precision: str, frames: int = 100) -> float:
    dae = bundle.dae.eval()
    x_t, reference = torch.randn(frames, 4, 16, 16), torch.randn(frames, 4, 16, 16)
    z = torch.randn(frames, bundle.cfg.motion_dim)
    with _autocast(precision):
        dae.decode(x_t, reference, z)  # warm-up
        started = time.perf_counter()
        dae.decode(x_t, reference, z)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    bundle = TalkerBundle(TalkerConfig())
    times: dict[str, dict[str, list[float]]] = {
        p: {"train_step_s": [], "decode_100_frames_s": []} for p in ("fp32", "bf16")
    }
    for _ in range(args.rounds):
        for precision in ("fp32", "bf16"):
            times[precision]["train_step_s"].append(time_train_step(bundle, precision, args.steps))
            times[precision]["decode_100_frames_s"].append(time_decode(bundle, precision))
    best = {p: {k: min(v) for k, v in t.items()} for p, t in times.items()}
    native = cpu_has_native_bf16()
    result = {
        "machine": machine(),
        "date": str(date.today()),
        "steps": args.steps,
        "rounds": args.rounds,
        "native_bf16": native,
        "times": times,
        "best": best,
        "bf16_speed_vs_fp32": {k: best["fp32"][k] / best["bf16"][k] for k in best["fp32"]},
    }
    body = [
        "The talker's diffusion autoencoder (`talker` defaults), fastest of the rounds. Reference: fp32, same run.",
        "",
        "| precision | training step (batch 64), s | speed vs fp32 | decode 100 frames (10 DDIM steps), s "
        "| speed vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for p in ("fp32", "bf16"):
        body.append(
            f"| {p}{' (reference)' if p == 'fp32' else ' autocast'} | {best[p]['train_step_s']:.3f} | "
            f"{best['fp32']['train_step_s'] / best[p]['train_step_s']:.2f}x | {best[p]['decode_100_frames_s']:.2f} | "
            f"{best['fp32']['decode_100_frames_s'] / best[p]['decode_100_frames_s']:.2f}x |"
        )
    body += [
        "",
        f"Native bf16 on this CPU: {'yes' if native else 'no'}. The talker's loops run in fp32 (they take no "
        "`mixed_precision`): a speed under 1.00x means bf16 would slow them down here.",
        "",
    ]
    save_results(
        "talker",
        result,
        "The talker in bf16 autocast vs fp32 (CPU)",
        f"{args.rounds} rounds, {args.steps} training steps each.",
        body,
    )
    print("\n".join(body))


if __name__ == "__main__":
    main()
