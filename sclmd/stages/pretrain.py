"""Stage `pretrain`: collaborative contrastive pre-training of the encoders and decoder.

Reads params sections `data` and `pretrain`.  Writes `models/pretrain/` (safetensors
+ config), `reports/pretrain/metrics.json` (trained encoders next to the randomly
initialised control, on test speakers; the speech encoder's gender probe also on the
shipped voices of real speakers, `real_voices/`) and PNGs: loss curves, reconstructions, the
speech-face similarity matrix, trained vs control.  Checkpoints live in
`checkpoints/pretrain/` (outside DVC's outs, which DVC clears before a run), so a
killed run resumes where it stopped.
"""

from __future__ import annotations

import copy
from pathlib import Path

from sclmd.config import Params, section_dict
from sclmd.io import atomic_dir, write_json

PREPARED = Path("data/prepared")
MODEL_DIR = Path("models/pretrain")
ENCODED = Path("data/encoded")  # every split through the trained encoders (for train_ldm, baselines, evaluate)
CHECKPOINTS = Path("checkpoints/pretrain")
REPORT_DIR = Path("reports/pretrain")
METRICS = REPORT_DIR / "metrics.json"
PLOTS = REPORT_DIR / "plots"
PARAM_SECTIONS = ("data", "pretrain")
ARTIFACTS = (METRICS, PLOTS)

# The code a pre-trained model depends on (as dvc.yaml lists it).
CODE = (
    "models/attention.py",
    "models/face_autoencoder.py",
    "models/perceptual.py",
    "models/shipped.py",
    "models/speech_encoder.py",
    "models/speech_face.py",
    "train/autoencoder.py",
    "train/checkpoints.py",
    "train/distributed.py",
    "train/pretrain.py",
    "train/voice_augment.py",
)
# What the trained encoders must beat the control on (higher is better unless listed in LOWER).
HEADLINE = ("recall@1", "recall@5", "recall@10", "gender_accuracy", "age_mae")
LOWER_IS_BETTER = {"age_mae", "recon_mae", "recon_dssim", "recon_lpips-alex", "recon_lpips-vgg"}


def run_key(params: Params, root: Path) -> str:
    """Checkpoints resume only under the same params, training code and data."""
    from sclmd.train.checkpoints import run_key as key

    package = Path(__file__).resolve().parents[1]  # the code that is running
    files = [package / rel for rel in CODE] + [root / PREPARED / "manifest.parquet"]
    if params.pretrain.face_init:  # another first stage is another run
        from sclmd.models.shipped import resolve

        files.append(resolve(params.pretrain.face_init, root) / "model.safetensors")
    return key({s: section_dict(params, s) for s in PARAM_SECTIONS}, files)


def checkpoint_store(params: Params, root: Path):
    from sclmd.train.checkpoints import CheckpointStore

    return CheckpointStore(root / CHECKPOINTS, run_key(params, root), params.pretrain.keep_checkpoints)


def follow(params: Params, root: Path) -> None:
    """A process other than 0 of a several-process run: it joins the training loop, nothing else."""
    from sclmd.models.perceptual import make_perceptual
    from sclmd.train.pretrain import train

    cfg = params.pretrain
    train(
        cfg,
        params.data,
        root / PREPARED,
        checkpoint_store(params, root),
        perceptual=make_perceptual(cfg.perceptual, cfg.lpips_net, cfg.lpips_missing),
    )


def shipped_real_voices(params: Params, root: Path):
    """The project's labelled real-speaker voices (reporting only, never trained on); None if absent."""
    from sclmd.evaluate.real_voices import SHIPPED, load_voices

    if not (root / SHIPPED / "labels.csv").is_file():
        return None
    return load_voices(root / SHIPPED, params.data.sample_rate, params.data.clip_seconds)


