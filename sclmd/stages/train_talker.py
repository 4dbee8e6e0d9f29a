"""Stage `train_talker`: the talking face's diffusion autoencoder, speech2latent and regression reference.

Reads `data` and `talker`; needs synth_video's clips and pretrain's face autoencoder (the
DAE works in its latent space). Writes `models/talker/` (one folder `sclmd talk` loads),
training curves and a val reconstruction grid under `reports/talker_train/`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from sclmd.config import Params, section_dict
from sclmd.data.video import video_info
from sclmd.io import write_json
from sclmd.models.speech_face import SpeechFaceModel
from sclmd.models.talker import TalkerBundle
from sclmd.train.checkpoints import CheckpointStore, run_key
from sclmd.train.talker import (
    encode_frames,
    fit_pose_drift,
    has_clips,
    load_clips,
    semantic_codes,
    set_code_statistics,
    start_from_talker,
    talker_config,
    train_dae,
    train_regressor,
    train_speech2latent,
)

VIDEO_DIR = Path("data/talker/videos")
PRETRAIN_DIR = Path("models/pretrain")
OUT_DIR = Path("models/talker")
CHECKPOINTS = Path("checkpoints/talker")
REPORT_DIR = Path("reports/talker_train")
CURVES = REPORT_DIR / "losses.png"
RECONSTRUCTIONS = REPORT_DIR / "val_reconstructions.png"
METRICS = REPORT_DIR / "metrics.json"
PARAM_SECTIONS = ("data", "talker")
ARTIFACTS = (CURVES, RECONSTRUCTIONS, METRICS)


def _log(metrics: dict, step: int) -> None:
    import mlflow

    if mlflow.active_run():
        mlflow.log_metrics(metrics, step=step)


def _curves(dae, s2l, reg, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (title, rows, labels) in zip(
        axes,
        [
            ("diffusion autoencoder (v-loss, EMA of batches)", dae, ["loss"]),
            ("speech2latent", s2l, ["motion MSE (z / motion_std)", "pose MSE (deg / 10)"]),
            ("regression reference", reg, ["latent MSE"]),
        ],
    ):
        if rows:
            arr = np.array(rows, dtype=float)
            for k, label in enumerate(labels):
                ax.plot(arr[:, 0], arr[:, k + 1], label=label)
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


@torch.no_grad()
def _reconstructions(bundle, face, clips, latents, png: Path, n: int = 6) -> dict[str, float]:
    """Val frames: reference | target | autoencoder | DAE given z(target vs reference), decoded from the reference's
    inverted code and from the shared Gaussian code `sclmd talk` uses; returns each DAE column's mean absolute
    pixel error against the autoencoder's reconstruction (what the DAE can reach)."""
    from sclmd.evaluate.plots import plot_face_grid
    from sclmd.models.talker import stochastic_code

    rows = min(n, len(clips))
    t_target, t_ref = latents.shape[1] // 2, 0
    target, ref = latents[:rows, t_target], latents[:rows, t_ref]
    z = bundle.dae.motion(target, ref)
    decoded = {
        code: face.face_decoder(bundle.dae.decode(stochastic_code(bundle, ref, code), ref, z))
        for code in ("inversion", "noise")
    }
    auto = face.face_decoder(target)
    real = clips.frames[:rows, t_target].permute(0, 3, 1, 2).float() / 127.5 - 1
    reference = clips.frames[:rows, t_ref].permute(0, 3, 1, 2).float() / 127.5 - 1
    grid = torch.stack([reference, real, auto, decoded["inversion"], decoded["noise"]], dim=1).clamp(-1, 1)
    plot_face_grid(
        grid,
        clips.speakers[:rows],
        ["reference frame", "target frame", "autoencoder", "DAE, inverted code", "DAE, Gaussian code"],
        png,
    )
    return {code: float((x - auto).abs().mean()) for code, x in decoded.items()}


