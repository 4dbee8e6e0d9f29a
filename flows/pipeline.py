"""The pipeline flow: one Prefect task per DVC stage, in DAG order.

Each task runs `dvc repro --single-item <stage>`, so DVC decides what is stale and
an unchanged stage is skipped.  The flow opens the MLflow parent run; each stage
process attaches its child run to it through the environment.  Transient
failures are retried; a user error (bad params, broken data contract) is not,
since running it again cannot help.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from prefect import flow, get_run_logger, task

from sclmd.config import Params, load_params
from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.orchestration import share_prefect_api
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
            + ":\n" + "\n".join("  " + ln for ln in lines)
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


def _no_retry_on_user_error(task, task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return not (isinstance(exc, StageFailed) and exc.user_error)


@task(retries=1, retry_delay_seconds=3, retry_condition_fn=_no_retry_on_user_error,
      task_run_name="dvc-repro-{name}")
def dvc_stage(name: str, root: str, force: bool) -> str:
    """Run one stage through DVC; returns 'ran' or 'skipped'."""
    cmd = ["dvc", "repro", "--single-item", name] + (["--force"] if force else [])
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # `sclmd` and `dvc` of this venv
    get_run_logger().info("running %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    text = out_tail.decode(errors="replace") + "\n" + err_tail.decode(errors="replace")
    if code != 0:
        raise StageFailed(name, code, text, USER_ERROR_MARK in err_tail.decode(errors="replace"))
    return "skipped" if "didn't change, skipping" in text else "ran"


@flow(name="sclmd-pipeline", log_prints=True)
def sclmd_pipeline(stages: list[str] | None = None, force: bool = False, root: str | None = None) -> dict[str, str]:
    """Run the DVC stages in order; returns {stage: 'ran' | 'skipped'}."""
    from sclmd.config import SECTIONS, section_dict
    from sclmd.tracking import pipeline_run

    root_path = Path(root).resolve() if root else project_root()
    params: Params = load_params(root_path / "params.yaml")
    wanted = list(stages) if stages else list(STAGE_ORDER)
    unknown = [s for s in wanted if s not in STAGE_ORDER]
    if unknown:
        raise SclmdError(f"unknown stage(s) {', '.join(unknown)}. Stages: {', '.join(STAGE_ORDER)}")
    order = [s for s in STAGE_ORDER if s in wanted]
    share_prefect_api()  # stage processes, and their Dask workers, report to this flow's API
    all_params = {s: section_dict(params, s) for s in SECTIONS}
    status: dict[str, str] = {}
    with pipeline_run(root_path, all_params) as run:
        import mlflow

        try:
            for name in order:
                status[name] = dvc_stage(name, str(root_path), force)
                mlflow.set_tag(f"sclmd.stage_status.{name}", status[name])
        except Exception:
            mlflow.set_tag("sclmd.failed_stage", next(s for s in order if s not in status))
            raise
        print(f"pipeline done (MLflow run {run.info.run_id}): " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return status


if __name__ == "__main__":
    sclmd_pipeline()
