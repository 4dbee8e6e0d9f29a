"""Stage `baselines`: the four methods SCLDM is compared with, trained on the same data.

Reads params sections `data` and `baselines`, the frozen encoders in `models/pretrain/`,
the prior in `models/prior/` and the prepared data.

- The Speech2Face-style regression and AR-SPM regress the scaled face latent from the frozen
  speech embedding of the training split (see `sclmd.models.baselines`) and are drawn by the
  same pre-trained decoder as SCLDM.  Each keeps the weights of its best val-loss step.
- Wav2Pix and Wen et al. are GANs that draw pixels from the voice with their own networks
  (`sclmd.models.gan_baselines`, trained by `sclmd.train.gan`, resumable from
  `checkpoints/baselines/`).  A diverged or collapsed run is said so (`status` in the metrics).

Writes `models/baselines/` and `reports/baselines/metrics.json` (val loss and step kept, the
GANs' status and sample spread) with loss curves and the GANs' val faces in
`reports/baselines/plots/`.  It does not depend on the LDM, so DVC keeps it when only the
LDM changes.
"""

from __future__ import annotations

import time
from pathlib import Path

from sclmd.config import Params
from sclmd.io import atomic_dir, write_json

PREPARED = Path("data/prepared")
PRETRAINED = Path("models/pretrain")
PRIOR_DIR = Path("models/prior")
BASELINES_DIR = Path("models/baselines")
REPORT_DIR = Path("reports/baselines")
METRICS = REPORT_DIR / "metrics.json"
PLOTS = REPORT_DIR / "plots"
CHECKPOINTS = Path("checkpoints/baselines")
ENCODED = Path("data/encoded")  # the frozen encoders' outputs, written by pretrain
PARAM_SECTIONS = ("data", "baselines")
ARTIFACTS = (METRICS, PLOTS)
CODE = ("models/baselines.py", "models/gan_baselines.py", "train/baselines.py", "train/gan.py", "stages/baselines.py")


def checkpoint_store(params: Params, root: Path, method: str):
    """Checkpoints of one GAN: they resume only under the same params, training code and data."""
    from sclmd.config import section_dict
    from sclmd.train.checkpoints import CheckpointStore, run_key

    package = Path(__file__).resolve().parents[1]
    key = run_key(
        {s: section_dict(params, s) for s in PARAM_SECTIONS} | {"method": method},
        [package / rel for rel in CODE] + [root / PREPARED / "manifest.parquet"],
    )
    return CheckpointStore(root / CHECKPOINTS / method, key, params.baselines.keep_checkpoints)


def train_gans(params: Params, root: Path, log=None) -> tuple[dict, dict, dict]:
    """Wav2Pix and Wen et al. trained: (models, their configs, run summaries)."""
    from sclmd.data.store import PackedClips
    from sclmd.models.gan_baselines import Wav2PixConfig, WenConfig
    from sclmd.train.gan import GanData, Wav2PixLoss, train_wav2pix, train_wen

    cfg, data = params.baselines, params.data
    train = GanData.from_split(PackedClips(root / PREPARED, "train"))
    val = GanData.from_split(PackedClips(root / PREPARED, "val"))
    common = dict(
        ema_decay=cfg.gan_ema_decay,
        resume=cfg.resume,
        checkpoint_every=cfg.checkpoint_every,
        collapse_ratio=cfg.collapse_ratio,
        log_every=cfg.log_every,
    )

    def logger(method):
        return None if log is None else (lambda values, step: log(method, values, step))

    w = cfg.wav2pix
    wav2pix_cfg = Wav2PixConfig.for_size(
        cfg.gan_size, data.image_size, data.sample_rate, train.n_identities, audio_seconds=w.audio_seconds
    )
    loss = Wav2PixLoss(w.feature_matching, w.l1, w.identity, w.real_label)
    started = time.perf_counter()
    wav2pix, wav2pix_run = train_wav2pix(
        wav2pix_cfg,
        train,
        val,
        steps=w.steps,
        batch_size=w.batch_size,
        lr_generator=w.lr_generator,
        lr_discriminator=w.lr_discriminator,
        loss=loss,
        seed=cfg.seed,
        store=checkpoint_store(params, root, "wav2pix"),
        log=logger("wav2pix"),
        **common,
    )
    wav2pix_run.seconds = time.perf_counter() - started
    e = cfg.wen
    started = time.perf_counter()
    wen_cfg = WenConfig.for_size(cfg.gan_size, data.image_size, data.sample_rate, train.n_identities)
    wen, wen_run = train_wen(
        wen_cfg,
        train,
        val,
        embed_steps=e.embed_steps,
        steps=e.steps,
        batch_size=e.batch_size,
        lr=e.lr,
        embed_lr=e.embed_lr,
        seed=cfg.seed,
        store=checkpoint_store(params, root, "wen"),
        log=logger("wen"),
        **common,
    )
    wen_run.seconds = time.perf_counter() - started
    models = {"wav2pix": wav2pix, "wen": wen}
    return models, {m: model.config.to_dict() for m, model in models.items()}, {"wav2pix": wav2pix_run, "wen": wen_run}


