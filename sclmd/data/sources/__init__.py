"""Source scanners: list a data set's (voice, face) pairs without decoding anything.

Every scanner has the signature `scan(params: PrepareParams, project_root: Path) ->
SourceScan`.  Its RawClips carry `root` (the source's data root, absolute and with
symlinks resolved) and paths relative to it; nothing that resolves outside the root
(a symlink, a '..' in a name read from a meta file) is ever listed: it is skipped
with a reason instead.

The helpers below are shared by the scanner modules, which import them from this
package; they are defined before the scanner modules are imported at the bottom.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sclmd.config import PrepareParams
from sclmd.data.records import SkipTally, SourceScan
from sclmd.errors import SclmdError

Skipped = SkipTally

ESCAPES_ROOT = "resolves outside the data root (symlink or '..'); not used"
BROKEN_LINK = "symlink to a file that does not exist"


@dataclass(frozen=True)
class Entry:
    """One directory entry inside the data root.

    Paths here are plain strings: pathlib costs tens of microseconds per path, which
    adds up to minutes over the millions of files of a real data set.
    """

    name: str  # as listed (a symlink's own name)
    path: str  # resolved: absolute, no symlinks, inside the root
    is_dir: bool


def resolve_dir(project_root: Path, configured: str, what: str, fix: str) -> Path:
    """`configured` (relative to the project root, or absolute), resolved; must exist."""
    directory = (Path(project_root) / configured).resolve()
    if not directory.is_dir():
        raise SclmdError(f"{directory}: {what} not found (a directory). {fix}")
    return directory


def is_inside(path: str, root: str) -> bool:
    """Whether the resolved `path` is `root` or lies under it (both absolute)."""
    return path == root or path.startswith(os.path.join(root, ""))


def relative(path: str, root: str) -> str:
    """`path` (inside `root`) relative to it."""
    return path[len(os.path.join(root, "")) :]


def list_entries(directory: str, root: str, skipped: Skipped) -> list[Entry]:
    """The entries of `directory` (itself resolved and inside `root`), sorted by name.

    Plain entries need no resolving: they sit in a resolved directory inside the
    root.  Only symlinks are resolved; those that land outside the root, or nowhere,
    are noted in `skipped`.  That keeps a scan of millions of files to one listing
    per folder.  A folder that cannot be listed is noted in `skipped` too.
    """
    entries: list[Entry] = []
    try:
        with os.scandir(directory) as listing:
            for dir_entry in listing:
                path = dir_entry.path
                if dir_entry.is_symlink():
                    path = os.path.realpath(path)
                    if not is_inside(path, root):
                        skipped.append((relative(dir_entry.path, root), ESCAPES_ROOT))
                        continue
                    if not os.path.exists(path):
                        skipped.append((relative(dir_entry.path, root), BROKEN_LINK))
                        continue
                entries.append(Entry(dir_entry.name, path, dir_entry.is_dir()))
    except OSError as error:
        skipped.append((relative(directory, root), f"cannot list folder: {error.strerror}"))
        return []
    entries.sort(key=lambda entry: entry.name)
    return entries


from sclmd.data.sources import avspeech, voxceleb, voxsynth  # noqa: E402  (they use the helpers above)

Scanner = Callable[[PrepareParams, Path], SourceScan]

SCANNERS: dict[str, Scanner] = {
    "voxsynth": voxsynth.scan,
    "avspeech": avspeech.scan,
    "voxceleb1": voxceleb.scan_voxceleb1,
    "voxceleb2": voxceleb.scan_voxceleb2,
}


def scan_source(params: PrepareParams, project_root: Path) -> SourceScan:
    """The clips of the source that `params.source` names."""
    return SCANNERS[params.source](params, Path(project_root))
