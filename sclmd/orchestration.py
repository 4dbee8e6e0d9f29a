"""Prefect plumbing shared by the pipeline flow and the stages that fan out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sclmd.errors import SclmdError


def share_prefect_api() -> str | None:
    """Make sure child processes (DVC stages, Dask workers) report to this process's Prefect API.

    With no server configured, Prefect starts a temporary one per process (~20 s each,
    and runs scattered over several throwaway databases).  Starting it once here and
    exporting its address as PREFECT_API_URL lets every child use that one instead.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            url = str(client.api_url)
    except Exception:  # no API to be had: children fall back to their own
        return None
    os.environ["PREFECT_API_URL"] = url
    return url


def venv_tool(name: str) -> str:
    """The command `name` of this Python's environment (dvc, prefect, ...), else whatever PATH finds."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def stale_stages(root: Path) -> list[str]:
    """The pipeline's stages DVC finds out of date (none outside a DVC project: nothing to compare).

    The talker's stages are left out: they run after the pipeline (`make talker`), often never.
    """
    from sclmd.stages import STAGE_ORDER

    if not (root / ".dvc").is_dir():
        return []
    out = subprocess.run(
        [venv_tool("dvc"), "status", "--json", *STAGE_ORDER], cwd=root, capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise SclmdError(f"{root}: `dvc status` failed: {out.stderr.strip()[-500:]}")
    return sorted(json.loads(out.stdout or "{}"))
