"""Collaborative contrastive pre-training (SCLDM stage 1): one explicit loop, two phases.

1. `autoencoder_steps` face-only steps: the face encoder and decoder learn to draw faces
   (reconstruction only, random faces with flips).  A sharp autoencoder needs many more
   face samples than the joint phase can afford: there the speech encoder costs most of
   every step.
2. `max_steps` joint steps: speech encoder, face encoder and face decoder train together on
     contrastive_weight * symmetric CE over speech-face similarities (CLIP, learned temperature)
   + reconstruction,
   with the paper's separate learning rates.

Reconstruction is mae_weight * |recon - face| + perceptual_weight * perceptual(recon, face)
+ gradient_weight * |grad recon - grad face| (the image-gradient term keeps the
2-4 px edges of eyes, mouth and glasses that a pixel loss averages away).  Accelerate picks the device (CUDA before
CPU), mixed precision on GPU, and DDP across processes (`accelerate launch`).

With `adversarial_weight` > 0, Stable Diffusion's autoencoder recipe is added from step
`adversarial_start` on: a patch discriminator (hinge loss) judges reconstructions against the
faces, and the decoder's adversarial term is scaled by the adaptive weight (the ratio of the
reconstruction's and the adversarial term's gradient norms at the decoder's last layer), so
it can never swamp the reconstruction.  Both sides update in the same optimizer step: the
decoder's gradient is taken with the discriminator frozen, the discriminator's on the detached
reconstruction.

Batches hold distinct speakers (a clip of the same speaker elsewhere in the batch
would be a false negative for the contrastive loss), in an order that is a pure
function of (seed, epoch): so a resumed run sees exactly the batches an
uninterrupted one would, and ends with the same weights.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sclmd.config import DataParams, PretrainParams
from sclmd.data.store import PackedClips
from sclmd.errors import SclmdError
from sclmd.models.face_autoencoder import PatchDiscriminator
from sclmd.models.perceptual import make_perceptual
from sclmd.models.speech_face import SpeechFaceModel
from sclmd.train.autoencoder import (  # noqa: F401  (re-exported: pretrain's public names since before the split)
    adaptive_adversarial_scale,
    autoencoder_rows,
    hinge_discriminator_loss,
    image_gradient_l1,
    learning_rate_factor,
)
from sclmd.train.checkpoints import CheckpointStore
from sclmd.train.distributed import (
    agree_on_weights,
    check_divisible,
    describe_agreement,
    make_accelerator,
    mean_over_processes,
    process_share,
    sync_batch_norm,
)
from sclmd.train.voice_augment import augment_voices

Logger = Callable[[dict[str, float], int], None]


class SpeakerBatches:
    """Batches of distinct speakers; epoch e's order depends only on (seed, e)."""

    def __init__(self, speakers: np.ndarray, batch_size: int, seed: int):
        self.batch_size = batch_size
        self.seed = seed
        self.clips_of: list[np.ndarray] = [np.nonzero(speakers == s)[0] for s in np.unique(speakers)]
        if len(self.clips_of) < batch_size:
            raise SclmdError(
                f"pretrain.batch_size {batch_size} is larger than the {len(self.clips_of)} training speakers; "
                "a contrastive batch needs distinct speakers. Lower pretrain.batch_size."
            )
        self.per_epoch = len(self.clips_of) // batch_size

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows for the voices, rows for the faces): two clips of the same speakers.

        The face comes from a clip drawn independently of the voice's: a pair is a
        speaker's voice and any picture of that speaker, so no particular recording
        and picture can be learned as a couple (which does not generalise).
        """
        epoch, index = divmod(step, self.per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.clips_of))
        chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
        # Voices cycle through each speaker's clips over the epochs; faces are drawn at random.
        picks = rng.integers(0, 1 << 30, size=len(self.clips_of))
        face_rng = np.random.default_rng([self.seed, epoch, index, 1])
        voices = np.array([self.clips_of[s][(picks[s] + epoch) % len(self.clips_of[s])] for s in chosen])
        faces = np.array([self.clips_of[s][face_rng.integers(len(self.clips_of[s]))] for s in chosen])
        return voices, faces


def jitter_colours(face: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Random hue rotation and saturation scaling per image, lightness kept.

    Skin, hair and eye colour are face-only factors that no voice predicts; left intact
    they are the easiest cues for the contrastive loss to memorise training pairs by.
    Rotating hue (about the grey axis, so grey hair stays grey) takes them away and
    leaves the shared cues - shape, beard, hair style, greying - to be learned.
    """
    if strength <= 0:
        return face
    b = face.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.pi * strength
    sat = 1 + (torch.rand(b, generator=generator) * 2 - 1) * 0.5 * strength
    grey = face.mean(dim=1, keepdim=True)
    chroma = face - grey  # lies in the plane orthogonal to (1, 1, 1)
    axis = torch.full((3,), 1 / math.sqrt(3))
    cos, sin = angle.cos().view(b, 1, 1, 1), angle.sin().view(b, 1, 1, 1)
    cross = torch.cross(axis.view(1, 3, 1, 1).expand_as(chroma), chroma, dim=1)
    rotated = chroma * cos + cross * sin  # Rodrigues' rotation (chroma is orthogonal to axis)
    return (grey + rotated * sat.view(b, 1, 1, 1)).clamp(-1, 1)


