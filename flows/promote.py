"""The promotion flow: @challenger -> @champion when it passes the gates of `registry` in params.yaml
(against @champion; with no champion yet, against the shipped release model when there is one).

The same decision as `sclmd promote`, as a Prefect flow so that it can be a deployment
(`sclmd-promote/local` in prefect.yaml), scheduled or triggered after a pipeline run.
A refused challenger is a decision, not a failure: the run completes, and its result
and the markdown artifact `promotion` say what was compared and why it was refused.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from sclmd.config import load_params
from sclmd.env import project_root
from sclmd.registry.versions import client, promote, release_reference


@flow(name="sclmd-promote", log_prints=True)
def sclmd_promote(force: bool = False, reason: str | None = None, root: str | None = None) -> dict:
    """Compare the challenger with the champion on the gating metrics; move @champion when it wins."""
    root_path = Path(root).resolve() if root else project_root()
    registry = load_params(root_path / "params.yaml").registry
    result = promote(
        client(root_path),
        registry.model_name,
        registry.gates,
        force=force,
        reason=reason,
        reference=release_reference(root_path),
    )
    print(result.table())
    print(result.summary())
    create_markdown_artifact(
        f"{result.table()}\n\n{result.summary()}\n",
        key="promotion",
        description=f"{registry.model_name}: challenger vs champion",
    )
    return result.to_dict()


if __name__ == "__main__":
    sclmd_promote()
