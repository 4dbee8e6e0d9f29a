"""Pre-training speed at the default config: steps/s, samples/s, time waiting for data.

The full loop (packed-store reads + augmentation + forward/backward/step) is timed
against a named reference measured in the same run: the same number of steps on
one batch already in memory ("compute only"), i.e. the loop with free data.
The ratio loop / compute-only shows what the data path costs.

    python benchmarks/pretrain.py [--steps 30]     # needs data/prepared (make run)

Writes benchmarks/results/pretrain.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.config import load_params  # noqa: E402
from sclmd.train.checkpoints import CheckpointStore  # noqa: E402
from sclmd.train.pretrain import build_model, contrastive_loss, crop_voices, train  # noqa: E402


def compute_only(params, data, steps: int) -> float:
    """Steps/s of forward + backward + step on one in-memory batch of the loop's shapes
    (voices cropped to `speech_crop_seconds`, faces channels-last, as the loop has them)."""
    cfg = params.pretrain
    model = build_model(cfg, data).train()
    model.face_encoder.to(memory_format=torch.channels_last)  # as train() has them
    model.face_decoder.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), cfg.lr_face)
    crop = int(round(cfg.speech_crop_seconds * data.sample_rate))
    wave = crop_voices(torch.randn(cfg.batch_size, data.clip_samples) * 0.1, crop, torch.Generator().manual_seed(0))
    face = torch.rand(cfg.batch_size, 3, data.image_size, data.image_size) * 2 - 1
    face = face.contiguous(memory_format=torch.channels_last)
    from sclmd.models.perceptual import make_perceptual

    perceptual = make_perceptual(cfg.perceptual, cfg.lpips_net, cfg.lpips_missing)
    start = None
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            start = time.perf_counter()
        out = model(wave, face)
        loss = (
            contrastive_loss(out["logits"]) + (out["recon"] - face).abs().mean() + perceptual(out["recon"], face).mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    params = load_params(Path("params.yaml"))
    prepared = Path("data/prepared")
    if not (prepared / "manifest.parquet").exists():
        sys.exit("benchmarks/pretrain.py needs data/prepared: run `make run` (or `dvc repro prepare`) first")
    # The joint loop only (the autoencoder phase is benchmarks/precision.py's subject).
    cfg = params.pretrain.model_copy(
        update={"max_steps": args.steps, "autoencoder_steps": 0, "resume": False, "checkpoint_every": 10**6}
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, params.data, prepared, CheckpointStore(Path(tmp), "bench"))
    reference = compute_only(params.model_copy(update={"pretrain": cfg}), params.data, args.steps)
    row = {
        "steps": args.steps,
        "batch_size": cfg.batch_size,
        "size": cfg.size,
        "loop_steps_per_s": round(result.steps_per_s, 3),
        "loop_samples_per_s": round(result.samples_per_s, 1),
        "data_wait_share": round(result.data_wait_share, 4),
        "compute_only_steps_per_s": round(reference, 3),
        "ratio_loop_to_compute_only": round(result.steps_per_s / reference, 3),
        "projected_stage_train_seconds": round(params.pretrain.max_steps / result.steps_per_s, 1),
    }
    print(json.dumps(row, indent=2))
    out = {
        "benchmark": "pretrain",
        "reference": "compute only: same steps on one in-memory batch",
        "result": row,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    save_results(
        "pretrain",
        out,
        "Pre-training speed (default config)",
        f"Model size `{cfg.size}`, batch {cfg.batch_size}, {args.steps} timed steps.",
        [
            "| loop steps/s | loop samples/s | waiting for data | compute-only steps/s | loop / compute-only |",
            "|---|---|---|---|---|",
            f"| {row['loop_steps_per_s']} | {row['loop_samples_per_s']} | {100 * row['data_wait_share']:.1f}% "
            f"| {row['compute_only_steps_per_s']} | {row['ratio_loop_to_compute_only']}x |",
            "",
            f"At this speed the default `max_steps: {params.pretrain.max_steps}` trains in about "
            f"{row['projected_stage_train_seconds']:.0f} s.",
            "",
        ],
    )


if __name__ == "__main__":
    main()
