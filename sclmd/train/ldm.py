"""Training the speech-conditioned LDM (SCLDM stage 2): one explicit loop, as in pre-training.

The speech encoder and face encoder are frozen, so their outputs are computed once
per split (`encode_split`) and the loop trains on tensors: each step is a batch of
(speech embedding of a clip, face latent of a random picture of the same speaker),
DDPM noise at a random timestep, epsilon- or v-prediction MSE, with the network shown the
prior-shifted latent (`training_input`).  Accelerate picks the device and mixed
precision; diffusers' EMAModel keeps the EMA weights that sampling and the saved
pipeline use.  Batches and noise are pure functions of (seed, step), so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sclmd.config import LDMParams
from sclmd.data.store import PackedClips
from sclmd.errors import SclmdError
from sclmd.models.ldm import LDMConfig, SpeechCondition, build_unet, run_unet, training_input
from sclmd.models.speech_face import SpeechFaceModel
from sclmd.train.checkpoints import CheckpointStore, file_sha256
from sclmd.train.distributed import (
    agree_on_weights,
    check_divisible,
    make_accelerator,
    mean_over_processes,
    process_share,
)
from sclmd.train.pretrain import SpeakerBatches, learning_rate_factor

Logger = Callable[[dict[str, float], int], None]
Sampler = Callable[[nn.Module, int], None]  # (EMA network, step) -> writes a sample grid


@dataclass
class Encoded:
    """What the frozen encoders make of one split."""

    speech: torch.Tensor  # [N, D] speech embeddings
    latents: torch.Tensor  # [N, C, h, w] face latents z (unscaled)
    speakers: np.ndarray  # [N] speaker ids
    face_emb: torch.Tensor  # [N, D] the face encoder's contrastive embeddings (for judging generated faces)


ENCODED_INFO = "info.json"


def save_encodings(directory, encodings: dict[str, Encoded], weights_file) -> None:
    """Every split's encoding, written once by `pretrain` for the stages that train on the frozen
    encoders (`train_ldm`, `baselines`) and for `evaluate`: computing them again in each of those
    stages cost about 30 s a stage on 2 cores.  `weights_file`: the encoders they came from."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from sclmd.io import atomic_dir

    with atomic_dir(Path(directory)) as tmp:
        for split, enc in encodings.items():
            save_file(
                {
                    "speech": enc.speech.contiguous(),
                    "latents": enc.latents.contiguous(),
                    "face_emb": enc.face_emb.contiguous(),
                },
                str(tmp / f"{split}.safetensors"),
            )
        (tmp / ENCODED_INFO).write_text(
            json.dumps(
                {
                    "encoders_sha256": file_sha256(weights_file),
                    "clips": {s: len(e.speakers) for s, e in encodings.items()},
                },
                indent=1,
            )
            + "\n"
        )


