"""One module per pipeline stage; `sclmd stage NAME` runs one through `run_stage`.

Each stage module declares PARAM_SECTIONS (the only params.yaml sections it reads),
and `run(params, root) -> metrics`.  The runner adds what every stage does the
same way: an MLflow child run with tags, params, metrics and report artifacts.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

from sclmd.config import load_params, section_dict

STAGE_ORDER = ("synth", "prepare", "validate", "pretrain", "prior", "train_ldm", "judges", "baselines", "evaluate",
               "user_study")


def stage_module(name: str) -> ModuleType:
    if name not in STAGE_ORDER:
        from sclmd.errors import SclmdError

        raise SclmdError(f"unknown stage '{name}'. Stages: {', '.join(STAGE_ORDER)}")
    return importlib.import_module(f"sclmd.stages.{name}")


def _numeric_metrics(payload: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_numeric_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def _metric_key(name: str) -> str:
    # MLflow accepts letters, digits, _ - . / and spaces in metric names.
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)[:250]


def run_stage(name: str, root: Path) -> dict:
    from sclmd.tracking import stage_run

    module = stage_module(name)
    params = load_params(root / "params.yaml")
    sections = {s: section_dict(params, s) for s in module.PARAM_SECTIONS}
    with stage_run(name, root, sections):
        import mlflow

        try:
            metrics = module.run(params, root)
        finally:
            # Reports are logged even when the stage fails: a broken data contract's
            # report is exactly what a person needs to see.
            for rel in module.ARTIFACTS:
                path = root / rel
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=str(rel))
                elif path.is_file():
                    mlflow.log_artifact(str(path), artifact_path=str(Path(rel).parent))
        mlflow.log_metrics({_metric_key(k): v for k, v in _numeric_metrics(metrics).items()})
    return metrics
