"""Stage `baselines`: the Speech2Face-style regression and AR-SPM, trained on the same data.

Reads params sections `data` and `baselines`, the frozen encoders in `models/pretrain/`,
the prior in `models/prior/` and the prepared data.  Both baselines regress the scaled
face latent from the frozen speech embedding of the training split (see
`sclmd.models.baselines`) and are drawn by the same pre-trained decoder as SCLDM.
Each keeps the weights of its best val-loss step (early stopping on the val split).
Writes `models/baselines/` and `reports/baselines/metrics.json` (val loss and step kept).  It does not depend on the LDM, so DVC keeps it when only
the LDM changes.
"""

from __future__ import annotations

from pathlib import Path

from sclmd.config import Params
from sclmd.io import write_json

PREPARED = Path("data/prepared")
PRETRAINED = Path("models/pretrain")
PRIOR_DIR = Path("models/prior")
BASELINES_DIR = Path("models/baselines")
REPORT_DIR = Path("reports/baselines")
METRICS = REPORT_DIR / "metrics.json"
PLOTS = REPORT_DIR / "plots"
PARAM_SECTIONS = ("data", "baselines")
ARTIFACTS = (METRICS, PLOTS)


def train_all(params: Params, root: Path, log=None):
    """Both baselines trained: (models, config, histories, per-method metrics, train encoding).

    Every process of a several-process run calls this the same way (`follow`), so the initial
    weights (seeded here) and the batches agree.  `log(method, values, step)` reports progress.
    """
    import torch

    from sclmd.data.store import PackedClips
    from sclmd.models.baselines import METHODS, BaselineConfig, build
    from sclmd.models.prior import FacePrior
    from sclmd.models.speech_face import SpeechFaceModel
    from sclmd.train.baselines import baseline_loss, train_regression
    from sclmd.train.ldm import encode_split, latent_scale

    cfg = params.baselines
    encoders = SpeechFaceModel.from_pretrained(root / PRETRAINED)
    prior = FacePrior.load(root / PRIOR_DIR)
    train = encode_split(encoders, PackedClips(root / PREPARED, "train"), 128, "baselines: encoding train")
    val = encode_split(encoders, PackedClips(root / PREPARED, "val"), 128, "baselines: encoding val")
    scale = latent_scale(train.latents)
    config = BaselineConfig(int(train.speech.shape[1]), tuple(int(d) for d in train.latents.shape[1:]), cfg.hidden,
                            scale)
    weights = cfg.ar_spm_loss.model_dump()
    models, history, metrics = {}, {}, {}
    for method in METHODS:
        torch.manual_seed(cfg.seed)  # the initial weights too: nothing earlier in the process may move the RNG
        model = build(method, config, prior.mean * scale)
        result = train_regression(model, train.speech, train.latents * scale, baseline_loss(method, weights),
                                  steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  seed=cfg.seed, desc=f"baselines: {method}", val=(val.speech, val.latents * scale),
                                  log=None if log is None else (lambda values, step, m=method: log(m, values, step)))
        history[f"{method} train"] = result["train"]
        history[f"{method} val"] = result["val"]
        models[method] = model
        metrics[method] = {"final_train_loss": result["train"][-1][1], "val_loss": result["best_val_loss"],
                           "best_step": result["best_step"]}
    return models, config, history, metrics, train


def follow(params: Params, root: Path) -> None:
    """A process other than 0 of a several-process run: it joins the training loops, nothing else."""
    train_all(params, root)


def run(params: Params, root: Path) -> dict:
    import mlflow

    from sclmd.evaluate.plots import plot_loss_curves
    from sclmd.models.baselines import save_baselines

    def log(method: str, values: dict, step: int) -> None:
        mlflow.log_metrics({f"train/{method}_{k}": v for k, v in values.items()}, step=step)

    models, config, history, metrics, train = train_all(params, root, log)
    weights = params.baselines.ar_spm_loss.model_dump()
    save_baselines(root / BASELINES_DIR, models, config,
                   {"losses": {"speech2face": "L1", "ar_spm": f"tri-item {weights}"}, "steps": params.baselines.steps})
    (root / PLOTS).mkdir(parents=True, exist_ok=True)
    plot_loss_curves(history, root / PLOTS / "loss_curves.png", "baselines: training and val losses (val picks the step)")
    metrics |= {"latent_scale": config.latent_scale, "n_train_clips": len(train.speakers)}
    write_json(root / METRICS, metrics)
    return metrics
