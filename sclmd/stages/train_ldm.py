"""Stage `train_ldm`: the speech-conditioned latent diffusion model with prior normalisation.

Reads params sections `data` and `ldm`, the frozen encoders in `models/pretrain/`, the
prior in `models/prior/` and the prepared data.  Writes `models/ldm/` (a complete
`SpeechToFacePipeline`: UNet, scheduler, speech projection, encoders, prior, config),
`reports/ldm/metrics.json` and PNGs in `reports/ldm/plots/`: the loss curve and, every
`sample_every` steps, a grid of fixed validation speakers (true face, then generated
faces).  Checkpoints live in `checkpoints/ldm/` so that a killed run resumes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sclmd.config import Params, section_dict
from sclmd.io import atomic_file, write_json

PREPARED = Path("data/prepared")
PRETRAINED = Path("models/pretrain")
PRIOR_DIR = Path("models/prior")
MODEL_DIR = Path("models/ldm")
CHECKPOINTS = Path("checkpoints/ldm")
REPORT_DIR = Path("reports/ldm")
METRICS = REPORT_DIR / "metrics.json"
PLOTS = REPORT_DIR / "plots"
PARAM_SECTIONS = ("data", "ldm")
GENDER_CHECK_SPEAKERS = 64
CODE = ("models/ldm.py", "models/pipeline.py", "train/checkpoints.py", "train/ldm.py", "train/pretrain.py")
ARTIFACTS = (METRICS, PLOTS)


def run_key(params: Params, root: Path) -> str:
    """Checkpoints resume only under the same params, code, data, encoders and prior."""
    from sclmd.train.checkpoints import run_key as key

    package = Path(__file__).resolve().parents[1]
    inputs = (PREPARED / "manifest.parquet", PRETRAINED / "model.safetensors", PRIOR_DIR / "prior.safetensors")
    return key({s: section_dict(params, s) for s in PARAM_SECTIONS},
               [package / rel for rel in CODE] + [root / path for path in inputs])


def sample_rows(rows, count: int) -> np.ndarray:
    """Row positions of one clip for each of `count` speakers, alternating female/male where possible."""
    from sclmd.evaluate.encoders import first_per_speaker

    firsts = first_per_speaker(rows)
    genders = rows.reset_index(drop=True)["gender"].astype(str).str[:1].str.lower().to_numpy()[firsts]
    female, male = list(firsts[genders == "f"]), list(firsts[genders == "m"])
    other = list(firsts[(genders != "f") & (genders != "m")])
    chosen: list[int] = []
    while len(chosen) < count and (female or male or other):
        for pool in (female, male, other):
            if pool and len(chosen) < count:
                chosen.append(int(pool.pop(0)))
    return np.array(chosen, dtype=np.int64)


def validation_loss(net, encoded, config, prior, params, seed: int = 1234) -> float:
    """Mean epsilon MSE on the val split at fixed noise and timesteps (comparable run to run)."""
    import torch
    import torch.nn.functional as F

    from sclmd.models.ldm import training_input
    from sclmd.train.ldm import make_train_scheduler

    scheduler = make_train_scheduler(params)
    g = torch.Generator().manual_seed(seed)
    z0 = encoded.latents * config.latent_scale
    noise = torch.randn(z0.shape, generator=g)
    t = torch.randint(0, params.num_train_timesteps, (len(z0),), generator=g)
    noisy = scheduler.add_noise(z0, noise, t)
    losses = []
    with torch.no_grad():
        net.eval()
        for start in range(0, len(z0), 256):
            part = slice(start, start + 256)
            eps = net(training_input(noisy[part], prior * config.latent_scale, params.prior_weight), t[part],
                      encoded.speech[part])
            losses.append(F.mse_loss(eps, noise[part], reduction="sum").item())
    return float(sum(losses) / noise.numel())


def gender_check(generate, ema_net, encoders, train, train_rows, val, val_rows,
                 count: int = GENDER_CHECK_SPEAKERS) -> dict:
    """Do generated faces follow the speaker's gender?  A quick look, not the evaluation stage.

    A logistic probe on the pre-trained face encoder's embedding, fit on real training
    faces, judges one generated face for each of `count` val speakers (first clip each),
    and the same speakers' real faces (the judge's own ceiling).
    """
    import torch

    from sclmd.evaluate.embeddings import probe_gender

    rows = sample_rows(val_rows, count)
    genders = val_rows.reset_index(drop=True)["gender"].to_numpy()[rows]
    with torch.no_grad():
        _, generated = encoders.face_encoder(generate(ema_net, val.speech[rows], 1))
    train_genders = train_rows["gender"].to_numpy()
    fake = probe_gender(train.face_emb.numpy(), train_genders, generated.numpy(), genders)
    real = probe_gender(train.face_emb.numpy(), train_genders, val.face_emb[rows].numpy(), genders)
    return {"generated_gender_accuracy": fake["gender_accuracy"], "real_gender_accuracy": real["gender_accuracy"],
            "gender_check_speakers": len(rows)}


def run(params: Params, root: Path) -> dict:
    import mlflow
    import torch

    from sclmd.data.store import PackedClips
    from sclmd.evaluate.plots import plot_face_grid, plot_loss_curves
    from sclmd.models.pipeline import SamplingDefaults, SpeechToFacePipeline
    from sclmd.models.prior import FacePrior
    from sclmd.models.speech_face import SpeechFaceModel
    from sclmd.train.checkpoints import CheckpointStore
    from sclmd.train.ldm import encode_split, ldm_config, make_train_scheduler, train_ldm

    cfg = params.ldm
    encoders = SpeechFaceModel.from_pretrained(root / PRETRAINED)
    prior = FacePrior.load(root / PRIOR_DIR)
    train_set = PackedClips(root / PREPARED, "train")
    train = encode_split(encoders, train_set, 128, "train_ldm: encoding train")
    val_set = PackedClips(root / PREPARED, "val")
    val = encode_split(encoders, val_set, 128, "train_ldm: encoding val")
    config = ldm_config(cfg, train)
    defaults = SamplingDefaults(cfg.sampler, cfg.sample_steps, cfg.guidance, cfg.prior_weight)
    shapes = {"sample_rate": params.data.sample_rate, "clip_seconds": params.data.clip_seconds,
              "image_size": params.data.image_size}

    shown = sample_rows(val_set.rows, cfg.sample_speakers)
    shown_rows = val_set.rows.reset_index(drop=True).iloc[shown]
    true_faces = val_set.__getitems__(list(shown)).face_float()
    labels = [f"{r.speaker_id} {r.gender} {r.age}" for r in shown_rows.itertuples()]
    plots = root / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("samples_step-*.png"):
        old.unlink()

    def pipeline_of(ema_net) -> SpeechToFacePipeline:
        """The EMA network as the pipeline `sclmd generate` will load, so samples here are drawn the same way."""
        return SpeechToFacePipeline(config, ema_net.unet, ema_net.condition, encoders, prior,
                                    make_train_scheduler(cfg).config, defaults, shapes)

    def generate(ema_net, speech_emb, samples: int):
        return pipeline_of(ema_net)(speech_emb, seed=cfg.seed, samples=samples)

    def sample(ema_net, step: int) -> None:
        k = cfg.samples_per_speaker
        faces = generate(ema_net, val.speech[shown], k)
        grid = torch.cat([true_faces[:, None], faces.view(len(shown), k, *faces.shape[1:])], dim=1)
        path = plots / f"samples_step-{step:07d}.png"
        plot_face_grid(grid, labels, ["true face"] + [f"sample {i + 1}" for i in range(k)], path,
                       f"validation speakers, step {step} ({cfg.sampler}-{cfg.sample_steps}, guidance {cfg.guidance})")
        if mlflow.active_run():
            mlflow.log_artifact(str(path), artifact_path="samples")

    def log(values: dict, step: int) -> None:
        mlflow.log_metrics({f"train/{k}": v for k, v in values.items()}, step=step)

    store = CheckpointStore(root / CHECKPOINTS, run_key(params, root), cfg.keep_checkpoints)
    result = train_ldm(cfg, config, train, prior.mean, store, log=log, sample=sample)
    val_loss = validation_loss(result.state.ema, val, config, prior.mean, cfg)
    gender = gender_check(generate, result.state.ema, encoders, train, train_set.rows, val, val_set.rows)
    pipeline_of(result.state.ema).save_pretrained(root / MODEL_DIR, root / PRETRAINED, root / PRIOR_DIR)
    plot_loss_curves({"loss": result.history["loss"]}, plots / "loss_curves.png", "LDM epsilon-prediction loss")
    final = plots / f"samples_step-{result.steps:07d}.png"
    if final.exists():
        with atomic_file(plots / "samples.png") as tmp:  # a stable name for the newest grid
            tmp.write_bytes(final.read_bytes())
    metrics = {
        "steps": result.steps,
        "final_loss": result.history["loss"][-1][1],
        "val_loss": val_loss,
        **gender,
        "latent_scale": config.latent_scale,
        "prior_weight": cfg.prior_weight,
        "n_train_clips": len(train.speakers),
        "n_train_speakers": int(len(np.unique(train.speakers))),
    }
    write_json(root / METRICS, metrics)
    store.clear()
    return {**metrics, "speed": {"steps_per_s": result.steps_per_s, "samples_per_s": result.samples_per_s,
                                 "data_wait_share": result.data_wait_share, "resumed_from": result.resumed_from}}