def save_encodings(root: Path, model, embedded: dict, batch_size: int) -> None:
    """`data/encoded/`: the trained encoders' speech embeddings, face latents and face embeddings of
    every split. Train and test come from the scoring pass that just ran; val is encoded here."""
    import torch

    from sclmd.data.store import PackedClips
    from sclmd.train.ldm import Encoded, encode_split
    from sclmd.train.ldm import save_encodings as save

    encodings = {
        split: Encoded(
            torch.from_numpy(e.speech),
            torch.from_numpy(e.latents),
            e.rows["speaker_id"].to_numpy(),
            torch.from_numpy(e.face),
        )
        for split, e in embedded.items()
    }
    with torch.no_grad():
        encodings["val"] = encode_split(
            model, PackedClips(root / PREPARED, "val"), batch_size, "pretrain: encoding val"
        )
    save(root / ENCODED, encodings, root / MODEL_DIR / "model.safetensors")


def run(params: Params, root: Path) -> dict:
    import mlflow

    from sclmd.evaluate.encoders import score
    from sclmd.evaluate.plots import (
        plot_loss_curves,
        plot_metric_comparison,
        plot_reconstructions,
        plot_similarity_matrix,
    )
    from sclmd.models.perceptual import make_perceptual
    from sclmd.train.pretrain import build_model, describe_speed, train

    cfg = params.pretrain
    store = checkpoint_store(params, root)
    perceptual = make_perceptual(cfg.perceptual, cfg.lpips_net, cfg.lpips_missing)
    mlflow.set_tags({f"sclmd.{k}": str(v) for k, v in perceptual.describe().items()})

    voices = shipped_real_voices(params, root)
    control_model = build_model(cfg, params.data, root)
    control, _ = score(control_model, root / PREPARED, perceptual, cfg.eval_batch_size, real_voices=voices)

    def log(values: dict, step: int) -> None:
        mlflow.log_metrics({f"train/{k}": v for k, v in values.items()}, step=step)

    result = train(
        cfg,
        params.data,
        root / PREPARED,
        store,
        log=log,
        initial_model=copy.deepcopy(control_model),
        perceptual=perceptual,
    )
    trained, artefacts = score(result.model, root / PREPARED, perceptual.cpu(), cfg.eval_batch_size, real_voices=voices)
    print(f"pretrain: {describe_speed(result)}")

    beats = {
        k: (trained[k] < control[k]) if k in LOWER_IS_BETTER else (trained[k] > control[k])
        for k in HEADLINE
        if k in trained and k in control
    }
    metrics = {
        "trained": trained,
        "control": control,
        "beats_control": {k: int(v) for k, v in beats.items()},
        "steps": result.steps,
        "perceptual": perceptual.describe(),
    }
    result.model.save_pretrained(
        root / MODEL_DIR, extra={"params": section_dict(params, "pretrain"), "perceptual": perceptual.describe()}
    )
    with atomic_dir(root / PLOTS) as plots:
        plot_loss_curves(
            {k: v for k, v in result.history.items() if k.startswith("loss")},
            plots / "loss_curves.png",
            "pre-training losses",
        )
        plot_reconstructions(*artefacts["examples"], plots / "reconstructions.png")
        plot_similarity_matrix(
            artefacts["similarity"],
            artefacts["speakers"],
            plots / "similarity.png",
            "test speakers: speech (rows) vs face (columns), cosine",
        )
        plot_metric_comparison(
            {"trained": {k: trained[k] for k in HEADLINE}, "control": {k: control[k] for k in HEADLINE}},
            plots / "trained_vs_control.png",
            "pre-trained encoders vs random init (test speakers)",
        )
    save_encodings(root, result.model, artefacts["embedded"], cfg.eval_batch_size)
    write_json(root / METRICS, metrics)
    store.clear()  # finished: checkpoints exist to survive a crash, not to skip the next run
    # For MLflow only (timings differ run to run; the DVC metrics file stays reproducible).
    return {
        **metrics,
        "speed": {
            "samples_per_s": result.samples_per_s,
            "steps_per_s": result.steps_per_s,
            "data_wait_share": result.data_wait_share,
            "resumed_from": result.resumed_from,
            "processes": result.processes,
        },
    }
