"""The release flow (`sclmd release`, `make release`, deployment `sclmd-release/local|gpu`).

Trains what sclmd ships, long, with the project's own stages, in its own workspace (`release/`,
params.yaml + release.yaml's overrides), so `make run`'s outputs are never touched:

- part `first-stage`: stage `first_stage` (the face autoencoder, hours), then shipped to
  `weights/face-autoencoder/` with its model card;
- part `scldm`: the pipeline's stages in the workspace, pre-training started from the shipped first
  stage, the baselines again with `baseline_seeds` - 1 more seeds (`release/seeds/`), then
  `reports/release/` (the paper's tables, the baselines over seeds, paired verdicts per seed) and
  the model shipped to `weights/scldm-voxsynth/` with its judges and model card;
- part `talker`: the talking face's stages (synth_video, train_talker, evaluate_talker) in the
  workspace, on the release SCLDM's first stage, speakers and judges (after part `scldm`), then
  `reports/release/talker/` and the talker shipped to `weights/dae-talker/` with its model card.

Each stage runs as `sclmd stage NAME` in the workspace, in a process of its own; its checkpoints
make a killed release resume where it stopped, and a stage that finished under the same params
is not run again (a stamp in `release/.done/`). Everything logs to MLflow under a parent run
named `release`, in the project's store unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows.pipeline import USER_ERROR_MARK, StageFailed, stream_process
from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.orchestration import share_prefect_api

PARTS = ("first-stage", "scldm", "talker", "all")
SCLDM_STAGES = ("synth", "prepare", "validate", "judges", "pretrain", "prior", "train_ldm", "baselines", "evaluate")
DONE = Path(".done")
RELEASE_REPORTS = Path("reports/release")


def stamp(work: Path, stage: str) -> str:
    """What a finished stage's stamp must match: its param sections in the workspace, and the bytes of
    its module and of the code its model depends on (its CODE list, where it has one)."""
    import hashlib
    import json

    from sclmd.config import load_params, section_dict
    from sclmd.stages import stage_module

    module = stage_module(stage)
    params = load_params(work / "params.yaml")
    package = Path(module.__file__).resolve().parents[1]
    code = hashlib.sha256()
    for path in [Path(module.__file__)] + [package / rel for rel in getattr(module, "CODE", ())]:
        code.update(path.read_bytes())
    return json.dumps(
        {"params": {s: section_dict(params, s) for s in module.PARAM_SECTIONS}, "code": code.hexdigest()},
        sort_keys=True,
    )


@task(task_run_name="release-{stage}")
def release_stage(stage: str, work: str) -> str:
    """`sclmd stage STAGE` in the workspace; 'ran', or 'skipped' when its stamp says it is done."""
    from sclmd.io import write_text

    work_path = Path(work)
    done = work_path / DONE / f"{stage}.json"
    expected = stamp(work_path, stage)
    if done.is_file() and done.read_text() == expected:
        get_run_logger().info("%s: done under these params and code, skipped", stage)
        return "skipped"
    started = time.perf_counter()
    code, text, err = stream_process([sys.executable, "-m", "sclmd", "stage", stage], work_path)
    if code != 0:
        raise StageFailed(stage, code, text, USER_ERROR_MARK in err)
    # the wall time of the run that finished it (a killed run's earlier share is not counted)
    write_text(done.with_suffix(".seconds"), f"{time.perf_counter() - started:.1f}\n")
    write_text(done, expected)
    return "ran"


def stage_seconds(work: Path, stage: str) -> float:
    """The recorded wall time of a finished stage in `work` (0 where none was recorded)."""
    path = work / DONE / f"{stage}.seconds"
    return float(path.read_text()) if path.is_file() else 0.0


@flow(name="sclmd-release", log_prints=True)
def sclmd_release(
    part: str = "all",
    overrides: str = "release.yaml",
    workspace: str = "release",
    ship: bool = True,
    baseline_seeds: int = 3,
    root: str | None = None,
) -> dict[str, str]:
    """Train the shipped models (see the module's docstring); returns each stage's status."""
    from sclmd.config import SECTIONS, load_params, section_dict
    from sclmd.release import (
        RELEASE_TALKER_REPORTS,
        TALKER_STAGES,
        prepare_workspace,
        seed_workspace,
        ship_first_stage,
        ship_scldm,
        ship_talker,
        write_release_report,
        write_talker_report,
    )
    from sclmd.tracking import pipeline_run, tracking_uri

    if part not in PARTS:
        raise SclmdError(f"unknown release part '{part}' ({' | '.join(PARTS)})")
    root_path = Path(root).resolve() if root else project_root()
    work = prepare_workspace(root_path, Path(workspace), Path(overrides))
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(root_path))  # the project's store, not the workspace's
    share_prefect_api()
    params = load_params(work / "params.yaml")
    status: dict[str, str] = {}
    with pipeline_run(work, {s: section_dict(params, s) for s in SECTIONS}, run_name="release") as run:
        import mlflow

        mlflow.set_tags({"sclmd.release": "true", "sclmd.release_part": part})
        if part in ("first-stage", "all"):
            status["first_stage"] = release_stage("first_stage", str(work))
            if ship:
                target = ship_first_stage(work, root_path, overrides=Path(overrides))
                print(f"release: shipped the first stage to {target}")
        if part in ("scldm", "all"):
            for stage in SCLDM_STAGES:
                status[stage] = release_stage(stage, str(work))
            # the baselines again with other seeds, each in a folder sharing everything else (then evaluated)
            base_seed = params.baselines.seed
            seed_dirs = {}
            for seed in range(base_seed + 1, base_seed + baseline_seeds):
                folder = seed_workspace(work, seed)
                for stage in ("baselines", "evaluate"):
                    status[f"{stage}@seed{seed}"] = release_stage(stage, str(folder))
                seed_dirs[seed] = folder
            summary = write_release_report(work, root_path / RELEASE_REPORTS, seed_dirs)
            mlflow.log_artifacts(str(root_path / RELEASE_REPORTS), artifact_path="reports/release")
            print(f"release: wrote {RELEASE_REPORTS}/")
            if ship:  # the stages' own wall times, so a release resumed across sessions counts each once
                seconds = sum(stage_seconds(work, stage) for stage in SCLDM_STAGES)
                seconds += sum(stage_seconds(f, s) for f in seed_dirs.values() for s in ("baselines", "evaluate"))
                hours = seconds / 3600
                print(f"release: shipped the release model to {ship_scldm(work, root_path, summary, hours)}")
        if part in ("talker", "all"):
            missing = [p for p in ("models/pretrain", "models/ldm", "models/judges") if not (work / p).is_dir()]
            if missing:
                raise SclmdError(
                    f"the release talker builds on the release SCLDM's {', '.join(missing)} in {work}, which are "
                    "missing: run `sclmd release --part scldm` first"
                )
            for stage in TALKER_STAGES:
                status[stage] = release_stage(stage, str(work))
            metrics = write_talker_report(work, root_path / RELEASE_TALKER_REPORTS)
            mlflow.log_artifacts(str(root_path / RELEASE_TALKER_REPORTS), artifact_path="reports/release/talker")
            print(f"release: wrote {RELEASE_TALKER_REPORTS}/")
            if ship:
                hours = sum(stage_seconds(work, stage) for stage in TALKER_STAGES) / 3600
                print(f"release: shipped the release talker to {ship_talker(work, root_path, metrics, hours)}")
        print(f"release done (MLflow run {run.info.run_id}): " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return status


if __name__ == "__main__":
    sclmd_release()
