"""VoxCeleb1 and VoxCeleb2: interview utterances of celebrities, labelled by identity.

Meta files (as distributed):

* VoxCeleb1 `vox1_meta.csv`: TAB-separated, header
  ``VoxCeleb1 ID<TAB>VGGFace1 ID<TAB>Gender<TAB>Nationality<TAB>Set``;
* VoxCeleb2 `vox2_meta.csv`: comma-separated, header
  ``VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set `` (headers and values carry trailing
  spaces, which are stripped).

The separator is taken from the header line (a tab means tab-separated), so a meta
file re-saved with the other separator reads too.

Audio: ``<audio_dir>/<VoxCeleb ID>/<YouTube id>/<NNNNN>.wav`` (VoxCeleb1) or
``.m4a`` (VoxCeleb2), as the official archives unpack.

Faces: neither data set ships face images beside its audio; they come from VGGFace
(VGGFace2 for VoxCeleb2), one folder per identity:
``<faces_dir>/<VGGFace ID>/*.jpg|jpeg|png``, or ``<faces_dir>/<VoxCeleb ID>/...``
(the VGGFace name is looked up first).  Each utterance of a speaker is paired with
one of that speaker's images, round-robin over their sorted names.  Images are
centre-cropped (no face position is known).

Speakers of the meta file with no audio folder are left out quietly (one may
download only part of a release); audio folders of speakers missing from the meta
file, and speakers with no face image, are skipped with a reason.

The data root is the common parent folder of audio_dir and faces_dir.  Gender comes
from the meta file (m/f; anything else is unknown); age is unknown.
clip_id is f"{VoxCeleb ID}_{YouTube id}_{NNNNN}".
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from sclmd.config import PrepareParams, VoxCelebParams
from sclmd.data.records import RawClip, SourceScan
from sclmd.data.sources import Entry, Skipped, list_entries, relative, resolve_dir
from sclmd.errors import SclmdError

FACE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Layout:
    """What differs between the two VoxCeleb releases."""

    source: str  # also the params section name
    id_column: str
    face_id_column: str
    audio_extension: str


VOXCELEB1 = Layout("voxceleb1", "VoxCeleb1 ID", "VGGFace1 ID", ".wav")
VOXCELEB2 = Layout("voxceleb2", "VoxCeleb2 ID", "VGGFace2 ID", ".m4a")


@dataclass(frozen=True)
class Speaker:
    vox_id: str
    face_id: str
    gender: str | None


def _read_meta(path: Path, layout: Layout, skipped: Skipped) -> dict[str, Speaker]:
    fix = f"Set prepare.{layout.source}.meta in params.yaml to the meta file from the VoxCeleb site."
    if not path.is_file():
        raise SclmdError(f"{path}: {layout.source} meta file not found. {fix}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header_line = handle.readline()
            delimiter = "\t" if "\t" in header_line else ","
            header = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter), [])]
            required = (layout.id_column, layout.face_id_column, "Gender")
            missing = [name for name in required if name not in header]
            if missing:
                raise SclmdError(
                    f"{path}: not a {layout.source} meta file: missing column(s) "
                    f"{', '.join(missing)} (found: {', '.join(header) or 'nothing'}). {fix}"
                )
            id_at, face_at, gender_at = (header.index(name) for name in required)
            speakers: dict[str, Speaker] = {}
            for row_number, fields in enumerate(csv.reader(handle, delimiter=delimiter), start=2):
                fields = [field.strip() for field in fields]
                if not any(fields):
                    continue
                if len(fields) < len(header):
                    skipped.append(
                        (
                            f"{path.name} row {row_number}",
                            f"row {row_number}: {len(fields)} fields, expected {len(header)}",
                        )
                    )
                    continue
                gender = fields[gender_at].lower()
                speakers[fields[id_at]] = Speaker(
                    fields[id_at], fields[face_at], gender if gender in ("f", "m") else None
                )
    except (UnicodeDecodeError, csv.Error) as error:
        raise SclmdError(f"{path}: not a readable meta file ({error}). {fix}") from None
    return speakers


def _data_root(audio_dir: Path, faces_dir: Path, layout: Layout) -> str:
    root = os.path.commonpath([audio_dir, faces_dir])
    if root == os.path.dirname(root):  # the filesystem root
        raise SclmdError(
            f"{layout.source}: audio_dir {audio_dir} and faces_dir {faces_dir} share no "
            f"folder but '{root}'. Put both under one data folder (e.g. "
            f"data/raw/{layout.source}/) and set prepare.{layout.source}.audio_dir and "
            "faces_dir in params.yaml."
        )
    return root


def _utterances(speaker_dir: str, root: str, extension: str, skipped: Skipped) -> list[tuple[str, str, str]]:
    """(YouTube id, utterance number, path) of a speaker's audio files, sorted."""
    found: list[tuple[str, str, str]] = []
    for video in list_entries(speaker_dir, root, skipped):
        if not video.is_dir:
            continue
        for entry in list_entries(video.path, root, skipped):
            if not entry.is_dir and entry.name.endswith(extension):
                found.append((video.name, entry.name.removesuffix(extension), entry.path))
    return found


