"""Which SCLDM a command uses when none is named: the registry's champion, else the shipped release model.

`generate`, `check-voices`, `demo` and `talk` share this order, and each says which model it used:
1. `--model URI` or `--checkpoint DIR`, when given;
2. the registry's `@champion` (models:/NAME@champion), when the project's store has one;
3. the shipped release model, `weights/scldm-voxsynth/` (checked against its checksums): a fresh
   install draws faces before any training;
4. this workspace's own `models/ldm` (a `make run` not yet promoted), when nothing above exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sclmd.errors import SclmdError

LOCAL = Path("models/ldm")


@dataclass(frozen=True)
class ModelChoice:
    checkpoint: Path | None  # a pipeline folder, or None for a registered model
    model_uri: str | None
    says: str  # what a person is told: which model, and why this one

    @property
    def judges(self) -> Path | None:
        """The judges shipped beside a release model (None: use the workspace's own)."""
        if self.checkpoint is not None and (self.checkpoint / "judges" / "judges.json").is_file():
            return self.checkpoint / "judges"
        return None


def champion_uri(root: Path) -> str | None:
    """models:/NAME@champion when the project's registry has a champion, else None."""
    from sclmd.config import load_params
    from sclmd.registry.versions import CHAMPION, client
    from sclmd.tracking import tracking_uri

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None  # no runs yet: do not create an empty store just to look
    try:
        name = load_params(root / "params.yaml").registry.model_name
        client(root).get_model_version_by_alias(name, CHAMPION)
    except Exception:  # noqa: BLE001 - no params, no registry, no champion: the next choice it is
        return None
    return f"models:/{name}@{CHAMPION}"


def choose_model(
    root: Path, checkpoint: Path | None = None, model: str | None = None, release: Path | None = None
) -> ModelChoice:
    """`release`: the shipped release model's folder (default: weights/scldm-voxsynth of the workspace, else
    of the checkout)."""
    from sclmd.models.shipped import RELEASE_SCLDM, resolve, verify_folder

    if model:
        return ModelChoice(None, model, f"{model} (--model)")
    if checkpoint is not None:
        return ModelChoice(Path(checkpoint), None, f"{checkpoint} (--checkpoint)")
    champion = champion_uri(root)
    if champion:
        return ModelChoice(None, champion, f"{champion} (the registry's champion)")
    shipped = release or resolve(RELEASE_SCLDM, root)
    if shipped.is_dir():
        verify_folder(shipped, ("sclmd.json",), "the shipped release model")
        return ModelChoice(shipped, None, f"{RELEASE_SCLDM} (the shipped release model; no champion in the registry)")
    if (root / LOCAL / "sclmd.json").is_file():
        return ModelChoice(
            root / LOCAL, None, f"{LOCAL} (this workspace's `make run`; no champion, no shipped release model)"
        )
    raise SclmdError(
        f"no model to use: the registry has no champion, {RELEASE_SCLDM} is missing (restore it with "
        f"`git checkout -- {RELEASE_SCLDM}`) and {LOCAL} was not trained (`make run`). Or pass "
        "--checkpoint DIR or --model URI."
    )
