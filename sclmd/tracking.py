"""MLflow: one parent run per pipeline run, one child run per stage.

Stages run as DVC subprocesses, so the parent run id travels in the environment
(`SCLMD_MLFLOW_PARENT_RUN_ID`), set by the pipeline flow.  A stage started on its
own (`dvc repro`, `sclmd stage X`) gets a top-level run of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sclmd.config import params_hash

EXPERIMENT = "sclmd"
PARENT_ENV = "SCLMD_MLFLOW_PARENT_RUN_ID"
VARIANT_ENV = "SCLMD_VARIANT"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def git_commit(root: Path, outputs: tuple[str, ...] = ()) -> str:
    """HEAD, with "-dirty" when tracked files differ from it; changes under `outputs` (what the caller is
    writing, e.g. the release's reports/ and weights/) do not count: they are its results, not its code."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in outputs)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _setup(root: Path):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def log_flat_params(params: dict[str, Any]) -> None:
    """Params as `section.key` (nested keys dotted): the same name in every run that has them."""
    import mlflow

    # MLflow caps a param value at 6000 characters; ours are short, but be safe.
    mlflow.log_params({k: str(v)[:500] for k, v in _flatten(params).items()})


@contextmanager
def stage_run(stage: str, root: Path, params: dict[str, Any]) -> Iterator[Any]:
    """A child run of the pipeline's run (or a top-level run) for one stage."""
    mlflow = _setup(root)
    parent = os.environ.get(PARENT_ENV) or None
    tags = {
        "sclmd.stage": stage,
        "sclmd.dvc_stage": stage,
        "sclmd.git_commit": git_commit(root),
        "sclmd.params_hash": params_hash(params),
        "mlflow.source.git.commit": git_commit(root).removesuffix("-dirty"),
    }
    if os.environ.get(VARIANT_ENV):  # an ablation variant (flows/ablations.py)
        tags["sclmd.variant"] = os.environ[VARIANT_ENV]
    # In one process (a notebook, a test) the pipeline's run is still active: nest under it.
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=stage, parent_run_id=parent, tags=tags, nested=nested) as run:
        log_flat_params(params)
        yield run


@contextmanager
def pipeline_run(root: Path, params: dict[str, Any], run_name: str = "pipeline") -> Iterator[Any]:
    """The parent run (tagged sclmd.stage = run_name: pipeline | talker | release); children started by stage
    subprocesses attach to it."""
    mlflow = _setup(root)
    tags = {
        "sclmd.stage": run_name,
        "sclmd.git_commit": git_commit(root),
        "sclmd.params_hash": params_hash(params),
    }
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        log_flat_params(params)  # every stage's params on the parent, prefixed: pipeline runs compare side by side
        previous = os.environ.get(PARENT_ENV)
        os.environ[PARENT_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if previous is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = previous