def _faces(face_dir: Entry | None, root: str, skipped: Skipped) -> list[str]:
    if face_dir is None:
        return []
    return [
        entry.path
        for entry in list_entries(face_dir.path, root, skipped)
        if not entry.is_dir and entry.name.lower().endswith(FACE_EXTENSIONS)
    ]


def _scan(params: PrepareParams, project_root: Path, layout: Layout) -> SourceScan:
    settings: VoxCelebParams = getattr(params, layout.source)
    skipped = Skipped()
    speakers = _read_meta(Path(project_root) / settings.meta, layout, skipped)
    audio_dir = resolve_dir(
        project_root,
        settings.audio_dir,
        f"{layout.source} audio directory",
        f"Unpack the audio there or set prepare.{layout.source}.audio_dir in params.yaml.",
    )
    faces_dir = resolve_dir(
        project_root,
        settings.faces_dir,
        f"{layout.source} faces directory",
        f"Put the VGGFace images there (see sclmd/data/sources/voxceleb.py for the layout) "
        f"or set prepare.{layout.source}.faces_dir in params.yaml.",
    )
    root = _data_root(audio_dir, faces_dir, layout)
    speaker_dirs = {e.name: e for e in list_entries(str(audio_dir), root, skipped) if e.is_dir}
    face_dirs = {e.name: e for e in list_entries(str(faces_dir), root, skipped) if e.is_dir}
    faces_folder = relative(str(faces_dir), root)
    meta_name = Path(settings.meta).name
    for vox_id in sorted(speaker_dirs.keys() - speakers.keys()):
        skipped.append((relative(speaker_dirs[vox_id].path, root), f"speaker not listed in {meta_name}"))
    clips: list[RawClip] = []
    # Ids from the meta file are only looked up in the folder listings (never joined
    # onto a path), so a '..' in them cannot reach outside the root.
    for vox_id in sorted(speakers.keys() & speaker_dirs.keys()):
        speaker = speakers[vox_id]
        faces = _faces(face_dirs.get(speaker.face_id) or face_dirs.get(vox_id), root, skipped)
        if not faces:
            skipped.append(
                (
                    vox_id,
                    f"no face images in {faces_folder}/{speaker.face_id}/ or {faces_folder}/{vox_id}/",
                )
            )
            continue
        utterances = _utterances(speaker_dirs[vox_id].path, root, layout.audio_extension, skipped)
        if params.max_clips_per_speaker:
            utterances = utterances[: params.max_clips_per_speaker]
        for index, (ytid, number, audio_path) in enumerate(utterances):
            clips.append(
                RawClip(
                    source=layout.source,
                    root=root,
                    clip_id=f"{vox_id}_{ytid}_{number}",
                    speaker_id=vox_id,
                    audio_path=relative(audio_path, root),
                    face_path=relative(faces[index % len(faces)], root),
                    gender=speaker.gender,
                )
            )
    return SourceScan(clips=clips, skipped=skipped)


def scan_voxceleb1(params: PrepareParams, project_root: Path) -> SourceScan:
    return _scan(params, project_root, VOXCELEB1)


def scan_voxceleb2(params: PrepareParams, project_root: Path) -> SourceScan:
    return _scan(params, project_root, VOXCELEB2)
