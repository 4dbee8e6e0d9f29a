"""Process-wide settings, set once before any tool is imported.

Telemetry is off for every tool: offline it costs seconds per process, and a
pipeline must not phone home.  Stages run as subprocesses of DVC (itself run by
Prefect), so these go into os.environ where the children inherit them.
"""

from __future__ import annotations

import os
from pathlib import Path

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",  # no code path may download weights (diffusers, accelerate)
    "GX_ANALYTICS_ENABLED": "false",
}


# Dask logs every worker start and stop at INFO; a pipeline run should show progress, not that.
QUIET = {"DASK_LOGGING__DISTRIBUTED": "warning"}

# Prefect gives its temporary (ephemeral) API server 20 s to come up. The first start after an
# install also compiles bytecode and migrates a new database, which took longer than that on a
# fresh 2-core machine, and `make run` died before its first stage; later starts take ~10 s.
PATIENT = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def apply_defaults() -> None:
    for key, value in {**TELEMETRY_OFF, **QUIET, **PATIENT}.items():
        os.environ.setdefault(key, value)


def project_root() -> Path:
    """The folder holding params.yaml and dvc.yaml: the current directory, as for DVC."""
    return Path.cwd().resolve()
