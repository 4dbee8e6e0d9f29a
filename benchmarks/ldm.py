"""LDM training and sampling speed at the default config.

Training: our loop (`sclmd.train.ldm.train_ldm`) against a reference loop written the
way diffusers' `train_text_to_image.py` example trains its UNet: a DataLoader of
clips; per step the frozen encoders turn pixels into latents and audio into the
condition (as the example runs its VAE and text encoder every step), then
`noise_scheduler.add_noise`, the UNet, MSE, backward, AdamW, EMA.  Same UNet config,
same batch size, same machine, measured in this run.  A second reference gets the
encoded tensors for free, which isolates the loop's own overhead.

Sampling: faces/s for DDIM-50 and DPM-Solver++-20 at batch 1 and 64 (speech embedding
to decoded image), and the wall time of `sclmd generate` for one file from a cold start.

    python benchmarks/ldm.py [--steps 20]     # needs make run's outputs (models/, data/prepared)

Writes benchmarks/results/ldm.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.config import load_params  # noqa: E402
from sclmd.data.store import PackedClips, make_loader  # noqa: E402
from sclmd.models.ldm import LDMConfig  # noqa: E402
from sclmd.models.pipeline import SpeechToFacePipeline  # noqa: E402
from sclmd.models.speech_face import SpeechFaceModel  # noqa: E402
from sclmd.train.checkpoints import CheckpointStore  # noqa: E402
from sclmd.train.ldm import LatentDenoiser, encode_split, ldm_config, make_train_scheduler, train_ldm  # noqa: E402

WARMUP = 3


def reference_loop(
    cfg, config: LDMConfig, encoders: SpeechFaceModel, dataset: PackedClips, steps: int, encoded=None
) -> float:
    """Steps/s of a train_text_to_image-style loop (encoders run per step unless `encoded` is given)."""
    from diffusers.training_utils import EMAModel

    torch.manual_seed(cfg.seed)
    net = LatentDenoiser(config).train()
    ema = EMAModel(net.parameters(), decay=cfg.ema_decay)
    noise_scheduler = make_train_scheduler(cfg)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=0)
    batches = iter(loader)
    start = None
    for step in range(steps + WARMUP):
        if step == WARMUP:
            start = time.perf_counter()
        if encoded is None:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            with torch.no_grad():
                latents = encoders.face_encoder(batch.face_float())[0] * config.latent_scale
                speech = encoders.speech_encoder(batch.audio_float())
        else:
            rows = torch.randint(0, len(encoded.speech), (cfg.batch_size,))
            latents, speech = encoded.latents[rows] * config.latent_scale, encoded.speech[rows]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),)).long()
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        drop = torch.rand(len(latents)) < cfg.cfg_dropout
        loss = F.mse_loss(net(noisy, timesteps, speech, drop).float(), noise.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.step(net.parameters())
    return steps / (time.perf_counter() - start)


def sampling_rate(pipeline: SpeechToFacePipeline, emb: torch.Tensor, sampler: str, steps: int, batch: int) -> float:
    inputs = emb[:1].repeat(batch, 1)
    pipeline(inputs, sampler=sampler, steps=2)  # warm-up
    start = time.perf_counter()
    pipeline(inputs, sampler=sampler, steps=steps)
    return batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    params = load_params(Path("params.yaml"))
    needed = [Path("data/prepared/manifest.parquet"), Path("models/pretrain"), Path("models/prior"), Path("models/ldm")]
    if not all(p.exists() for p in needed):
        sys.exit("benchmarks/ldm.py needs the outputs of `make run` (data/prepared, models/pretrain, prior, ldm)")
    cfg = params.ldm.model_copy(
        update={"max_steps": args.steps + WARMUP, "resume": False, "checkpoint_every": 10**6, "log_every": 1}
    )
    encoders = SpeechFaceModel.from_pretrained(Path("models/pretrain"))
    dataset = PackedClips(Path("data/prepared"), "train")
    from sclmd.models.prior import FacePrior

    prior = FacePrior.load(Path("models/prior"))

    # ours: the stage's encode-once cost is part of our time
    t0 = time.perf_counter()
    train = encode_split(encoders, dataset, 128, "encode")
    encode_s = time.perf_counter() - t0
    config = ldm_config(cfg, train)
    # Timed like the references: from the end of the warm-up steps to the last step.
    stamps: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_ldm(
            cfg,
            config,
            train,
            prior.mean,
            CheckpointStore(Path(tmp), "bench"),
            log=lambda values, step: stamps.__setitem__(step, time.perf_counter()),
        )
    ours_rate = args.steps / (stamps[args.steps + WARMUP] - stamps[WARMUP])
    reference = reference_loop(cfg, config, encoders, dataset, args.steps)
    reference_free = reference_loop(cfg, config, encoders, dataset, args.steps, encoded=train)

    pipeline = SpeechToFacePipeline.from_pretrained(Path("models/ldm"))
    emb = train.speech[:1]
    sampling = {
        f"{sampler}-{steps}_batch{batch}_faces_per_s": round(sampling_rate(pipeline, emb, sampler, steps, batch), 3)
        for sampler, steps in (("ddim", 50), ("dpm++", 20))
        for batch in (1, 64)
    }
    clip = next(Path("data/raw/voxsynth/wav").rglob("*.wav"), None)
    cold = None
    if clip is not None:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sclmd", "generate", str(clip), "-o", tmp], check=True, capture_output=True
            )
            cold = round(time.perf_counter() - t0, 2)

    row = {
        "timed_steps": args.steps,
        "batch_size": cfg.batch_size,
        "size": cfg.size,
        "ours_steps_per_s": round(ours_rate, 3),
        "ours_encode_once_s": round(encode_s, 2),
        "reference_steps_per_s": round(reference, 3),
        "ratio_ours_to_reference": round(ours_rate / reference, 3),
        "reference_precomputed_steps_per_s": round(reference_free, 3),
        "ratio_ours_to_reference_precomputed": round(ours_rate / reference_free, 3),
        "projected_stage_train_seconds": round(params.ldm.max_steps / ours_rate + encode_s, 1),
        **sampling,
        "generate_one_file_cold_s": cold,
    }
    print(json.dumps(row, indent=2))
    out = {
        "benchmark": "ldm",
        "reference": "a train_text_to_image.py-style loop: DataLoader, frozen encoders per step, add_noise, UNet, "
        "MSE, AdamW, EMA; same UNet config and batch",
        "result": row,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    save_results(
        "ldm",
        out,
        "LDM training and sampling speed (default config)",
        f"UNet size `{cfg.size}`, batch {cfg.batch_size}, {args.steps} timed steps after {WARMUP} warm-up steps.",
        [
            "| training loop | steps/s | ours / this |",
            "|---|---|---|",
            f"| ours (`train_ldm`, encoders run once: {encode_s:.1f} s) | {row['ours_steps_per_s']} | 1.0 |",
            f"| reference, encoders per step (as train_text_to_image.py) | {row['reference_steps_per_s']} "
            f"| {row['ratio_ours_to_reference']}x |",
            f"| reference, encoded tensors given for free | {row['reference_precomputed_steps_per_s']} "
            f"| {row['ratio_ours_to_reference_precomputed']}x |",
            "",
            "| sampling | faces/s |",
            "|---|---|",
            *[f"| {k.replace('_faces_per_s', '').replace('_batch', ', batch ')} | {v} |" for k, v in sampling.items()],
            "",
            f"`sclmd generate` on one file from a cold start (process start, model load, DPM-Solver++-20): {cold} s.",
            "",
            f"At this speed the default `max_steps: {params.ldm.max_steps}` trains in about "
            f"{row['projected_stage_train_seconds']:.0f} s.",
            "",
        ],
    )


if __name__ == "__main__":
    main()
