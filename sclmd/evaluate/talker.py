"""Measuring a talking face: the mouth-and-pose probe, lip sync, identity drift, and pictures of it.

The probe is the instrument: a small CNN trained on real VoxSynth frames (and on the face
autoencoder's reconstructions of them, since every generated frame passes through that
decoder) to read the mouth opening and the head pose. Lip sync is then the correlation,
over one clip's frames, between the opening the probe reads off the generated frames and
the opening the voice's phones really had. A still face reads as a constant: 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sclmd.models.inference import run_in_chunks
from sclmd.models.talker import POSE_SCALE, MotionProbe

PROBE_TARGETS = ("opening", "yaw", "pitch", "roll")


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (sigma [B] in px; 0 leaves the image as it is)."""
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(-1, keepdim=True)  # [B, 7]
    b, c, h, w = images.shape
    flat = images.reshape(1, b * c, h, w)
    kx = kernel.repeat_interleave(c, 0)[:, None, None, :]
    ky = kernel.repeat_interleave(c, 0)[:, None, :, None]
    out = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kx, groups=b * c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), ky, groups=b * c)
    return out.reshape(b, c, h, w)


def probe_targets(tracks: dict[str, torch.Tensor]) -> torch.Tensor:
    """[..., 4]: opening (0..1) and yaw, pitch, roll in degrees / POSE_SCALE."""
    return torch.stack(
        [tracks["opening"], tracks["yaw"] / POSE_SCALE, tracks["pitch"] / POSE_SCALE, tracks["roll"] / POSE_SCALE],
        dim=-1,
    )


def train_probe(
    images: torch.Tensor, targets: torch.Tensor, *, steps: int, batch_size: int, lr: float, max_blur: float, seed: int
) -> MotionProbe:
    """images float [N, 3, H, W] in [-1, 1], targets [N, 4] -> a trained probe (eval mode)."""
    torch.manual_seed(seed)
    probe = MotionProbe().train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed + 11)
    bar = tqdm(range(steps), desc="motion probe", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        rows = torch.randint(0, len(images), (batch_size,), generator=generator)
        x = images[rows]
        if max_blur > 0:
            x = _blur(x, torch.rand(batch_size, generator=generator) * max_blur)
        # Brightness and colour vary between the decoder's frames and real ones: do not let the probe rely on them.
        x = x * (1 + 0.15 * torch.randn(batch_size, 3, 1, 1, generator=generator)) + 0.1 * torch.randn(
            batch_size, 1, 1, 1, generator=generator
        )
        # channels-last: oneDNN's faster layout for these convolutions on the CPU (sclmd/models/inference.py)
        loss = F.smooth_l1_loss(probe(x.contiguous(memory_format=torch.channels_last)), targets[rows], beta=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return probe.eval()


def fit_probe(
    talker, video_dir: Path, *, steps: int, batch_size: int, lr: float, max_blur: float, seed: int, n_frames: int = 6000
) -> MotionProbe:
    """The probe every talking-face measurement reads with: about `n_frames` real frames of the training
    speakers' clips and the face autoencoder's reconstructions of the same frames, with their true tracks."""
    from sclmd.train.talker import encode_frames, load_clips, to_unit

    train = load_clips(video_dir, "train")
    every = max(1, (len(train) * train.frames.shape[1]) // n_frames)  # ~6,000 frames are plenty for 4 numbers
    frames = train.frames.flatten(0, 1)[::every]
    targets = probe_targets({k: v.flatten(0, 1)[::every] for k, v in train.tracks.items()})
    real = to_unit(frames)
    with torch.no_grad():
        recon = talker.decode_latents(encode_frames(talker.face.face_encoder, frames[None])[0])
    return train_probe(
        torch.cat([real, recon]),
        torch.cat([targets, targets]),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_blur=max_blur,
        seed=seed,
    )


@torch.no_grad()
def probe_read(probe: MotionProbe, images: torch.Tensor) -> np.ndarray:
    """[N, 4]: opening, then yaw, pitch, roll in degrees."""
    out = run_in_chunks(probe, images).numpy()
    out[:, 1:] *= POSE_SCALE
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; 0 where either side does not vary (a still face has no lip sync, not an undefined one)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def identity_drift(features: np.ndarray) -> float:
    """Mean cosine distance of a clip's frames' identity features [T, D] (unit) to its first frame's."""
    return float(np.mean(np.clip(1.0 - features[1:] @ features[0], 0.0, None))) if len(features) > 1 else 0.0


def distance_to_face(features: np.ndarray, face: np.ndarray) -> float:
    """Mean cosine distance of a clip's frames' identity features [T, D] (unit) to the animated face's [D] (unit):
    whether the clip shows the person it was given, where `identity_drift` only asks whether it stays one person."""
    return float(np.mean(np.clip(1.0 - features @ face, 0.0, None)))


def between_speakers(clip_means: np.ndarray) -> float:
    """Mean cosine distance between the mean identity features of different clips' speakers."""
    unit = clip_means / np.linalg.norm(clip_means, axis=1, keepdims=True)
    sims = unit @ unit.T
    off = ~np.eye(len(unit), dtype=bool)
    return float(np.mean(1.0 - sims[off]))


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def side_by_side(columns: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """Clips uint8 [T, H, W, 3] of equal length, placed left to right and enlarged `scale` x."""
    joined = np.concatenate(columns, axis=2)
    return joined.repeat(scale, axis=1).repeat(scale, axis=2)


def frame_strip(
    rows: dict[str, np.ndarray],
    truth: np.ndarray,
    readings: dict[str, np.ndarray],
    png: Path,
    n_frames: int,
    span: int,
    title: str,
) -> None:
    """Rows of frames (uint8 [T, H, W, 3] per method) over the first `span` frames, with the true mouth
    opening and what the probe read off each row drawn underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = min(span, len(truth))
    idx = np.linspace(0, span - 1, n_frames).astype(int)
    fig, axes = plt.subplots(
        len(rows) + 1,
        1,
        figsize=(n_frames * 0.95, 1.05 * len(rows) + 2.0),
        gridspec_kw={"height_ratios": [1] * len(rows) + [1.6]},
    )
    for ax, (name, frames) in zip(axes, rows.items()):
        ax.imshow(np.concatenate(list(frames[idx]), axis=1))
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    ax = axes[-1]
    ax.plot(truth[:span], color="k", lw=2, label="true opening (phones)")
    for name, reading in readings.items():
        ax.plot(reading[:span], lw=1, label=f"probe on {name}")
    ax.plot(idx, truth[idx], "o", color="k", ms=3)
    ax.set_xlim(-0.5, span - 0.5)
    ax.set_xlabel("frame (25 fps)", fontsize=8)
    ax.set_ylabel("mouth\nopening", rotation=0, ha="right", va="center", fontsize=8)
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    axes[0].set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def metric_bars(table: dict[str, dict], png: Path) -> None:
    """Lip sync, identity drift and Fréchet distance per method, with intervals where there are any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (key, label) in zip(
        axes,
        [
            ("lipsync", "lip sync r (higher is better)"),
            ("identity_drift", "identity drift (lower is better)"),
            ("frechet", "Fréchet vs real frames (lower is better)"),
        ],
    ):
        values = [table[n].get(key, np.nan) for n in names]
        ax.bar(range(len(names)), values, color="tab:blue")
        for i, n in enumerate(names):
            ci = table[n].get(f"{key}_ci")
            if ci and all(np.isfinite(ci)):
                ax.plot([i, i], ci, color="k", lw=1.5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=25, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
