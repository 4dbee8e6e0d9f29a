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

STAGE_ORDER = (
    "synth",
    "prepare",
    "validate",
    "judges",  # before train_ldm, whose guidance check on val reads faces with them
    "pretrain",
    "prior",
    "train_ldm",
    "baselines",
    "evaluate",
    "user_study",
)
# The talking face (`make talker`, flow sclmd-talker): after the pipeline, outside its budget.
TALKER_STAGES = ("synth_video", "train_talker", "evaluate_talker")
ALL_STAGES = STAGE_ORDER + TALKER_STAGES  # the stages of dvc.yaml
# The release flow's own (`sclmd release`, not in dvc.yaml): trained once and long, shipped in weights/.
RELEASE_STAGES = ("first_stage",)
RUNNABLE_STAGES = ALL_STAGES + RELEASE_STAGES


def stage_module(name: str) -> ModuleType:
    if name not in RUNNABLE_STAGES:
        from sclmd.errors import SclmdError

        raise SclmdError(f"unknown stage '{name}'. Stages: {', '.join(RUNNABLE_STAGES)}")
    return importlib.import_module(f"sclmd.stages.{name}")


def _numeric_metrics(payload: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_numeric_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
        elif _is_interval(key, value):  # `cos_ci: [low, high]` -> cos_ci_low, cos_ci_high
            flat[f"{name}_low"], flat[f"{name}_high"] = float(value[0]), float(value[1])
    return flat


def _is_interval(key: str, value) -> bool:
    return (
        (key == "ci" or key.endswith("_ci"))
        and isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


# One MLflow name per quantity across stages: the stages' metrics files grew their own
# spellings (pretrain's probes say gender_accuracy and recall@1, the judges say gender_acc
# and retrieval_r1); MLflow gets the names on the right, so one UI column holds one quantity.
METRIC_NAMES = {
    "gender_acc": "gender_accuracy",
    "age_acc": "age_accuracy",
    "retrieval_r1": "recall_1",
    "retrieval_r5": "recall_5",
    "recall@1": "recall_1",
    "recall@5": "recall_5",
    "recall@10": "recall_10",
    "generated_gender_accuracy": "gender_accuracy",
    "generated_frechet": "frechet",
}


def metric_name(name: str) -> str:
    """The MLflow name of a (dotted) metrics-file key: canonical last part, only MLflow-safe characters."""
    head, _, last = name.rpartition(".")
    base, suffix = last, ""
    for bound in ("_ci_low", "_ci_high"):  # an interval's bounds follow their metric's name
        if last.endswith(bound) and len(last) > len(bound):
            base, suffix = last[: -len(bound)], bound
    last = METRIC_NAMES.get(base, base) + suffix
    name = f"{head}.{last}" if head else last
    # MLflow accepts letters, digits, _ - . / and spaces in metric names.
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)[:250]


def logged_metrics(metrics: dict) -> dict[str, float]:
    """A stage's metrics as MLflow logs them: flattened, canonical names."""
    return {metric_name(k): v for k, v in _numeric_metrics(metrics).items()}


DEVICE_ENV = "SCLMD_DEVICE"  # auto | cpu | cuda: set by a deployment's job variables (prefect.yaml)


def apply_device_choice() -> None:
    """Honour SCLMD_DEVICE before anything touches CUDA: `cpu` hides the GPUs, `cuda` insists on one."""
    import os

    from sclmd.errors import SclmdError

    choice = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if choice == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif choice.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SclmdError(
                f"{DEVICE_ENV}={choice}, but CUDA is not available on this host "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). "
                "Run this deployment on a GPU worker, or set SCLMD_DEVICE=auto."
            )
    elif choice != "auto":
        raise SclmdError(f"{DEVICE_ENV}={choice}: expected auto, cpu or cuda")


def run_stage(name: str, root: Path) -> dict | None:
    """Run stage `name` in `root`; its metrics, or None where other processes ran it (see below).

    A training stage (its module has `follow`) with `launch.processes` > 1 starts itself again in
    that many processes (`sclmd.launch`): process 0 runs what follows here, the others only join
    the training loop.
    """
    from sclmd.launch import die_with_parent, launch_stage, launched, process_rank, requested_processes
    from sclmd.tracking import stage_run

    apply_device_choice()
    module = stage_module(name)
    params = load_params(root / "params.yaml")
    inside_launcher = launched()
    if inside_launcher:
        die_with_parent()  # a launched process never outlives its launcher
    if hasattr(module, "follow"):
        processes = requested_processes(params.launch.processes)
        if not inside_launcher and processes > 1:
            launch_stage(name, processes)
            return None
        if inside_launcher and process_rank() != 0:
            module.follow(params, root)
            return None
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
        mlflow.log_metrics(logged_metrics(metrics))
    return metrics
