"""Stage `first_stage` (run by `sclmd release`, not by `make run`): the face autoencoder trained long.

Reads params sections `data`, `synth` (the renderer's framing and supersampling) and
`first_stage`. Renders its own faces (`sclmd/data/voxsynth/face_bank.py`: train, val and test
identities that no pipeline split holds), trains (`sclmd/train/first_stage.py`) and every
`evaluate_every` steps measures the val faces' reconstructions: MAE, DSSIM and the classifier
two-sample test (C2ST; 0.5 = indistinguishable from the real faces), with a grid, all logged to
MLflow against the step, so quality can be watched against hours. The checkpoint with the best
val C2ST is kept apart and is what the stage ships (chosen on val); the model card's numbers
are measured once, on the test identities.

Writes `models/first_stage/` (model.safetensors: `encoder.*` and `decoder.*`; config.json: the
face config, params, steps, seconds, val and test metrics, data hashes) and
`reports/first_stage/` (metrics.json, curves.png, reconstructions.png, progress/ grids).
"""

from __future__ import annotations

import json
from pathlib import Path

from sclmd.config import Params, section_dict
from sclmd.io import atomic_dir, write_json

BANKS = Path("data/first_stage")
MODEL_DIR = Path("models/first_stage")
CHECKPOINTS = Path("checkpoints/first_stage")
BEST = Path("checkpoints/first_stage_best")  # the best val checkpoint so far (survives a resume)
REPORT_DIR = Path("reports/first_stage")
METRICS = REPORT_DIR / "metrics.json"
PARAM_SECTIONS = ("data", "synth", "first_stage")
ARTIFACTS = (METRICS, REPORT_DIR / "curves.png", REPORT_DIR / "reconstructions.png")
CODE = (
    "data/voxsynth/face.py",
    "data/voxsynth/face_bank.py",
    "models/face_autoencoder.py",
    "models/perceptual.py",
    "train/autoencoder.py",
    "train/checkpoints.py",
    "train/first_stage.py",
)
GRID_FACES = 8


def banks(params: Params, root: Path) -> dict:
    from sclmd.data.voxsynth.face_bank import load_bank

    cfg, synth = params.first_stage, params.synth
    counts = {
        "train": (cfg.train_speakers, cfg.faces_per_speaker),
        "val": (cfg.val_speakers, 2),
        "test": (cfg.test_speakers, 2),
    }
    return {
        split: load_bank(
            root / BANKS,
            split,
            n,
            k,
            cfg.data_seed,
            params.data.image_size,
            synth.supersample,
            synth.face_framing,
            synth.workers,
        )
        for split, (n, k) in counts.items()
    }


def run_key(params: Params) -> str:
    from sclmd.train.checkpoints import run_key as key

    package = Path(__file__).resolve().parents[1]
    return key(
        {s: section_dict(params, s) for s in PARAM_SECTIONS if s != "first_stage"}
        | {"first_stage": _trained_params(params)},
        [package / rel for rel in CODE],
    )


def _trained_params(params: Params) -> dict:
    """first_stage params that shape the weights: max_steps, how often to evaluate, checkpoint or log do
    not, so a run can be lengthened (or watched more closely) and still resume."""
    out = section_dict(params, "first_stage")
    for k in (
        "max_steps",
        "evaluate_every",
        "evaluate_faces",
        "checkpoint_every",
        "keep_checkpoints",
        "resume",
        "log_every",
    ):
        out.pop(k)
    return out


def reconstruct(encoder, decoder, faces, batch_size: int = 128):
    """Float faces [N, 3, H, W] in [-1, 1] -> their reconstructions (z without the training noise)."""
    import torch

    with torch.no_grad():
        return torch.cat(
            [decoder(encoder.encode(faces[s : s + batch_size])).float() for s in range(0, len(faces), batch_size)]
        )


def quality(encoder, decoder, faces, speakers, dssim, seed: int = 0) -> tuple[dict, object]:
    """MAE ([-1, 1] scale), DSSIM and C2ST of the reconstructions of `faces`; (metrics, reconstructions)."""
    from sclmd.evaluate.two_sample import classifier_two_sample_test

    recon = reconstruct(encoder, decoder, faces)
    c2st = classifier_two_sample_test(faces, recon, speakers, speakers, seed=seed)
    return {
        "mae": float((recon - faces).abs().mean()),
        "dssim": float(dssim(recon, faces).mean()),
        "c2st": c2st.acc,
        "c2st_ci": c2st.ci,
    }, recon


