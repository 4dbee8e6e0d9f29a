"""Which SCLDM a command uses when none is named: the registry's champion, else the shipped release model.

`generate`, `check-voices`, `demo` and `talk` share this order, and each says which model it used:
1. `--model URI` or `--checkpoint DIR`, when given;
2. the registry's `@champion` (models:/NAME@champion), when the project's store has one;
3. the shipped release model, `weights/scldm-voxsynth/` (checked against its checksums): a fresh
   install draws faces before any training;
4. this workspace's own `models/ldm` (a `make run` not yet promoted), when nothing above exists.

The talker (`sclmd talk`) has its own order, `choose_talker`: `--talker DIR`; this workspace's
`models/talker` (a `make talker`); the shipped release talker, `weights/dae-talker/` (checked
against its checksums), so a fresh install makes a video before any training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sclmd.errors import SclmdError

LOCAL = Path("models/ldm")
LOCAL_TALKER = Path("models/talker")


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


@dataclass(frozen=True)
class TalkerChoice:
    folder: Path
    says: str  # which talker, and why this one


def choose_talker(root: Path, talker: Path | None = None, release: Path | None = None) -> TalkerChoice:
    """`talker`: a folder the user named (used as given; its loading says what is wrong with it). `release`:
    the shipped talker's folder (default: weights/dae-talker of the workspace, else of the checkout)."""
    from sclmd.models.shipped import RELEASE_TALKER, resolve, verify_folder
    from sclmd.models.talker import CONFIG, WEIGHTS

    if talker is not None:
        return TalkerChoice(Path(talker), f"{talker} (--talker)")
    if (root / LOCAL_TALKER / CONFIG).is_file():
        return TalkerChoice(root / LOCAL_TALKER, f"{LOCAL_TALKER} (this workspace's `make talker`)")
    shipped = release or resolve(RELEASE_TALKER, root)
    if shipped.is_dir():
        verify_folder(shipped, (CONFIG, WEIGHTS), "the shipped release talker")
        return TalkerChoice(shipped, f"{RELEASE_TALKER} (the shipped release talker; no `make talker` here)")
    raise SclmdError(
        f"no talker to use: {LOCAL_TALKER} was not trained (`make run`, then `make talker`) and {RELEASE_TALKER} "
        f"is missing (restore it with `git checkout -- {RELEASE_TALKER}`). Or pass --talker DIR."
    )