def load_encoding(directory, dataset: PackedClips, split: str, weights_file) -> Encoded:
    """One split's encoding from `save_encodings`; an error naming the fix when it is missing or was
    made by other encoders or for other data."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        info = json.loads((directory / ENCODED_INFO).read_text())
        tensors = load_file(str(directory / f"{split}.safetensors"))
    except (OSError, ValueError) as e:
        raise SclmdError(
            f"{directory}: no readable encoding of the {split} split ({e}). It is written by the "
            "pretrain stage: run `dvc repro pretrain` (or `sclmd stage pretrain`)."
        ) from None
    if info.get("encoders_sha256") != file_sha256(weights_file):
        raise SclmdError(
            f"{directory}: made by other encoders than {weights_file}. Re-run the pretrain stage "
            "(`dvc repro pretrain`), which writes both."
        )
    if len(tensors["speech"]) != len(dataset):
        raise SclmdError(
            f"{directory}/{split}.safetensors: {len(tensors['speech'])} clips, but the prepared {split} "
            f"split has {len(dataset)}. Re-run the pretrain stage on this data (`dvc repro pretrain`)."
        )
    return Encoded(tensors["speech"], tensors["latents"], dataset.rows["speaker_id"].to_numpy(), tensors["face_emb"])


@torch.no_grad()
def encode_split(encoders: SpeechFaceModel, dataset: PackedClips, batch_size: int, desc: str) -> Encoded:
    from tqdm import tqdm

    encoders.eval()
    speech, latents, faces = [], [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", leave=False):
        batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        speech.append(encoders.speech_encoder(batch.audio_float()))
        z, emb = encoders.face_encoder(batch.face_float())
        latents.append(z)
        faces.append(emb)
    return Encoded(torch.cat(speech), torch.cat(latents), dataset.rows["speaker_id"].to_numpy(), torch.cat(faces))


class LatentDenoiser(nn.Module):
    """UNet + speech projection: eps = unet(x, t, tokens(speech))."""

    def __init__(self, config: LDMConfig):
        super().__init__()
        self.unet = build_unet(config)
        self.condition = SpeechCondition(config.embed_dim, config.n_tokens, config.cross_attention_dim)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, speech_emb: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        return run_unet(self.unet, x, t, self.condition(speech_emb, drop))


class TrainState(nn.Module):
    """The trained network and its EMA copy, checkpointed together."""

    def __init__(self, config: LDMConfig):
        super().__init__()
        self.net = LatentDenoiser(config)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)


def make_train_scheduler(params: LDMParams):
    from diffusers import DDPMScheduler

    # clip_sample off: the latents are unit-variance, not images in [-1, 1] (as in Stable Diffusion)
    return DDPMScheduler(
        num_train_timesteps=params.num_train_timesteps,
        beta_schedule=params.beta_schedule,
        prediction_type=params.prediction_type,
        clip_sample=False,
    )


def prediction_target(
    z0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the network learns to output: the noise (epsilon) or v = sqrt(a) * noise - sqrt(1 - a) * z0.

    v-prediction (Salimans & Ho 2022) keeps the target's scale the same at every timestep, so
    a short run learns the nearly-noise-free end as well as the noisy one.
    """
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = alpha_bar.view(-1, *([1] * (z0.dim() - 1)))
        return a.sqrt() * noise - (1 - a).sqrt() * z0
    raise ValueError(f"unknown prediction_type '{prediction_type}' (epsilon | v_prediction)")


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of the training latents: the diffusion then works on unit-variance latents."""
    std = float(latents.float().std())
    if not np.isfinite(std) or std < 1e-8:
        raise SclmdError(
            f"the face latents of the training split have std {std}: the pre-trained face encoder "
            "is degenerate. Re-run `sclmd stage pretrain`."
        )
    return 1.0 / std


def ldm_config(params: LDMParams, train: Encoded) -> LDMConfig:
    """The model config for training on `train`: shapes from the encoded tensors, scale from their spread."""
    return LDMConfig(
        size=params.size,
        latent_channels=int(train.latents.shape[1]),
        latent_size=int(train.latents.shape[-1]),
        embed_dim=int(train.speech.shape[1]),
        n_tokens=params.n_tokens,
        cross_attention_dim=params.cross_attention_dim,
        latent_scale=latent_scale(train.latents),
    )


@dataclass
class LDMResult:
    state: TrainState
    history: dict[str, list[tuple[int, float]]]
    steps: int
    resumed_from: int
    steps_per_s: float
    samples_per_s: float
    data_wait_share: float
    extra: dict = field(default_factory=dict)
    processes: int = 1
    weights_sha256: str = ""  # the same in every process (checked at the end of training)


def epsilon_loss(
    eps: torch.Tensor,
    noise: torch.Tensor,
    alpha_bar: torch.Tensor,
    snr_gamma: float | None,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """MSE to the target (`noise` holds the epsilon or v target); with snr_gamma each sample is
    weighted min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) / (SNR + 1) for v, SNR = a / (1 - a)."""
    if snr_gamma is None:
        return F.mse_loss(eps, noise)
    snr = alpha_bar / (1 - alpha_bar)
    if prediction_type == "v_prediction":
        weight = torch.clamp(snr, max=snr_gamma) / (snr + 1)
    else:
        weight = torch.where(snr > snr_gamma, snr_gamma / snr, torch.ones_like(snr))  # no 0/0 at alpha_bar = 0
    per_sample = (eps - noise).pow(2).mean(dim=tuple(range(1, eps.dim())))
    return (weight * per_sample).mean()


def train_ldm(
    params: LDMParams,
    config: LDMConfig,
    train: Encoded,
    prior: torch.Tensor,
    checkpoints: CheckpointStore,
    log: Logger | None = None,
    sample: Sampler | None = None,
) -> LDMResult:
    """Train from `train` (encoded split) with the prior p (unscaled) as normalisation."""
    from diffusers.training_utils import EMAModel
    from tqdm import tqdm

    accelerator = make_accelerator(params.mixed_precision)
    device = accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(params.seed)
    state = TrainState(config)
    scheduler = make_train_scheduler(params)
    optimizer = torch.optim.AdamW(state.net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    batch_size = min(params.batch_size, len(np.unique(train.speakers)))
    check_divisible("ldm", {"batch_size": batch_size}, world)
    batches = SpeakerBatches(train.speakers, batch_size, params.seed)

    start, history = checkpoints.resume(params.resume, state, optimizer, accelerator.print, "train_ldm")
    ema = EMAModel(state.ema.parameters(), decay=params.ema_decay)
    ema.optimization_step = start

    net, optimizer = accelerator.prepare(state.net, optimizer)
    ema.to(device)
    scaled = (train.latents * config.latent_scale).to(device)
    speech = train.speech.to(device)
    shift = (prior * config.latent_scale).to(device)
    alphas = scheduler.alphas_cumprod.to(device)

    def record(name: str, step: int, value: float) -> None:
        history.setdefault(name, []).append((step, value))

    wait = compute = 0.0
    started = time.perf_counter()
    net.train()
    bar = tqdm(
        range(start, params.max_steps),
        desc="train_ldm",
        unit="step",
        initial=start,
        total=params.max_steps,
        disable=not accelerator.is_local_main_process,
    )
    for step in bar:
        t0 = time.perf_counter()
        voice_rows, face_rows = (torch.from_numpy(r) for r in batches.batch(step))
        # Noise, timesteps and condition dropout are drawn for the whole global batch, then shared
        # out like its rows: the processes together train on exactly what one process would.
        g = torch.Generator().manual_seed(params.seed * 1_000_003 + step)
        noise = torch.randn((len(face_rows), *scaled.shape[1:]), generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(face_rows),), generator=g)
        drop = torch.rand(len(face_rows), generator=g) < params.cfg_dropout
        voice_rows, face_rows, noise, t, drop = (
            process_share(x, rank, world).to(device) for x in (voice_rows, face_rows, noise, t, drop)
        )
        z0 = scaled[face_rows]
        emb = speech[voice_rows]
        t1 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = params.lr * learning_rate_factor(
                step, params.warmup_steps, params.max_steps, params.lr_schedule
            )
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z0 + (1 - a).sqrt() * noise  # = scheduler.add_noise, without its per-call dtype moves
        with accelerator.autocast():
            eps = net(training_input(noisy, shift, params.prior_weight), t, emb, drop)
        target = prediction_target(z0, noise, a.flatten(), params.prediction_type)
        loss = epsilon_loss(eps.float(), target, a.flatten(), params.snr_gamma, params.prediction_type)
        if not torch.isfinite(loss):
            raise SclmdError(f"train_ldm: loss became {loss.item()} at step {step}; lower ldm.learning_rate")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        ema.step(accelerator.unwrap_model(net).parameters())
        t2 = time.perf_counter()
        wait += t1 - t0
        compute += t2 - t1
        done = step + 1
        if done % params.log_every == 0 or done == params.max_steps:
            values = {
                **mean_over_processes({"loss": loss.detach()}, accelerator.device),
                "lr": optimizer.param_groups[0]["lr"],
                "samples_per_s": (done - start) * batch_size / (time.perf_counter() - started),
            }
            for k, v in values.items():
                record(k, done, v)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            if log is not None and accelerator.is_main_process:
                log(values, done)
        checkpoint_now = done % params.checkpoint_every == 0 or done == params.max_steps
        sample_now = sample is not None and (done % params.sample_every == 0 or done == params.max_steps)
        if (checkpoint_now or sample_now) and accelerator.is_main_process:
            ema.copy_to(state.ema.parameters())
            if checkpoint_now:
                checkpoints.save(done, state, optimizer, {"history": history})
            if sample_now:
                sample(state.ema, done)
    accelerator.wait_for_everyone()
    ema.copy_to(state.ema.parameters())
    digest = agree_on_weights(accelerator, state)
    elapsed = max(time.perf_counter() - started, 1e-9)
    ran = params.max_steps - start
    return LDMResult(
        state=state.cpu().eval(),
        history=history,
        steps=params.max_steps,
        resumed_from=start,
        steps_per_s=ran / elapsed,
        samples_per_s=ran * batch_size / elapsed,
        data_wait_share=wait / max(wait + compute, 1e-9),
        processes=world,
        weights_sha256=digest,
    )