def run(params: Params, root: Path) -> dict:
    import mlflow
    import torch

    from sclmd.data.voxsynth.face_bank import bank_sha256
    from sclmd.evaluate.plots import plot_loss_curves, plot_reconstructions
    from sclmd.evaluate.two_sample import real_vs_real
    from sclmd.machine import describe
    from sclmd.models.perceptual import DSSIM, make_perceptual
    from sclmd.train.checkpoints import CheckpointStore
    from sclmd.train.first_stage import as_float, build, first_stage_config, train

    cfg = params.first_stage
    data = banks(params, root)
    val_faces = as_float(torch.from_numpy(data["val"][0][: cfg.evaluate_faces]))
    val_speakers = data["val"][1][: cfg.evaluate_faces]
    dssim = DSSIM()
    perceptual = make_perceptual(cfg.perceptual, cfg.lpips_net, cfg.lpips_missing)
    mlflow.set_tags({f"sclmd.{k}": str(v) for k, v in perceptual.describe().items()})
    store = CheckpointStore(root / CHECKPOINTS, run_key(params), cfg.keep_checkpoints)
    best_file = root / BEST / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else None
    if best is not None and (best.get("run_key") != store.params_hash or not cfg.resume or not store.steps()):
        best = None  # another run's best (other params or code), or a fresh start: not ours
    progress = root / REPORT_DIR / "progress"
    progress.mkdir(parents=True, exist_ok=True)

    def evaluate(step: int, encoder, decoder) -> dict[str, float]:
        nonlocal best
        from safetensors.torch import save_file

        device = next(decoder.parameters()).device
        encoder_cpu, decoder_cpu = (m.to("cpu") for m in (encoder, decoder))
        values, recon = quality(encoder_cpu, decoder_cpu, val_faces, val_speakers, dssim)
        grid = progress / f"step-{step:07d}.png"
        plot_reconstructions(val_faces[:GRID_FACES], recon[:GRID_FACES], grid, n=GRID_FACES)
        mlflow.log_artifact(str(grid), artifact_path="first_stage/progress")
        if best is None or values["c2st"] < best["c2st"]:
            best = {"step": step, "run_key": store.params_hash, **values}
            with atomic_dir(root / BEST) as tmp:
                state = {f"encoder.{k}": v for k, v in encoder_cpu.state_dict().items()}
                state |= {f"decoder.{k}": v for k, v in decoder_cpu.state_dict().items()}
                save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
                write_json(tmp / "best.json", best)
        encoder.to(device)
        decoder.to(device)
        return {k: v for k, v in values.items() if k != "c2st_ci"}

    def log(values: dict, step: int) -> None:
        mlflow.log_metrics({f"first_stage/{k}": v for k, v in values.items()}, step=step)

    result = train(cfg, data["train"][0], params.data.image_size, store, perceptual, log=log, evaluate=evaluate)
    best = json.loads(best_file.read_text())
    from safetensors.torch import load_file

    chosen = build(cfg, params.data.image_size)
    state = load_file(str(root / BEST / "model.safetensors"))
    for name in ("encoder", "decoder"):
        chosen[name].load_state_dict({k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")})
        chosen[name].eval()
    test_faces = as_float(torch.from_numpy(data["test"][0]))
    test, test_recon = quality(chosen["encoder"], chosen["decoder"], test_faces, data["test"][1], dssim)
    sanity = real_vs_real(test_faces, data["test"][1])
    seconds = result.history.get("seconds", [(0, 0.0)])[-1][1]
    metrics = {
        "chosen_step": best["step"],
        "val": {k: best[k] for k in ("mae", "dssim", "c2st", "c2st_ci")},
        "test": test,
        "test_real_vs_real_c2st": sanity.acc,
        "steps": result.steps,
        "train_hours": round(seconds / 3600, 3),
        "faces": {split: int(len(faces)) for split, (faces, _) in data.items()},
        "data_sha256": {split: bank_sha256(faces) for split, (faces, _) in data.items()},
        "perceptual": perceptual.describe(),
        "machine": describe(),  # where the last stretch of training ran
    }
    face_cfg = first_stage_config(cfg, params.data.image_size)
    with atomic_dir(root / MODEL_DIR) as tmp:
        (tmp / "model.safetensors").write_bytes((root / BEST / "model.safetensors").read_bytes())
        write_json(
            tmp / "config.json",
            {
                "face_config": face_cfg.to_dict(),
                "latent_noise": cfg.latent_noise,
                "params": {s: section_dict(params, s) for s in PARAM_SECTIONS},
                "metrics": metrics,
            },
        )
    with atomic_dir(root / REPORT_DIR / "plots") as plots:
        curves = {k: v for k, v in result.history.items() if k.startswith("val_") or k.startswith("loss")}
        plot_loss_curves(curves, plots / "curves.png", "first stage: losses and val quality (C2ST 0.5 = real)")
        plot_reconstructions(
            test_faces[: GRID_FACES * 2], test_recon[: GRID_FACES * 2], plots / "reconstructions.png", n=GRID_FACES * 2
        )
    for name in ("curves.png", "reconstructions.png"):
        (root / REPORT_DIR / "plots" / name).replace(root / REPORT_DIR / name)
    (root / REPORT_DIR / "plots").rmdir()
    write_json(root / METRICS, metrics)
    write_json(root / REPORT_DIR / "history.json", result.history)
    # The last checkpoints stay (unlike the pipeline's stages): a longer max_steps resumes from them.
    return metrics
