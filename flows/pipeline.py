"""The pipeline flow: one Prefect task per DVC stage, in DAG order, then registration.

Each task runs `dvc repro --single-item <stage>`, so DVC decides what is stale and
an unchanged stage is skipped.  The flow opens the MLflow parent run; each stage
process attaches its child run to it through the environment.  Transient
failures are retried; a user error (bad params, broken data contract) is not,
since running it again cannot help.

`set_params` ({"ldm.max_steps": 500, ...}) runs one experiment without editing
params.yaml by hand, as `dvc exp run --set-param` would: the values are written into
params.yaml (comments kept), the stages run, the result is saved with `dvc exp save`
under the name `experiment` (default: the Prefect flow run's name), and params.yaml,
dvc.lock and the outputs go back to what they were.  `dvc exp show` lists it and
`dvc exp apply NAME` brings it back.

After a full run (all stages), the trained pipeline is registered as a new version of
the MLflow model (`registry` in params.yaml) with alias @challenger.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from sclmd.config import Params, load_params
from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.io import write_bytes
from sclmd.orchestration import share_prefect_api, venv_tool
from sclmd.stages import STAGE_ORDER

# What the sclmd CLI prints before a user-fixable error (see sclmd.cli._fail).
USER_ERROR_MARK = "error: "
TAIL_BYTES = 16_000


class StageFailed(SclmdError):
    def __init__(self, stage: str, code: int, tail: str, user_error: bool):
        self.stage, self.code, self.user_error = stage, code, user_error
        lines = [ln for ln in tail.splitlines() if ln.strip()][-25:]
        super().__init__(
            f"stage '{stage}' failed (dvc exit {code})"
            + (" on a problem in its inputs or params" if user_error else "")
            + ":\n"
            + "\n".join("  " + ln for ln in lines)
        )
        self._tail = tail

    def __reduce__(self):  # picklable, for task runners and result persistence
        return (StageFailed, (self.stage, self.code, self._tail, self.user_error))


def _pump(src, dst, tail: bytearray) -> None:
    """Copy a child's output through as it comes (progress bars stay live), keep the tail."""
    for chunk in iter(lambda: src.read1(4096), b""):
        dst.write(chunk)
        dst.flush()
        tail.extend(chunk)
        del tail[:-TAIL_BYTES]


def stream_process(cmd: list[str], cwd: str | Path, env: dict | None = None) -> tuple[int, str, str]:
    """Run `cmd` (this venv's tools first on PATH) with its output passed through live;
    (exit code, the tail of stdout + stderr, the tail of stderr)."""
    env = dict(env or os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # `sclmd` and `dvc` of this venv
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_tail, err_tail = bytearray(), bytearray()
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer, out_tail), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer, err_tail), daemon=True),
    ]
    for p in pumps:
        p.start()
    code = proc.wait()
    for p in pumps:
        p.join()
    err = err_tail.decode(errors="replace")
    return code, out_tail.decode(errors="replace") + "\n" + err, err


def _no_retry_on_user_error(task, task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return not (isinstance(exc, StageFailed) and exc.user_error)


@task(retries=1, retry_delay_seconds=3, retry_condition_fn=_no_retry_on_user_error, task_run_name="dvc-repro-{name}")
def dvc_stage(name: str, root: str, force: bool) -> str:
    """Run one stage through DVC; returns 'ran' or 'skipped'."""
    cmd = ["dvc", "repro", "--single-item", name] + (["--force"] if force else [])
    get_run_logger().info("running %s", " ".join(cmd))
    code, text, err = stream_process(cmd, root)
    if code != 0:
        raise StageFailed(name, code, text, USER_ERROR_MARK in err)
    return "skipped" if "didn't change, skipping" in text else "ran"


@task(task_run_name="register-model")
def register_model(root: str, model_name: str) -> str:
    """A new version of the registered model (alias @challenger), unless this model is registered already."""
    from sclmd.registry.versions import register

    version, new = register(Path(root), model_name)
    message = (
        f"registered {model_name} version {version.version} (@challenger)"
        if new
        else f"{model_name} version {version.version} is this model already (@challenger)"
    )
    get_run_logger().info(message)
    return str(version.version)


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_tool("dvc"), *args], cwd=root, capture_output=True, text=True, timeout=600)


