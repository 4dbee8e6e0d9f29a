"""`sclmd release`: the shipped models, trained long by the project's own stages in their own workspace.

The workspace (`release/` by default) gets the project's params.yaml with `release.yaml`'s
overrides merged in; every stage runs there (`sclmd stage NAME` with that folder as the root),
so `make run`'s outputs are never touched and a killed release resumes from the stages'
checkpoints. MLflow runs go to the project's store (or MLFLOW_TRACKING_URI), tagged
sclmd.release, so the curves sit beside every other run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sclmd.errors import SclmdError

OVERRIDES = Path("release.yaml")
WORKSPACE = Path("release")


def merge_params(base: dict, override: dict) -> dict:
    """`base` with `override`'s keys set, section by section (nested dicts merged, not replaced)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge_params(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def release_params(root: Path, overrides: Path = OVERRIDES) -> dict:
    """The project's params with the release overrides, validated (a bad key names the file)."""
    from pydantic import ValidationError

    from sclmd.config import Params, format_validation_error

    path = overrides if overrides.is_absolute() else root / overrides
    if not path.is_file():
        raise SclmdError(f"{path}: the release overrides file is missing. Restore it from git "
                         "(`git checkout -- release.yaml`) or pass --overrides FILE.")
    try:
        extra = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SclmdError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(extra, dict):
        raise SclmdError(f"{path}: expected a mapping of params.yaml sections at the top level")
    merged = merge_params(yaml.safe_load((root / "params.yaml").read_text()) or {}, extra)
    try:
        Params.model_validate(merged)
    except ValidationError as e:
        raise SclmdError(format_validation_error(e, f"{path} merged into params.yaml")) from None
    return merged


def prepare_workspace(root: Path, workspace: Path = WORKSPACE, overrides: Path = OVERRIDES) -> Path:
    """The release workspace with its params.yaml (rewritten only when it changed)."""
    from sclmd.io import write_text

    work = workspace if workspace.is_absolute() else root / workspace
    work.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(release_params(root, overrides), sort_keys=False)
    target = work / "params.yaml"
    if not target.is_file() or target.read_text() != text:
        write_text(target, text)
    return work


FIRST_STAGE_COMMAND = "sclmd release --part first-stage"


