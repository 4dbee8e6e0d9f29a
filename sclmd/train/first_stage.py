"""The first stage: the face autoencoder alone, trained long (one explicit loop).

Stable Diffusion's autoencoder recipe at 64 px: reconstruction (MAE + perceptual + L1 on the
luminance's image gradients) on faces with random horizontal flips, the decoder drawing
z + `latent_noise` * eps (a neighbourhood of each latent, as a KL-regularised VAE's decoder
draws from its posterior), and from `adversarial_start` on a patch discriminator (hinge loss)
whose term is scaled by the adaptive weight at the decoder's last layer. Learning rate: linear
warm-up, then a cosine decay to `lr_final` x lr at `max_steps`.

Batches are a pure function of (seed, step), checkpoints hold the discriminator and the optimizer,
so a run killed at any point resumes where it stopped. `evaluate(step, encoder, decoder)` is
called every `evaluate_every` steps (and at the end) with the models in eval mode; what it
returns is recorded in the history as val_<name> (the stage measures val quality there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sclmd.config import FirstStageParams
from sclmd.errors import SclmdError
from sclmd.models.face_autoencoder import FaceConfig, FaceDecoder, FaceEncoder, PatchDiscriminator, face_config
from sclmd.train.autoencoder import (
    adaptive_adversarial_scale,
    autoencoder_rows,
    hinge_discriminator_loss,
    image_gradient_l1,
    learning_rate_factor,
)
from sclmd.train.checkpoints import CheckpointStore

Logger = Callable[[dict[str, float], int], None]
Evaluator = Callable[[int, FaceEncoder, FaceDecoder], dict[str, float]]


def first_stage_config(params: FirstStageParams, image_size: int) -> FaceConfig:
    return face_config(
        params.size,
        params.embed_dim,
        params.latent_channels,
        image_size,
        params.latent_downsample,
        params.decoder_width,
        params.latent_norm,
    )


def build(params: FirstStageParams, image_size: int) -> nn.ModuleDict:
    """encoder, decoder and discriminator, initialised from the seed (the discriminator from its own fork)."""
    cfg = first_stage_config(params, image_size)
    torch.manual_seed(params.seed)
    parts = {"encoder": FaceEncoder(cfg), "decoder": FaceDecoder(cfg)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed + 1)
        parts["discriminator"] = PatchDiscriminator(params.discriminator_width)
    return nn.ModuleDict(parts)


def as_float(faces: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return faces.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


@dataclass
class FirstStageResult:
    models: nn.ModuleDict
    history: dict[str, list[tuple[int, float]]]
    steps: int
    resumed_from: int
    seconds: float  # this process's training time (a resumed run: since the resume)
    steps_per_s: float


def train(
    params: FirstStageParams,
    faces: np.ndarray,
    image_size: int,
    checkpoints: CheckpointStore,
    perceptual,
    log: Logger | None = None,
    evaluate: Evaluator | None = None,
) -> FirstStageResult:
    """Train on `faces` (uint8 [N, H, W, 3]); returns the models on the CPU in eval mode."""
    from tqdm import tqdm

    from sclmd.train.distributed import make_accelerator

    accelerator = make_accelerator(params.mixed_precision)
    device = accelerator.device
    models = build(params, image_size)
    models.to(device)  # before the optimizer and the resume, so its state lands on the same device
    for name in ("encoder", "decoder"):
        models[name].to(memory_format=torch.channels_last)  # oneDNN on CPU, tensor cores on GPU: ~20 % faster
    encoder, decoder, discriminator = models["encoder"], models["decoder"], models["discriminator"]
    autoencoder_params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": autoencoder_params, "lr": params.lr, "weight_decay": params.weight_decay},
            {
                "params": list(discriminator.parameters()),
                "lr": params.adversarial_lr,
                "betas": (0.5, 0.9),
                "weight_decay": 0.0,
            },
        ]
    )
    start, history = checkpoints.resume(params.resume, models, optimizer, tqdm.write, "first stage")
    perceptual = perceptual.to(device)
    bank = torch.from_numpy(np.ascontiguousarray(faces))

    def record(name: str, step: int, value: float) -> None:
        history.setdefault(name, []).append((step, float(value)))

    def run_evaluation(done: int) -> dict[str, float]:
        if evaluate is None:
            return {}
        models.eval()  # (not under no_grad: the evaluator may train a classifier of its own, the C2ST's)
        values = {f"val_{k}": float(v) for k, v in evaluate(done, encoder, decoder).items()}
        models.train()
        for k, v in values.items():
            record(k, done, v)
        return values

    started = time.perf_counter()
    before = history.get("seconds", [(0, 0.0)])[-1][1]  # training time of the runs this one resumes
    models.train()
    bar = tqdm(
        range(start, params.max_steps),
        desc="first stage",
        unit="step",
        initial=start,
        total=params.max_steps,
        disable=not accelerator.is_local_main_process,
    )
    for step in bar:
        rows, flips = autoencoder_rows(step, len(bank), params.batch_size, params.seed)
        face = as_float(bank[torch.from_numpy(rows)])
        face = torch.where(torch.from_numpy(flips)[:, None, None, None], face.flip(-1), face)
        face = face.contiguous(memory_format=torch.channels_last).to(device, non_blocking=True)
        optimizer.param_groups[0]["lr"] = params.lr * _lr_factor(step, params)
        adversarial = params.adversarial_weight > 0 and step >= params.adversarial_start
        parts: dict[str, torch.Tensor] = {}
        with accelerator.autocast():
            z = encoder.encode(face)
            if params.latent_noise > 0:
                z = z + params.latent_noise * torch.randn_like(z)
            recon = decoder(z).float()
            parts["loss_mae"] = (recon - face).abs().mean()
            parts[f"loss_{perceptual.name}"] = perceptual(recon, face).mean()
            parts["loss_gradient"] = image_gradient_l1(recon, face)
            loss = reconstruction = (
                params.mae_weight * parts["loss_mae"]
                + params.perceptual_weight * parts[f"loss_{perceptual.name}"]
                + params.gradient_weight * parts["loss_gradient"]
            )
            if adversarial:
                discriminator.requires_grad_(False)
                parts["loss_adversarial"] = -discriminator(recon).float().mean()
                parts["adversarial_scale"] = adaptive_adversarial_scale(
                    reconstruction, parts["loss_adversarial"], decoder.last_layer
                )
                loss = loss + params.adversarial_weight * parts["adversarial_scale"] * parts["loss_adversarial"]
        if not torch.isfinite(loss):
            raise SclmdError(f"first stage: loss became {loss.item()} at step {step}; lower first_stage.lr")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if adversarial:
            discriminator.requires_grad_(True)
            with accelerator.autocast():
                parts["loss_discriminator"] = hinge_discriminator_loss(
                    discriminator(face), discriminator(recon.detach())
                )
            accelerator.backward(parts["loss_discriminator"])
        optimizer.step()
        done = step + 1
        if done % params.log_every == 0 or done == params.max_steps:
            values = {
                "loss": loss.item(),
                **{k: v.item() for k, v in parts.items()},
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": before + time.perf_counter() - started,
            }
            for k, v in values.items():
                record(k, done, v)
            bar.set_postfix(loss=f"{values['loss']:.3f}", mae=f"{values['loss_mae']:.3f}")
            if log is not None:
                log(values, done)
        if done % params.evaluate_every == 0 or done == params.max_steps:
            values = run_evaluation(done)
            if log is not None and values:
                log(values, done)
        if done % params.checkpoint_every == 0 or done == params.max_steps:
            checkpoints.save(done, models, optimizer, {"history": history})
    elapsed = max(time.perf_counter() - started, 1e-9)
    models.cpu().eval()
    for m in (encoder, decoder):
        m.to(memory_format=torch.contiguous_format)
    return FirstStageResult(models, history, params.max_steps, start, elapsed, (params.max_steps - start) / elapsed)


def _lr_factor(step: int, params: FirstStageParams) -> float:
    """Warm-up then cosine from 1 down to lr_final (never to 0: a resumed, lengthened run keeps learning)."""
    cosine = learning_rate_factor(step, params.warmup_steps, params.max_steps, "cosine")
    if step < params.warmup_steps:
        return cosine
    return params.lr_final + (1.0 - params.lr_final) * cosine