@contextmanager
def experiment_params(root: Path, overrides: dict[str, Any] | None, name: str) -> Iterator[Params]:
    """params.yaml with `overrides` applied for the duration, then saved as a DVC experiment and restored."""
    path = root / "params.yaml"
    if not overrides:
        yield load_params(path)
        return
    from sclmd.config import apply_overrides

    before = {rel: (root / rel).read_bytes() if (root / rel).exists() else None for rel in ("params.yaml", "dvc.lock")}
    with tempfile.TemporaryDirectory(prefix="sclmd-exp-") as backup:
        # Outputs DVC does not cache (reports, metrics) cannot come back by `dvc checkout`: keep a copy.
        uncached = [rel for rel in uncached_outputs(root) if (root / rel).exists()]
        for rel in uncached:
            _copy(root / rel, Path(backup) / rel)
        params = apply_overrides(path, overrides)  # validated before anything is written
        succeeded = False
        try:
            yield params
            succeeded = True
        finally:
            if succeeded:
                # The pipeline's stages only: the talker's (`make talker`) may never have run here, and
                # `dvc exp save` refuses a stage whose outputs do not exist.
                saved = _dvc(root, "exp", "save", "--name", name, "--force", *STAGE_ORDER)
                if saved.returncode != 0:
                    get_run_logger().warning("dvc exp save failed: %s", saved.stderr.strip()[-1000:])
                else:
                    print(f"experiment saved: `dvc exp show` lists '{name}', `dvc exp apply {name}` restores it")
            for rel, content in before.items():
                if content is not None:
                    write_bytes(root / rel, content)
            for rel in uncached:
                _copy(Path(backup) / rel, root / rel)
            restored = _dvc(root, "checkout", "--quiet")  # cached outputs that match the restored dvc.lock
            if restored.returncode != 0:
                get_run_logger().warning("dvc checkout after the experiment: %s", restored.stderr.strip()[-500:])


def uncached_outputs(root: Path) -> list[str]:
    """dvc.yaml's outputs, metrics and plots declared `cache: false` (paths relative to the project)."""
    import yaml

    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict):
                    paths += [
                        rel for rel, opts in entry.items() if isinstance(opts, dict) and opts.get("cache") is False
                    ]
    return paths


def _copy(src: Path, dst: Path) -> None:
    """Replace dst with a copy of src (file or folder)."""
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)


@flow(name="sclmd-pipeline", log_prints=True)
def sclmd_pipeline(
    stages: list[str] | None = None,
    force: bool = False,
    root: str | None = None,
    set_params: dict[str, Any] | None = None,
    experiment: str | None = None,
    register_version: bool = True,
    processes: int | None = None,
) -> dict[str, str]:
    """Run the DVC stages in order, then register the model; returns {stage: 'ran' | 'skipped'}.

    set_params: dotted params.yaml keys -> values for this run only, e.g. {"ldm.max_steps": 500}.
    processes: the training stages' number of processes for this run (one per GPU, or gloo on
    CPU), overriding params.yaml's `launch.processes`; a deployment's SCLMD_PROCESSES job variable
    does the same.
    """
    from sclmd.config import SECTIONS, section_dict
    from sclmd.launch import PROCESSES_ENV
    from sclmd.tracking import pipeline_run

    if processes is not None:
        if int(processes) < 1:
            raise SclmdError(f"processes={processes}: expected 1 or more")
        os.environ[PROCESSES_ENV] = str(int(processes))  # the stages' subprocesses inherit it
    root_path = Path(root).resolve() if root else project_root()
    wanted = list(stages) if stages else list(STAGE_ORDER)
    unknown = [s for s in wanted if s not in STAGE_ORDER]
    if unknown:
        raise SclmdError(f"unknown stage(s) {', '.join(unknown)}. Stages: {', '.join(STAGE_ORDER)}")
    order = [s for s in STAGE_ORDER if s in wanted]
    share_prefect_api()  # stage processes, and their Dask workers, report to this flow's API
    name = experiment or _flow_run_name() or "sclmd-experiment"
    status: dict[str, str] = {}
    with experiment_params(root_path, set_params, name) as params:
        all_params = {s: section_dict(params, s) for s in SECTIONS}
        with pipeline_run(root_path, all_params) as run:
            import mlflow

            if set_params:
                mlflow.set_tags({"sclmd.dvc_experiment": name, "sclmd.set_params": json.dumps(set_params)})
            mlflow.set_tag("sclmd.processes", os.environ.get(PROCESSES_ENV) or params.launch.processes)
            try:
                for stage in order:
                    status[stage] = dvc_stage(stage, str(root_path), force)
                    mlflow.set_tag(f"sclmd.stage_status.{stage}", status[stage])
            except Exception:
                mlflow.set_tag("sclmd.failed_stage", next(s for s in order if s not in status))
                raise
            log_headline_metrics(root_path)
            if register_version and params.registry.register_versions and order == list(STAGE_ORDER):
                version = register_model(str(root_path), params.registry.model_name)
                mlflow.set_tag("sclmd.registered_version", version)
            print(f"pipeline done (MLflow run {run.info.run_id}): " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return status


def log_headline_metrics(root: Path) -> None:
    """The evaluation's metrics on the parent run too, under the evaluate run's names (one column per quantity)."""
    import mlflow

    from sclmd.stages import logged_metrics

    path = root / "reports/eval/metrics.json"
    if path.exists():
        mlflow.log_metrics(logged_metrics(json.loads(path.read_text())))


def _flow_run_name() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.name
    except Exception:
        return None


if __name__ == "__main__":
    sclmd_pipeline()
