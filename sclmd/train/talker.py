"""Training the talking face: the diffusion autoencoder, then speech2latent and the regression reference.

Video frames are first mapped to the frozen face autoencoder's latents (from `pretrain`),
where the DAE works. The DAE's loop keeps an EMA copy (what is saved and used) and
checkpoints that a re-run resumes; speech2latent and the regressor are short loops on
top of the DAE's semantic codes.
"""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sclmd.errors import SclmdError
from sclmd.models.talker import POSE_SCALE, TalkerBundle, TalkerConfig
from sclmd.train.checkpoints import CheckpointStore

POSE_TRACKS = ("yaw", "pitch", "roll")


@dataclass
class Clips:
    """The talking clips of one split, in memory."""

    speakers: list[str]
    genders: list[str]
    ages: list[int]
    frames: torch.Tensor  # uint8 [N, T, H, W, 3]
    waves: torch.Tensor  # float32 [N, samples]
    tracks: dict[str, torch.Tensor]  # name -> float32 [N, T]

    def __len__(self) -> int:
        return len(self.speakers)

    @property
    def pose(self) -> torch.Tensor:
        return torch.stack([self.tracks[k] for k in POSE_TRACKS], dim=-1)  # [N, T, 3] degrees

    def take(self, n: int) -> "Clips":
        return Clips(
            self.speakers[:n],
            self.genders[:n],
            self.ages[:n],
            self.frames[:n],
            self.waves[:n],
            {k: v[:n] for k, v in self.tracks.items()},
        )


def has_clips(video_dir: Path, split: str) -> bool:
    """Whether synth_video's manifest lists any clip of `split` (val is optional: talker_video.val_speakers 0)."""
    manifest = Path(video_dir) / "manifest.csv"
    if not manifest.exists():
        return False
    with manifest.open(newline="") as f:
        return any(r.get("split") == split for r in csv.DictReader(f))


def load_clips(video_dir: Path, split: str) -> Clips:
    """Every clip of `split` listed in `video_dir/manifest.csv` (synth_video's output)."""
    from sclmd.data.video import read_frames
    from sclmd.io import is_inside

    manifest = Path(video_dir) / "manifest.csv"
    if not manifest.exists():
        raise SclmdError(f"{manifest}: not found. Run `sclmd stage synth_video` (part of `make talker`) first.")
    with manifest.open(newline="") as f:
        numbered = [(n, r) for n, r in enumerate(csv.DictReader(f), start=2) if r["split"] == split]  # file lines
    if not numbered:
        raise SclmdError(f"{manifest}: no {split} clips")
    rows = [r for _, r in numbered]
    frames, waves, tracks = [], [], {}
    for n, row in numbered:
        video, track_file = Path(video_dir) / row["video"], Path(video_dir) / row["tracks"]
        if not (is_inside(video, video_dir) and is_inside(track_file, video_dir)):
            raise SclmdError(f"{manifest}, row {n}: path outside {video_dir}; the manifest was edited by hand")
        clip = read_frames(video)
        with np.load(track_file) as t:
            for key in ("opening", "rounding", "blink", *POSE_TRACKS):
                tracks.setdefault(key, []).append(t[key][: len(clip)])
            waves.append(t["audio"].astype(np.float32) / 32767.0)
        frames.append(clip)
    n_frames = min(len(f) for f in frames)
    return Clips(
        [r["speaker_id"] for r in rows],
        [r["gender"] for r in rows],
        [int(float(r["age"])) for r in rows],
        torch.from_numpy(np.stack([f[:n_frames] for f in frames])),
        torch.from_numpy(np.stack(waves)),
        {k: torch.from_numpy(np.stack([x[:n_frames] for x in v])).float() for k, v in tracks.items()},
    )