def run(params: Params, root: Path) -> dict:
    started = time.perf_counter()
    p = params.talker
    torch.manual_seed(p.seed)
    video_dir = root / VIDEO_DIR
    train = load_clips(video_dir, "train")
    val = load_clips(video_dir, "val") if has_clips(video_dir, "val") else None
    face = SpeechFaceModel.from_pretrained(root / PRETRAIN_DIR).eval().requires_grad_(False)
    train_latents = encode_frames(face.face_encoder, train.frames)
    fps = round(video_info(video_dir / "train" / f"{train.speakers[0]}.mp4")["fps"])
    cfg = talker_config(p, params.data, tuple(train_latents.shape[2:]), fps)
    bundle = TalkerBundle(cfg)
    files = [root / PRETRAIN_DIR / "model.safetensors", video_dir / "manifest.csv"]
    if p.init:  # fine-tune the release talker (another starting talker is another run for the checkpoints)
        started_from = start_from_talker(bundle, p.init, root, face)
        files.append(started_from / "model.safetensors")
    store = CheckpointStore(root / CHECKPOINTS, run_key(section_dict(params, "talker"), files), p.keep_checkpoints)
    t0 = time.perf_counter()
    dae_history = train_dae(
        bundle,
        train_latents,
        steps=p.dae_steps,
        batch_size=p.dae_batch_size,
        lr=p.dae_lr,
        warmup=p.warmup_steps,
        ema_decay=p.ema_decay,
        seed=p.seed,
        store=store,
        resume=p.resume,
        checkpoint_every=p.checkpoint_every,
        log=_log,
    )
    dae_seconds = time.perf_counter() - t0
    codes = semantic_codes(bundle, train_latents)
    set_code_statistics(bundle, codes)
    val_pair = None
    if val is not None:
        val_latents = encode_frames(face.face_encoder, val.frames, desc="encode val frames")
        val_pair = (val, semantic_codes(bundle, val_latents))
    s2l = train_speech2latent(
        bundle,
        train,
        codes,
        steps=p.speech2latent_steps,
        batch_size=p.speech2latent_batch_size,
        lr=p.speech2latent_lr,
        warmup=p.warmup_steps,
        seed=p.seed,
        crop_seconds=p.speech2latent_crop_seconds,
        val=val_pair,
        log=_log,
    )
    drift = fit_pose_drift(bundle, train)  # what the pose head cannot predict, sampled at generation
    reg_history = train_regressor(
        bundle,
        train,
        train_latents,
        steps=p.regressor_steps,
        batch_size=p.regressor_batch_size,
        lr=p.regressor_lr,
        warmup=p.warmup_steps,
        seed=p.seed,
        log=_log,
    )
    bundle.save_pretrained(root / OUT_DIR, root / PRETRAIN_DIR, {"trained_on_clips": len(train)})
    store.clear()  # the saved model supersedes the checkpoints
    _curves(dae_history, s2l["history"], reg_history, root / CURVES)
    metrics = {
        "train_clips": len(train),
        "train_frames": int(train.frames.shape[0] * train.frames.shape[1]),
        "dae_final_loss": round(dae_history[-1][1], 5) if dae_history else None,
        "regressor_final_loss": round(reg_history[-1][1], 5) if reg_history else None,
        "pose_drift": drift,
        "started_from": p.init,
    }
    if val is not None:
        shown = encode_frames(face.face_encoder, val.frames[:6])
        errors = _reconstructions(bundle, face, val, shown, root / RECONSTRUCTIONS)
        metrics["val_dae_vs_autoencoder_l1"] = round(errors["inversion"], 4)
        metrics["val_dae_gaussian_code_vs_autoencoder_l1"] = round(errors["noise"], 4)
        metrics["val_speech2latent_mse"] = round(s2l["val_latent_mse"], 4)
        metrics["val_speech2latent_mse_still_face"] = round(s2l["val_latent_mse_still_face"], 4)
        metrics["val_speech2latent_explained"] = round(s2l["val_latent_explained"], 4)
        metrics["val_speech2latent_mse_true_pose"] = round(s2l["val_latent_mse_true_pose"], 4)
        metrics["val_pose_mae_deg"] = round(s2l["val_pose_mae_deg"], 3)
    write_json(root / METRICS, metrics)
    return {**metrics, "dae_seconds": round(dae_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}