def _fmt_ci(value: float, ci: list[float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def first_stage_card(config: dict, sums: dict[str, str], machine: dict, commit: str, overrides: str) -> str:
    """The model card (README.md) of weights/face-autoencoder, from what the stage recorded."""
    from sclmd.machine import line

    m = config["metrics"]
    p = config["params"]["first_stage"]
    synth = config["params"]["synth"]
    val, test = m["val"], m["test"]
    faces = m["faces"]
    rows = [
        ("reconstructions vs real faces, C2ST (0.5 = indistinguishable) [95% Wilson]",
         _fmt_ci(val["c2st"], val["c2st_ci"]), _fmt_ci(test["c2st"], test["c2st_ci"])),
        ("MAE (faces in [-1, 1])", f"{val['mae']:.4f}", f"{test['mae']:.4f}"),
        ("DSSIM", f"{val['dssim']:.4f}", f"{test['dssim']:.4f}"),
    ]
    param_lines = "\n".join(f"    {k}: {v}" for k, v in p.items())
    return "\n".join([
        "# face-autoencoder: sclmd's first stage",
        "",
        "The face encoder's latent blocks (VGG-Face layout, to z = "
        f"{config['face_config']['latent_channels']} x {config['face_config']['image_size'] // 2 ** config['face_config']['latent_blocks']}"
        f" x {config['face_config']['image_size'] // 2 ** config['face_config']['latent_blocks']}) and the face decoder, "
        "trained once and long by `sclmd release`, so that every `make run` starts from them "
        "(`pretrain.face_init`) instead of training an autoencoder in minutes.",
        "",
        "## Data",
        "",
        f"VoxSynth's face renderer (`sclmd/data/voxsynth/face.py`, framing {synth['face_framing']}, supersampling "
        f"{synth['supersample']}), identities of its own (`first_stage.data_seed` {p['data_seed']}; none of them is a "
        f"speaker of any pipeline split): {faces['train']:,} training faces ({p['train_speakers']:,} identities x "
        f"{p['faces_per_speaker']}), {faces['val']} val and {faces['test']} test faces (identities of their own).",
        "",
        "| split | faces | sha256 of the uint8 faces |",
        "|---|---|---|",
        *[f"| {s} | {faces[s]:,} | `{m['data_sha256'][s]}` |" for s in ("train", "val", "test")],
        "",
        "## Training",
        "",
        f"- steps: {m['steps']:,} at batch {p['batch_size']} (the checkpoint kept: step {m['chosen_step']:,}, "
        "the best val C2ST of the evaluations every "
        f"{p['evaluate_every']:,} steps)",
        f"- wall time: {m['train_hours']:.2f} h of training on {line(machine)}",
        f"- perceptual term: {m['perceptual']['perceptual']}"
        + (" (LPIPS' backbone file was absent: DSSIM substituted)" if m["perceptual"].get("perceptual_substitute") else ""),
        f"- git commit: `{commit}`",
        "- params (`first_stage`, from params.yaml with release.yaml's overrides):",
        "",
        "```yaml",
        "first_stage:",
        param_lines.replace("    ", "  "),
        "```",
        "",
        "## Metrics",
        "",
        "| | val (choice) | test |",
        "|---|---|---|",
        *[f"| {name} | {v} | {t} |" for name, v, t in rows],
        "",
        f"The same classifier on real test faces against other real test faces reads {m['test_real_vs_real_c2st']:.3f}"
        " (the test's own floor on this sample). The C2ST's interval counts the test faces, not how the small "
        "classifier happened to train (README: its noise is a few points wider).",
        "",
        "![reconstructions](reconstructions.png)",
        "",
        "![curves](curves.png)",
        "",
        "## Files",
        "",
        "| file | sha256 |",
        "|---|---|",
        *[f"| {name} | `{digest}` |" for name, digest in sums.items()],
        "",
        "## Reproduce",
        "",
        "```bash",
        f"git checkout {commit.removesuffix('-dirty')}",
        f"{FIRST_STAGE_COMMAND}     # overrides: {overrides}; resumes after a kill",
        "```",
        "",
        f"It took {m['train_hours']:.2f} h of training here; a GPU worker runs the same command "
        "(`prefect deployment run sclmd-release/gpu`).",
        "",
    ])


def ship_first_stage(work: Path, root: Path, target: Path | None = None, overrides: Path = OVERRIDES) -> Path:
    """Copy the workspace's trained first stage into weights/face-autoencoder/ with checksums and its card."""
    import json
    import shutil

    from sclmd.io import atomic_dir, write_text
    from sclmd.machine import describe
    from sclmd.models.shipped import CARD, FACE_AUTOENCODER, write_checksums
    from sclmd.stages.first_stage import MODEL_DIR, REPORT_DIR
    from sclmd.tracking import git_commit

    source = work / MODEL_DIR
    if not (source / "model.safetensors").is_file():
        raise SclmdError(f"{source}: no trained first stage to ship. Run `{FIRST_STAGE_COMMAND}` first.")
    target = target or root / FACE_AUTOENCODER
    with atomic_dir(target) as tmp:
        for name in ("model.safetensors", "config.json"):
            shutil.copy2(source / name, tmp / name)
        for name in ("curves.png", "reconstructions.png"):
            if (work / REPORT_DIR / name).is_file():
                shutil.copy2(work / REPORT_DIR / name, tmp / name)
        sums = write_checksums(tmp)
        config = json.loads((tmp / "config.json").read_text())
        machine = config["metrics"].get("machine") or describe()
        write_text(tmp / CARD, first_stage_card(config, sums, machine, git_commit(root), str(overrides)))
    return target
