"""The talking-face flow: synth_video -> train_talker -> evaluate_talker, one Prefect task per DVC stage.

It runs after the pipeline (it needs its prepared data, face autoencoder, SCLDM and judges)
and outside its time budget (`make talker`). Each stage goes through `dvc repro`, so an
unchanged stage is skipped; the flow opens an MLflow parent run named `talker`, and the
stages' runs are its children. Deployment: `sclmd-talker/local` in prefect.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from flows.pipeline import dvc_stage
from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.orchestration import share_prefect_api
from sclmd.stages import TALKER_STAGES

NEEDS = {
    "data/prepared/manifest.parquet": "prepare",
    "models/pretrain/model.safetensors": "pretrain",
    "models/ldm/sclmd.json": "train_ldm",
    "models/judges/judges.json": "judges",
}


def require_upstream(root: Path) -> None:
    """SclmdError naming what `make run` has not made yet, if anything."""
    missing = [f"{path} (stage {stage})" for path, stage in NEEDS.items() if not (root / path).exists()]
    if missing:
        raise SclmdError(
            "the talker builds on the pipeline's outputs, and these are missing: "
            + ", ".join(missing)
            + ". Run `make run` first."
        )


@flow(name="sclmd-talker", log_prints=True)
def sclmd_talker(force: bool = False, root: str | None = None) -> dict[str, str]:
    """The talking face: VoxSynth videos, the DAE-Talker models, their evaluation (reports/talker/)."""
    from sclmd.config import SECTIONS, load_params, section_dict
    from sclmd.stages import logged_metrics
    from sclmd.tracking import pipeline_run

    root_path = Path(root).resolve() if root else project_root()
    require_upstream(root_path)
    share_prefect_api()
    params = load_params(root_path / "params.yaml")
    status: dict[str, str] = {}
    with pipeline_run(root_path, {s: section_dict(params, s) for s in SECTIONS}, run_name="talker") as run:
        import mlflow

        for stage in TALKER_STAGES:
            status[stage] = dvc_stage(stage, str(root_path), force)
            mlflow.set_tag(f"sclmd.stage_status.{stage}", status[stage])
        metrics = root_path / "reports/talker/metrics.json"
        if metrics.exists():
            mlflow.log_metrics(logged_metrics(json.loads(metrics.read_text())))
        print(f"talker done (MLflow run {run.info.run_id}): " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return status


if __name__ == "__main__":
    sclmd_talker()