def train_all(params: Params, root: Path, log=None):
    """Both baselines trained: (models, config, histories, per-method metrics, train encoding).

    Every process of a several-process run calls this the same way (`follow`), so the initial
    weights (seeded here) and the batches agree.  `log(method, values, step)` reports progress.
    """
    import torch

    from sclmd.data.store import PackedClips
    from sclmd.models.baselines import METHODS, BaselineConfig, build
    from sclmd.models.prior import FacePrior
    from sclmd.train.baselines import baseline_loss, train_regression
    from sclmd.train.ldm import latent_scale, load_encoding

    cfg = params.baselines
    prior = FacePrior.load(root / PRIOR_DIR)
    weights = root / PRETRAINED / "model.safetensors"
    train = load_encoding(root / ENCODED, PackedClips(root / PREPARED, "train"), "train", weights)
    val = load_encoding(root / ENCODED, PackedClips(root / PREPARED, "val"), "val", weights)
    scale = latent_scale(train.latents)
    config = BaselineConfig(
        int(train.speech.shape[1]), tuple(int(d) for d in train.latents.shape[1:]), cfg.hidden, scale
    )
    weights = cfg.ar_spm_loss.model_dump()
    models, history, metrics = {}, {}, {}
    for method in METHODS:
        torch.manual_seed(cfg.seed)  # the initial weights too: nothing earlier in the process may move the RNG
        model = build(method, config, prior.mean * scale)
        result = train_regression(
            model,
            train.speech,
            train.latents * scale,
            baseline_loss(method, weights),
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            desc=f"baselines: {method}",
            val=(val.speech, val.latents * scale),
            log=None if log is None else (lambda values, step, m=method: log(m, values, step)),
        )
        history[f"{method} train"] = result["train"]
        history[f"{method} val"] = result["val"]
        models[method] = model
        metrics[method] = {
            "final_train_loss": result["train"][-1][1],
            "val_loss": result["best_val_loss"],
            "best_step": result["best_step"],
        }
    return models, config, history, metrics, train


def follow(params: Params, root: Path) -> None:
    """A process other than 0 of a several-process run: it joins the training loops, nothing else."""
    train_all(params, root)
    train_gans(params, root)


def run(params: Params, root: Path) -> dict:
    import mlflow

    from sclmd.evaluate.plots import plot_face_grid, plot_loss_curves
    from sclmd.models.baselines import save_baselines

    def log(method: str, values: dict, step: int) -> None:
        mlflow.log_metrics({f"train/{method}_{k}": v for k, v in values.items()}, step=step)

    started = time.perf_counter()
    models, config, history, metrics, train = train_all(params, root, log)
    seconds = {"regressions": time.perf_counter() - started}
    gans, gan_configs, runs = train_gans(params, root, log)
    for method, summary in runs.items():
        metrics[method] = summary.metrics()
        seconds[method] = summary.seconds
        print(
            f"baselines: {method} trained in {summary.seconds:.0f} s ({summary.steps} steps, {summary.status})",
            flush=True,
        )
        if summary.status != "ok":
            print(
                f"baselines: {method} {summary.status.upper()}: {summary.why}. Its evaluation rows are marked as "
                "a failed run.",
                flush=True,
            )
    weights = params.baselines.ar_spm_loss.model_dump()
    save_baselines(
        root / BASELINES_DIR,
        models | gans,
        config,
        {
            "losses": {
                "speech2face": "L1",
                "ar_spm": f"tri-item {weights}",
                "wav2pix": "LSGAN + wrong-face + feature matching + L1 + identity CE",
                "wen": "BCE GAN + identity CE (critic trunk shared)",
            },
            "steps": params.baselines.steps,
            "gan_configs": gan_configs,
            "gan_runs": {m: r.metrics() for m, r in runs.items()},
        },
    )
    with atomic_dir(root / PLOTS) as plots:
        plot_loss_curves(history, plots / "loss_curves.png", "baselines: training and val losses (val picks the step)")
        for method, summary in runs.items():
            plot_loss_curves(
                summary.history, plots / f"{method}_losses.png", f"{method}: training losses ({summary.status})"
            )
        val_faces, titles = gan_val_faces(params, root, gans)
        plot_face_grid(
            val_faces,
            titles,
            ["true face", "Wav2Pix", "Wen et al."],
            plots / "gan_val_faces.png",
            "GAN baselines on val speakers (chosen on nothing; a look at what they draw)",
        )
    metrics |= {"latent_scale": config.latent_scale, "n_train_clips": len(train.speakers)}
    write_json(root / METRICS, metrics)
    # For MLflow only (timings differ run to run; the DVC metrics file stays reproducible).
    return {**metrics, "seconds": seconds}


def gan_val_faces(params: Params, root: Path, gans: dict, n: int = 8):
    """[n, 3, 3, H, W]: true face, Wav2Pix, Wen et al. for n val clips spread over the split."""
    import torch

    from sclmd.data.store import PackedClips
    from sclmd.evaluate.metrics import chosen_rows

    val = PackedClips(root / PREPARED, "val")
    rows = chosen_rows(len(val), n)
    waves = val.audio(rows).float() / 32768.0
    with torch.no_grad():
        grid = torch.stack([val.faces_float(rows), gans["wav2pix"](waves).clamp(-1, 1), gans["wen"](waves)], dim=1)
    labels = [f"{r.speaker_id} {r.gender}" for r in val.rows.iloc[rows].itertuples()]
    return grid, labels
