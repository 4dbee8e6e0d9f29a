"""Stage `judges`: the networks that judge generated faces (gender, age, identity).

Reads params sections `data` and `judges` and the prepared data.  `judges.kind`:
`trained` trains the three judges on the real faces of the training split only (never
generated images, never val or test speakers), or, with `judges.pretrained` set, takes
judges trained elsewhere from that folder; `pretrained` uses real face-photo models
shipped in wheels (`sclmd.evaluate.pretrained_judges`); `auto` picks pretrained for the
real sources and trained for VoxSynth (from data/prepared/info.json).  Writes `models/judges/` and
`reports/judges/metrics.json`: the
judges' own accuracy on the real test faces, the ceiling of every evaluation metric.
It depends on the data alone, so DVC keeps it when only the models change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sclmd.config import Params
from sclmd.io import atomic_dir, write_json

PREPARED = Path("data/prepared")
JUDGES_DIR = Path("models/judges")
REPORT_DIR = Path("reports/judges")
METRICS = REPORT_DIR / "metrics.json"
PLOTS = REPORT_DIR / "plots"
PARAM_SECTIONS = ("data", "judges")
ARTIFACTS = (METRICS, PLOTS)


def real_accuracy(judges, dataset) -> dict:
    """The judges on real faces of one split: gender and age accuracy, and identity retrieval
    (each face's speaker found among the split's speakers by the mean of their other faces)."""
    import numpy as np

    from sclmd.evaluate.judges import AGE_TOLERANCE, as_judge_input, judge_accuracy
    from sclmd.evaluate.metrics import speaker_retrieval

    rows = dataset.rows
    verdicts = judges(as_judge_input(dataset.faces(np.arange(len(rows)))))
    speakers = rows["speaker_id"].astype(str).to_numpy()
    return {
        **judge_accuracy(verdicts, rows["gender"], rows["age"], AGE_TOLERANCE),
        **speaker_retrieval(verdicts.features, speakers, verdicts.features, speakers, leave_one_out=True),
    }


def judges_kind(cfg, prepared: Path) -> str:
    """`judges.kind`, with auto resolved by the prepared data's source (data/prepared/info.json)."""
    if cfg.kind != "auto":
        return cfg.kind
    if cfg.pretrained:  # judges trained elsewhere, named by folder
        return "trained"
    from sclmd.data.store import read_info

    return "trained" if read_info(prepared).get("source", "voxsynth") == "voxsynth" else "pretrained"


def pretrained_judges(prepared: Path):
    """The real-photo judges for the crops in `prepared` (their padding from its info.json)."""
    from sclmd.data.store import read_info
    from sclmd.evaluate.pretrained_judges import AlignedFaceJudges

    info = read_info(prepared)
    return AlignedFaceJudges(info.get("params", {}).get("prepare", {}).get("face_padding", 0.3))


def run(params: Params, root: Path) -> dict:
    import mlflow

    from sclmd.data.store import PackedClips
    from sclmd.evaluate.judges import Judges, as_judge_input, train_judges
    from sclmd.evaluate.plots import plot_loss_curves

    cfg = params.judges
    plots = root / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    kind = judges_kind(cfg, root / PREPARED)
    if kind == "pretrained":
        import json

        from sclmd.evaluate.judges import CONFIG

        judges = pretrained_judges(root / PREPARED)
        with atomic_dir(root / JUDGES_DIR) as tmp:
            (tmp / CONFIG).write_text(json.dumps(judges.to_config(), indent=2) + "\n")
        trained = False
    elif cfg.pretrained:
        source = Path(cfg.pretrained).expanduser()
        source = source if source.is_absolute() else root / source
        judges = Judges.from_pretrained(source)  # a clear error when the folder is not judges
        if judges.config.image_size != params.data.image_size:
            from sclmd.errors import SclmdError

            raise SclmdError(
                f"{source}: judges for {judges.config.image_size} px faces, but data.image_size is "
                f"{params.data.image_size}. Use judges trained at this size, or judges.pretrained: null."
            )
        with atomic_dir(root / JUDGES_DIR) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        trained = False
    else:
        train = PackedClips(root / PREPARED, "train")
        faces = as_judge_input(train.faces(list(range(len(train)))))

        def log(values: dict, step: int) -> None:
            mlflow.log_metrics({f"train/{k}": v for k, v in values.items()}, step=step)

        result = train_judges(
            faces,
            train.rows["gender"],
            train.rows["age"],
            train.rows["speaker_id"],
            image_size=params.data.image_size,
            width=cfg.width,
            feature_dim=cfg.feature_dim,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            max_blur=cfg.max_blur,
            colour=cfg.colour,
            seed=cfg.seed,
            log=log,
        )
        judges = result.judges
        judges.save_pretrained(root / JUDGES_DIR, {"trained_on": "train split, real faces", "epochs": cfg.epochs})
        plot_loss_curves(result.history, plots / "loss_curves.png", "judges' training losses")
        trained = True
    metrics = {
        "source": judges.source,
        "trained_here": trained,
        "test": real_accuracy(judges, PackedClips(root / PREPARED, "test")),
        "val": real_accuracy(judges, PackedClips(root / PREPARED, "val")),
    }
    if kind == "pretrained":
        metrics["kind"] = "pretrained"
    write_json(root / METRICS, metrics)
    return metrics
