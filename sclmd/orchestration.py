"""Prefect plumbing shared by the pipeline flow and the stages that fan out."""

from __future__ import annotations

import os


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
