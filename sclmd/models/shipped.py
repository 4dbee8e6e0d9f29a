"""The shipped weights (`weights/`): trained once and long by `sclmd release`, read by everything else.

Each folder holds safetensors, a config.json, `checksums.json` (the sha256 of every other file)
and its model card (README.md). A folder is checked before anything is loaded from it: a missing
folder, a missing file, or a file that does not match its checksum is refused with what is wrong
and how to get the folder back, never loaded half-way.
"""

from __future__ import annotations

import json
from pathlib import Path

from sclmd.errors import SclmdError

WEIGHTS_DIR = Path("weights")
FACE_AUTOENCODER = WEIGHTS_DIR / "face-autoencoder"
RELEASE_SCLDM = WEIGHTS_DIR / "scldm-voxsynth"
RELEASE_TALKER = WEIGHTS_DIR / "dae-talker"
CHECKSUMS = "checksums.json"
CARD = "README.md"


def restore_hint(folder: Path) -> str:
    return (
        f"Restore it with `git checkout -- {folder}` (a fresh clone has it), or train it again with "
        "`sclmd release` (the model card's command)"
    )


def verify_folder(folder: Path, required: tuple[str, ...], what: str) -> None:
    """Refuse a shipped folder that is missing, incomplete or altered (sha256 against checksums.json)."""
    from sclmd.train.checkpoints import file_sha256

    folder = Path(folder)
    if not folder.is_dir():
        raise SclmdError(f"{folder}: {what} not found. {restore_hint(folder)}.")
    missing = [name for name in (*required, CHECKSUMS) if not (folder / name).is_file()]
    if missing:
        raise SclmdError(f"{folder}: {what} is incomplete: {', '.join(missing)} missing. {restore_hint(folder)}.")
    try:
        expected = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SclmdError(f"{folder / CHECKSUMS}: unreadable ({e}). {restore_hint(folder)}.") from None
    for name in required:
        if name not in expected:
            raise SclmdError(f"{folder / CHECKSUMS}: lists no checksum for {name}. {restore_hint(folder)}.")
    for name, digest in expected.items():  # every file it lists, subfolders included
        if not (folder / name).is_file():
            raise SclmdError(f"{folder}: {what} is incomplete: {name} missing. {restore_hint(folder)}.")
        if file_sha256(folder / name) != digest:
            raise SclmdError(
                f"{folder / name}: does not match its sha256 in {CHECKSUMS} (truncated, modified or a "
                f"Git LFS pointer). It was not loaded. {restore_hint(folder)}."
            )


def write_checksums(folder: Path) -> dict[str, str]:
    """checksums.json for every file under `folder` but itself and the model card (which lists them)."""
    from sclmd.io import write_json
    from sclmd.train.checkpoints import file_sha256

    folder = Path(folder)
    sums = {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in (CHECKSUMS, CARD)
    }
    write_json(Path(folder) / CHECKSUMS, sums)
    return sums


def load_face_autoencoder(folder: Path):
    """(FaceConfig, encoder state, decoder state) of a first-stage folder (weights/face-autoencoder or
    a release workspace's models/first_stage), checked first."""
    from safetensors.torch import load_file

    from sclmd.models.face_autoencoder import FaceConfig

    folder = Path(folder)
    verify_folder(folder, ("model.safetensors", "config.json"), "the face autoencoder (first stage)")
    try:
        config = json.loads((folder / "config.json").read_text())
        face = FaceConfig(**config["face_config"])
        state = load_file(str(folder / "model.safetensors"))
    except Exception as e:  # noqa: BLE001 - any unreadable content gets the same clear message
        raise SclmdError(f"{folder}: unreadable face autoencoder ({e}). {restore_hint(folder)}.") from None
    split = {
        name: {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        for name in ("encoder", "decoder")
    }
    return face, split["encoder"], split["decoder"]


CHECKOUT = Path(__file__).resolve().parents[2]  # the clone this package runs from (an editable install)


def resolve(path: str | Path, root: Path) -> Path:
    """A params path: absolute as given; relative to the stage's root, else to the checkout's
    (a workspace of the release or an ablation has no weights/ of its own)."""
    path = Path(path)
    if path.is_absolute():
        return path
    for base in (Path(root), CHECKOUT):
        if (base / path).exists():
            return base / path
    return Path(root) / path  # missing everywhere: the error names it where the user looks