def to_unit(frames_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    x = frames_uint8.float() / 127.5 - 1
    return x.movedim(-1, -3)


@torch.no_grad()
def encode_frames(
    face_encoder, frames: torch.Tensor, batch: int = 512, desc: str | None = "encode frames"
) -> torch.Tensor:
    """uint8 [N, T, H, W, 3] -> face latents [N, T, C, h, w] (frozen encoder); desc None: no progress bar."""
    n, t = frames.shape[:2]
    flat = frames.reshape(n * t, *frames.shape[2:])
    out = [
        face_encoder.encode(to_unit(flat[s : s + batch]))
        for s in tqdm(range(0, len(flat), batch), desc=desc, unit="batch", disable=desc is None)
    ]
    z = torch.cat(out)
    return z.reshape(n, t, *z.shape[1:])


def set_learning_rate(optimizer, lr: float, step: int, warmup: int, cosine_steps: int | None = None) -> None:
    """Linear warm-up, then constant (the DAE, which EMA smooths) or cosine decay over `cosine_steps`."""
    rate = lr * (min(1.0, (step + 1) / warmup) if warmup else 1.0)
    if cosine_steps:
        rate = rate * 0.5 * (1 + np.cos(np.pi * step / cosine_steps))
    for group in optimizer.param_groups:
        group["lr"] = rate


def train_dae(
    bundle: TalkerBundle,
    latents: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    ema_decay: float,
    seed: int,
    store: CheckpointStore | None,
    resume: bool,
    checkpoint_every: int,
    log=None,
) -> list[tuple[int, float]]:
    """Trains bundle.dae on (target, reference) pairs of frames of one clip; leaves the EMA weights in it."""
    dae = bundle.dae.train()
    ema = copy.deepcopy(dae).requires_grad_(False)
    optimizer = torch.optim.AdamW(dae.parameters(), lr=lr, weight_decay=1e-4)

    class _State(torch.nn.Module):  # what a checkpoint holds: the live net and its EMA together
        def __init__(self):
            super().__init__()
            self.net, self.ema = dae, ema

    state = _State()
    start, history = 0, {}
    if store is not None:
        start, history = store.resume(resume, state, optimizer, announce=print, name="talker dae")
    losses = list(history.get("loss", []))
    generator = torch.Generator().manual_seed(seed * 7919 + start)
    n_clips, n_frames = latents.shape[:2]
    bar = tqdm(range(start, steps), desc="talker dae", unit="step", initial=start, total=steps)
    running = None
    for step in bar:
        set_learning_rate(optimizer, lr, step, warmup)
        clips = torch.randint(0, n_clips, (batch_size,), generator=generator)
        target = latents[clips, torch.randint(0, n_frames, (batch_size,), generator=generator)]
        reference = latents[clips, torch.randint(0, n_frames, (batch_size,), generator=generator)]
        loss = dae.loss(target, reference, generator)
        if not torch.isfinite(loss):
            raise SclmdError(f"talker dae: the loss became {loss.item()} at step {step}. Lower talker.dae_lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dae.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), dae.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % 25 == 0:
            losses.append((step + 1, running))
            bar.set_postfix(loss=f"{running:.4f}")
            if log:
                log({"talker_dae_loss": running}, step + 1)
        if store is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            store.save(step + 1, state, optimizer, {"history": {"loss": losses}})
    bar.close()
    bundle.dae.load_state_dict(ema.state_dict())
    bundle.dae.eval()
    return losses


@torch.no_grad()
def semantic_codes(bundle: TalkerBundle, latents: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Face latents [N, T, C, h, w] -> the DAE's semantic code of every frame [N, T, motion_dim]."""
    n, t = latents.shape[:2]
    flat = latents.reshape(n * t, *latents.shape[2:])
    codes = torch.cat([bundle.dae.encoder(flat[s : s + batch]) for s in range(0, len(flat), batch)])
    return codes.reshape(n, t, -1)


def set_code_statistics(bundle: TalkerBundle, codes: torch.Tensor) -> None:
    """speech2latent's units, from the training clips' codes [N, T, motion_dim].

    z between two frames drawn independently from one clip has twice the within-clip variance."""
    bundle.code_mean.copy_(codes.mean((0, 1)))
    bundle.code_std.copy_(codes.std((0, 1)) + 1e-4)
    bundle.motion_std.copy_((2 * codes.var(1, unbiased=False).mean(0)).sqrt() + 1e-4)


def train_speech2latent(
    bundle: TalkerBundle,
    clips: Clips,
    codes: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    seed: int,
    crop_seconds: float,
    val: tuple[Clips, torch.Tensor] | None = None,
    log=None,
) -> dict:
    """Speech + a reference frame's code -> (z normalised, pose): MSE on both.

    z is each frame's code minus the code of a reference frame drawn from the same clip, as the
    DAE was trained; the latent head is taught with the true pose (teacher forcing)."""
    model = bundle.speech2latent.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed * 104729 + 1)
    pose = clips.pose
    n_frames = codes.shape[1]
    samples_per_frame = clips.waves.shape[1] // n_frames
    crop = max(1, min(n_frames, int(round(crop_seconds * bundle.cfg.fps))))
    history = []
    bar = tqdm(range(steps), desc="speech2latent", unit="step")
    for step in bar:
        set_learning_rate(optimizer, lr, step, warmup, cosine_steps=steps)
        rows = torch.randint(0, len(clips), (batch_size,), generator=generator)
        # A random window of each clip: more distinct inputs than whole clips, and the model learns to
        # start and stop anywhere (a voice given to `sclmd talk` has its own length).
        start = int(torch.randint(0, n_frames - crop + 1, (1,), generator=generator))
        frames = slice(start, start + crop)
        waves = clips.waves[rows, start * samples_per_frame : (start + crop) * samples_per_frame]
        reference = codes[rows, torch.randint(0, n_frames, (batch_size,), generator=generator)]
        target = (codes[rows, frames] - reference[:, None]) / bundle.motion_std
        # Teacher forcing with a little noise, so the latent head tolerates an imperfect predicted pose.
        given = pose[rows, frames] + torch.randn(pose[rows, frames].shape, generator=generator)
        z_pred, pose_pred = model(waves, bundle.normalised_code(reference), crop, pose=given)
        latent_loss = F.mse_loss(z_pred, target)
        pose_loss = F.mse_loss(pose_pred / POSE_SCALE, pose[rows, frames] / POSE_SCALE)
        loss = latent_loss + pose_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 25 == 0:
            history.append((step + 1, latent_loss.item(), pose_loss.item()))
            bar.set_postfix(latent=f"{latent_loss.item():.3f}", pose=f"{pose_loss.item():.3f}")
            if log:
                log({"talker_s2l_latent_loss": latent_loss.item(), "talker_s2l_pose_loss": pose_loss.item()}, step + 1)
    model.eval()
    out = {"history": history}
    if val is not None:  # each val clip spoken relative to its first frame
        val_clips, val_codes = val
        reference = val_codes[:, 0]
        target = (val_codes - reference[:, None]) / bundle.motion_std
        reference = bundle.normalised_code(reference)
        with torch.no_grad():
            z_pred, pose_pred = model(val_clips.waves, reference, val_codes.shape[1])
            z_posed, _ = model(val_clips.waves, reference, val_codes.shape[1], pose=val_clips.pose)
        # In z / motion_std units over all of z's dimensions (most of them not the mouth). The still face
        # (z = 0: every frame as the first) is the reference: `explained` is the share of the motion's
        # energy that speech2latent predicts (1 - MSE / the still face's MSE; 0: no better than standing still).
        still = float(target.pow(2).mean())
        out["val_latent_mse"] = float(F.mse_loss(z_pred, target))
        out["val_latent_mse_still_face"] = still
        out["val_latent_explained"] = 1.0 - out["val_latent_mse"] / max(still, 1e-12)
        out["val_latent_mse_true_pose"] = float(F.mse_loss(z_posed, target))
        out["val_pose_mae_deg"] = float((pose_pred - val_clips.pose).abs().mean())
    return out


@torch.no_grad()
def fit_pose_drift(bundle: TalkerBundle, clips: Clips, batch: int = 32) -> dict[str, dict[str, float]]:
    """Sets the bundle's pose drift from the pose head's residual (truth - prediction) on `clips`.

    Spread: the residual's standard deviation over all frames (zero-mean by training). Correlation
    time: white noise through a Gaussian filter of width sigma has autocorrelation exp(-k^2 / (4 sigma^2))
    at lag k, so sigma is the lag where the residual's autocorrelation falls to exp(-1/4) (interpolated;
    capped at the clip's length). Returns both per axis, in degrees and frames."""
    model = bundle.speech2latent.eval()
    n_frames = clips.tracks[POSE_TRACKS[0]].shape[1]
    reference = torch.zeros(len(clips), bundle.cfg.motion_dim)  # the pose head does not read the face
    predicted = torch.cat(
        [model(clips.waves[s : s + batch], reference[s : s + batch], n_frames)[1] for s in range(0, len(clips), batch)]
    )
    residual = (clips.pose - predicted).double()  # [N, T, 3]
    variance = residual.pow(2).mean((0, 1))
    std, sigma = [], []
    for a in range(3):
        r = residual[..., a]
        acf = [1.0] + [float((r[:, k:] * r[:, :-k]).mean() / variance[a]) for k in range(1, n_frames // 2)]
        level = math.exp(-0.25)
        below = next((k for k, v in enumerate(acf) if v < level), None)
        if below is None:
            lag = float(n_frames // 2)
        else:  # linear interpolation between the last lag above the level and the first below it
            lag = below - 1 + (acf[below - 1] - level) / max(acf[below - 1] - acf[below], 1e-9)
        std.append(float(variance[a].sqrt()))
        sigma.append(lag)
    bundle.pose_drift_std.copy_(torch.tensor(std))
    bundle.pose_drift_frames.copy_(torch.tensor(sigma))
    return {
        "std_deg": {a: round(v, 3) for a, v in zip(POSE_TRACKS, std)},
        "sigma_frames": {a: round(v, 2) for a, v in zip(POSE_TRACKS, sigma)},
    }


def train_regressor(
    bundle: TalkerBundle,
    clips: Clips,
    latents: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    seed: int,
    frames_per_clip: int = 8,
    log=None,
) -> list:
    """The regression reference: speech + a reference frame's latent -> the frame's latent, MSE, one pass."""
    model = bundle.regressor.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed * 15485863 + 2)
    n_frames = latents.shape[1]
    history = []
    bar = tqdm(range(steps), desc="regression reference", unit="step")
    for step in bar:
        set_learning_rate(optimizer, lr, step, warmup, cosine_steps=steps)
        rows = torch.randint(0, len(clips), (batch_size,), generator=generator)
        h = model.context(clips.waves[rows], n_frames)  # [B, T, d]
        pick = torch.randint(0, n_frames, (batch_size, frames_per_clip), generator=generator)
        ref_pick = torch.randint(0, n_frames, (batch_size,), generator=generator)
        states = h[torch.arange(batch_size)[:, None], pick].flatten(0, 1)
        target = latents[rows[:, None], pick].flatten(0, 1)
        reference = latents[rows, ref_pick].repeat_interleave(frames_per_clip, 0)
        loss = F.mse_loss(model.frame_latents(states, reference), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 25 == 0:
            history.append((step + 1, loss.item()))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if log:
                log({"talker_regressor_loss": loss.item()}, step + 1)
    model.eval()
    return history


def talker_config(params, data, face_latent_shape: tuple[int, ...], fps: int) -> TalkerConfig:
    return TalkerConfig(
        fps=fps,
        latent_channels=face_latent_shape[0],
        latent_size=face_latent_shape[1],
        motion_dim=params.motion_dim,
        unet_channels=tuple(params.unet_channels),
        layers_per_block=params.layers_per_block,
        sample_rate=data.sample_rate,
        conformer_layers=params.conformer_layers,
        ddim_steps=params.ddim_steps,
    )


# The config fields a starting talker must share with the params (the rest, fps and rates, come from the data).
ARCHITECTURE = (
    "latent_channels",
    "latent_size",
    "motion_dim",
    "unet_channels",
    "layers_per_block",
    "conformer_layers",
    "sample_rate",
    "fps",
)


def start_from_talker(bundle: TalkerBundle, init: str, root: Path, face_model) -> Path:
    """Load the talker `init` (a folder: weights/dae-talker) into `bundle`, so training fine-tunes it.

    Refused, with what to do, when its architecture differs from the params' or when it works in another
    face autoencoder's latent space than `face_model`'s (its decoder's weights must be the same)."""
    from safetensors.torch import load_file

    from sclmd.models.shipped import CHECKSUMS, resolve, verify_folder
    from sclmd.models.talker import CONFIG, FACE_AUTOENCODER, WEIGHTS

    folder = resolve(init, root)
    if (folder / CHECKSUMS).is_file() or not folder.is_dir():  # a shipped folder (or none): checked first
        verify_folder(folder, (CONFIG, WEIGHTS), "talker.init (the talker to start from)")
    start = TalkerBundle.from_pretrained(folder)
    differ = [
        f"{k}: {getattr(start.cfg, k)!r} there, {getattr(bundle.cfg, k)!r} here"
        for k in ARCHITECTURE
        if getattr(start.cfg, k) != getattr(bundle.cfg, k)
    ]
    if differ:
        raise SclmdError(
            f"{folder}: talker.init does not fit the talker params ({'; '.join(differ)}). Set those talker "
            "params to its values, or talker.init: null to train from scratch."
        )
    theirs = load_file(str(folder / FACE_AUTOENCODER / "model.safetensors"))
    ours = {f"face_decoder.{k}": v for k, v in face_model.face_decoder.state_dict().items()}
    if any(k not in theirs or not torch.equal(theirs[k], v) for k, v in ours.items()):
        raise SclmdError(
            f"{folder}: talker.init was trained in another face autoencoder's latent space than models/pretrain's "
            "(their decoders differ), so its DAE cannot start this one. Start pretrain from the same first stage "
            "(pretrain.face_init), or set talker.init: null to train from scratch."
        )
    bundle.load_state_dict(start.state_dict())
    return folder