def crop_voices(wave: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of `length` samples from each clip (the whole clip when shorter).

    Speaker-recognition training does the same (x-vectors train on 2-4 s segments): half
    the clip costs the speech encoder half the compute, and each epoch sees other parts
    of every voice.  The time-averaged embedding is still computed over 6 s at test time.
    """
    if length <= 0 or length >= wave.shape[1]:
        return wave
    starts = torch.randint(0, wave.shape[1] - length + 1, (wave.shape[0],), generator=generator)
    index = starts[:, None] + torch.arange(length)[None, :]
    return torch.gather(wave, 1, index)


def face_learning_rate(params: PretrainParams) -> float:
    """The paper's 1e-4 fine-tunes a face encoder that starts from VGG-Face weights.

    From random init that rate leaves the face side nearly where it started in a short
    run: its embedding then carries little gender or age, and the speech encoder (at
    1e-3) learns to match per-speaker noise instead, which does not transfer to new
    speakers (measured on the val split; see README, Pre-training).
    """
    return params.lr_face if params.vgg_face_weights or params.face_init else params.lr_face_from_scratch


@dataclass
class TrainResult:
    model: SpeechFaceModel
    history: dict[str, list[tuple[int, float]]]
    steps: int
    resumed_from: int
    samples_per_s: float
    steps_per_s: float
    data_wait_share: float
    perceptual: dict = field(default_factory=dict)
    processes: int = 1
    weights_sha256: str = ""  # the same in every process (checked at the end of training)


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def gathered_contrastive_loss(
    speech_emb: torch.Tensor, face_emb: torch.Tensor, logits_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """CLIP's symmetric loss with the negatives of every process, as one process would see the
    whole batch: this process's voices (faces) against the faces (voices) gathered from all of
    them, with gradients (torch.distributed.nn's all_gather sums them back in backward).
    `logits_of(a, b)`: scaled cosine similarities of rows a against rows b
    (`SpeechFaceModel.contrastive_logits`).

    Averaged over processes, as DDP averages gradients, loss and gradients equal the
    single-process ones on the concatenated batch (tests/test_distributed.py).  Every process
    must hold the same number of pairs.  Without a process group it is `contrastive_loss`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return contrastive_loss(logits_of(speech_emb, face_emb))
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the autograd-aware gather
        warnings.simplefilter("ignore", FutureWarning)
        all_speech, all_face = torch.cat(all_gather(speech_emb)), torch.cat(all_gather(face_emb))
    targets = dist.get_rank() * len(speech_emb) + torch.arange(len(speech_emb), device=speech_emb.device)
    return (
        F.cross_entropy(logits_of(speech_emb, all_face), targets)
        + F.cross_entropy(logits_of(face_emb, all_speech), targets)
    ) / 2


def build_model(params: PretrainParams, data: DataParams, root: Path | None = None) -> SpeechFaceModel:
    """The model at its starting point: random, VGG-Face convolutions, or the shipped first stage
    (`face_init`, a path relative to `root`, else to the checkout)."""
    torch.manual_seed(params.seed)
    model = SpeechFaceModel.from_params(
        params.size,
        params.embed_dim,
        params.latent_channels,
        data.image_size,
        params.speech_magnitude_channel,
        params.speech_pitch_features,
        latent_downsample=params.latent_downsample,
        decoder_width=params.decoder_width,
        latent_norm=params.latent_norm,
    )
    if params.vgg_face_weights:
        model.face_encoder.load_vgg_face(Path(params.vgg_face_weights))
    if params.face_init:
        load_first_stage(model, params, root or Path.cwd())
    return model


# FaceConfig fields a first stage fixes -> the pretrain params that set them
FIRST_STAGE_FIELDS = {
    "width": "size",
    "latent_channels": "latent_channels",
    "image_size": "data.image_size",
    "batch_norm": None,
    "latent_blocks": "latent_downsample",
    "decoder_width": "decoder_width",
    "latent_norm": "latent_norm",
}


def load_first_stage(model: SpeechFaceModel, params: PretrainParams, root: Path) -> Path:
    """Start the face encoder's latent blocks and the decoder from the first-stage folder `face_init`."""
    from sclmd.models.shipped import load_face_autoencoder, resolve

    if params.vgg_face_weights:
        raise SclmdError(
            "pretrain: face_init and vgg_face_weights both start the face encoder; set one of them "
            "to null in params.yaml."
        )
    folder = resolve(params.face_init, root)
    face, encoder_state, decoder_state = load_face_autoencoder(folder)
    ours = model.face_encoder.config
    differ = [
        f"{FIRST_STAGE_FIELDS[k] or k}: the first stage has {getattr(face, k)!r}, params give {getattr(ours, k)!r}"
        for k in FIRST_STAGE_FIELDS
        if getattr(face, k) != getattr(ours, k)
    ]
    if differ:
        raise SclmdError(
            f"{folder}: this first stage does not fit pretrain's face autoencoder ({'; '.join(differ)}). "
            "Set those pretrain params to the first stage's values, or pretrain.face_init: null to "
            "train from scratch."
        )
    latent_path = {
        k: v
        for k, v in encoder_state.items()
        if k.split(".")[0] in {"to_latent", "latent_norm"}
        or (k[:4] in ("conv", "norm") and int(k[4:].split("_")[0]) <= ours.latent_blocks)
    }
    if "to_latent.weight" not in latent_path:
        raise SclmdError(
            f"{folder}: the face encoder's latent weights are missing from model.safetensors. "
            "Train the first stage again (`sclmd release --part first-stage`)."
        )
    model.face_encoder.load_state_dict(latent_path, strict=False)  # the embedding branch: pretrain's own
    model.face_decoder.load_state_dict(decoder_state)
    return folder


def unwrapped_first_stage(model) -> list[nn.Module]:
    return (model.module if hasattr(model, "module") else model).first_stage_modules()


def freezes_first_stage(params: PretrainParams) -> bool:
    return bool(params.face_init) and params.freeze_first_stage


def train(
    params: PretrainParams,
    data: DataParams,
    prepared: Path,
    checkpoints: CheckpointStore,
    log: Logger | None = None,
    initial_model: SpeechFaceModel | None = None,
    perceptual=None,
) -> TrainResult:
    from tqdm import tqdm

    accelerator = make_accelerator(params.mixed_precision)
    device = accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    check_divisible(
        "pretrain", {"batch_size": params.batch_size, "autoencoder_batch_size": params.autoencoder_batch_size}, world
    )
    dataset = PackedClips(prepared, "train")
    batches = SpeakerBatches(dataset.rows["speaker_id"].to_numpy(), params.batch_size, params.seed)
    if perceptual is None:
        perceptual = make_perceptual(params.perceptual, params.lpips_net, params.lpips_missing)
    perceptual = perceptual.to(device)

    model = sync_batch_norm(initial_model if initial_model is not None else build_model(params, data), accelerator)
    # The face convolutions run ~20 % faster channels-last (oneDNN on CPU, tensor cores on GPU).
    model.face_encoder.to(memory_format=torch.channels_last)
    model.face_decoder.to(memory_format=torch.channels_last)
    crop = int(round(params.speech_crop_seconds * data.sample_rate))
    speech_params = list(model.speech_encoder.parameters()) + [model.logit_scale]
    frozen = freezes_first_stage(params)
    if frozen:  # nothing of the autoencoder trains: its phase and its adversarial term do not apply
        for module in unwrapped_first_stage(model):
            module.requires_grad_(False)
    face_params = [
        p for p in list(model.face_encoder.parameters()) + list(model.face_decoder.parameters()) if p.requires_grad
    ]
    lr_face = face_learning_rate(params)
    optimizer = torch.optim.AdamW(
        [{"params": face_params, "lr": lr_face}, {"params": speech_params, "lr": params.lr_speech}],
        weight_decay=params.weight_decay,
    )
    base_lrs = [lr_face, params.lr_speech]
    discriminator = None
    if params.adversarial_weight > 0:
        with torch.random.fork_rng(devices=[]):  # its initialisation leaves the run's RNG stream alone
            torch.manual_seed(params.seed)
            discriminator = PatchDiscriminator()
        optimizer.add_param_group(
            {
                "params": list(discriminator.parameters()),
                "lr": params.adversarial_lr,
                "betas": (0.5, 0.9),
                "weight_decay": 0.0,
            }
        )
    # what a checkpoint holds: the model, and the discriminator when there is one
    checkpointed = lambda m, d: m if d is None else nn.ModuleDict({"model": m, "discriminator": d})  # noqa: E731

    start, history = checkpoints.resume(
        params.resume, checkpointed(model, discriminator), optimizer, accelerator.print, "pretrain"
    )

    if discriminator is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, discriminator, optimizer = accelerator.prepare(model, discriminator, optimizer)
    unwrapped: SpeechFaceModel = accelerator.unwrap_model(model)
    unwrapped_discriminator = None if discriminator is None else accelerator.unwrap_model(discriminator)

    def record(name: str, step: int, value: float) -> None:
        history.setdefault(name, []).append((step, value))

    def reconstruction_losses(recon: torch.Tensor, face: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = recon.float()
        return {
            "loss_mae": (recon - face).abs().mean(),
            f"loss_{perceptual.name}": perceptual(recon, face).mean(),
            "loss_gradient": image_gradient_l1(recon, face),
        }

    def reconstruction_total(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            params.mae_weight * parts["loss_mae"]
            + params.perceptual_weight * parts[f"loss_{perceptual.name}"]
            + params.gradient_weight * parts["loss_gradient"]
        )

    ae_steps = 0 if frozen else params.autoencoder_steps
    total = ae_steps + params.max_steps
    n_faces = len(dataset)
    seen = 0
    wait = compute = 0.0
    started = time.perf_counter()
    model.train()
    if frozen:  # frozen batch norms keep the first stage's statistics
        for module in unwrapped_first_stage(unwrapped):
            module.eval()
    bar = tqdm(
        range(start, total),
        desc="pretrain",
        unit="step",
        initial=start,
        total=total,
        disable=not accelerator.is_local_main_process,
    )
    for step in bar:
        t0 = time.perf_counter()
        step_rng = torch.Generator().manual_seed(params.seed * 1_000_003 + step)
        autoencoder_phase = step < ae_steps
        if autoencoder_phase:
            rows, flips = autoencoder_rows(step, n_faces, params.autoencoder_batch_size, params.seed)
            rows, flips = process_share(rows, rank, world), torch.from_numpy(process_share(flips, rank, world))
            wave = None
            face = dataset.faces_float(rows)
            face = torch.where(flips[:, None, None, None], face.flip(-1), face)
        else:
            voice_rows, face_rows = (process_share(rows, rank, world) for rows in batches.batch(step - ae_steps))
            wave = crop_voices(dataset.audio(voice_rows).float().div_(32768.0), crop, step_rng)
            wave = augment_voices(wave, step_rng, data.sample_rate, params.voice_augment)
            wave = wave.to(device, non_blocking=True)
            face = dataset.faces_float(face_rows)
        if params.colour_jitter > 0:
            face = jitter_colours(face, step_rng, params.colour_jitter)
        face = face.contiguous(memory_format=torch.channels_last).to(device, non_blocking=True)
        t1 = time.perf_counter()
        # The speech side warms up when it starts training, after the autoencoder phase.
        factors = [
            learning_rate_factor(step, params.warmup_steps),
            learning_rate_factor(step - ae_steps, params.warmup_steps),
        ]
        for group, base, factor in zip(optimizer.param_groups[:2], base_lrs, factors):  # the discriminator's stays
            group["lr"] = base * factor
        adversarial = discriminator is not None and step >= params.adversarial_start and not frozen
        with accelerator.autocast():
            out = model(wave, face, params.contrastive_latent_grad, params.latent_noise, reconstruct=not frozen)
            if frozen:
                parts, loss = {}, torch.zeros((), device=device)
            else:
                parts = reconstruction_losses(out["recon"], face)
                loss = reconstruction = reconstruction_total(parts)
            if adversarial:
                unwrapped_discriminator.requires_grad_(False)
                parts["loss_adversarial"] = -discriminator(out["recon"]).float().mean()
                parts["adversarial_scale"] = adaptive_adversarial_scale(
                    reconstruction, parts["loss_adversarial"], unwrapped.face_decoder.last_layer
                )
                loss = loss + params.adversarial_weight * parts["adversarial_scale"] * parts["loss_adversarial"]
            if not autoencoder_phase:
                # one process: the model's own logits; several: every process's negatives
                parts["loss_contrastive"] = (
                    contrastive_loss(out["logits"].float())
                    if world == 1
                    else gathered_contrastive_loss(
                        out["speech_emb"].float(), out["face_emb"].float(), unwrapped.contrastive_logits
                    )
                )
                loss = loss + params.contrastive_weight * parts["loss_contrastive"]
        if not torch.isfinite(loss):
            raise SclmdError(f"pretrain: loss became {loss.item()} at step {step}; lower the learning rates")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if adversarial:
            unwrapped_discriminator.requires_grad_(True)
            with accelerator.autocast():
                parts["loss_discriminator"] = hinge_discriminator_loss(
                    discriminator(face), discriminator(out["recon"].detach())
                )
            accelerator.backward(parts["loss_discriminator"])
        optimizer.step()
        t2 = time.perf_counter()
        wait += t1 - t0
        compute += t2 - t1
        seen += len(face) * world
        done = step + 1
        if done % params.log_every == 0 or done == total:
            phase = "autoencoder" if autoencoder_phase else "joint"
            values = {
                **mean_over_processes(
                    {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}, accelerator.device
                ),
                "temperature": float(1 / unwrapped.logit_scale.exp().item()),
                "lr_face": optimizer.param_groups[0]["lr"],
                "lr_speech": optimizer.param_groups[1]["lr"],
                "samples_per_s": seen / (time.perf_counter() - started),
            }
            for k, v in values.items():
                record(k, done, v)
            bar.set_postfix(
                phase=phase,
                loss=f"{values['loss']:.3f}",
                **({"nce": f"{values['loss_contrastive']:.3f}"} if "loss_contrastive" in values else {}),
            )
            if log is not None and accelerator.is_main_process:
                log(values, done)
        if (done % params.checkpoint_every == 0 or done == total) and accelerator.is_main_process:
            checkpoints.save(done, checkpointed(unwrapped, unwrapped_discriminator), optimizer, {"history": history})
    accelerator.wait_for_everyone()
    digest = agree_on_weights(accelerator, checkpointed(unwrapped, unwrapped_discriminator))
    elapsed = max(time.perf_counter() - started, 1e-9)
    ran = total - start
    return TrainResult(
        model=unwrapped.cpu().to(memory_format=torch.contiguous_format).eval(),
        history=history,
        steps=total,
        resumed_from=start,
        samples_per_s=seen / elapsed,
        steps_per_s=ran / elapsed,
        data_wait_share=wait / max(wait + compute, 1e-9),
        perceptual=perceptual.describe(),
        processes=world,
        weights_sha256=digest,
    )


def describe_speed(result: TrainResult) -> str:
    agreement = describe_agreement(result.processes, result.weights_sha256)
    processes = f"; {agreement}" if agreement else ""
    return (
        f"{result.steps_per_s:.2f} steps/s, {result.samples_per_s:.1f} samples/s, "
        f"{100 * result.data_wait_share:.1f}% waiting for data{processes}"
    )
