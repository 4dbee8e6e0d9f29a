"""VoxSynth, the embedded synthetic data set written by the `synth` stage.

Layout under `prepare.voxsynth_dir`::

    speakers.csv                    header row; columns speaker_id, gender (f/m), age, ...
    wav/<speaker_id>/<utt:02d>.wav
    faces/<speaker_id>/<k:02d>.png

Utterance `utt` is paired with face `utt % n_faces` of the same speaker (faces in
sorted order); clip_id is f"{speaker_id}_{utt}".
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from sclmd.config import PrepareParams
from sclmd.data.records import RawClip, SourceScan
from sclmd.data.sources import Entry, Skipped, is_inside, list_entries, relative, resolve_dir
from sclmd.errors import SclmdError

SOURCE = "voxsynth"
SPEAKERS_FILE = "speakers.csv"
REQUIRED_COLUMNS = ("speaker_id", "gender", "age")
RUN_SYNTH = "Run `sclmd stage synth` (or `dvc repro synth`) first."


def _read_speakers(path: Path, skipped: Skipped) -> dict[str, tuple[str | None, float | None]]:
    """speaker_id -> (gender, age), from speakers.csv."""
    if not path.is_file():
        raise SclmdError(f"{path}: VoxSynth speaker list not found. {RUN_SYNTH}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SclmdError(
                    f"{path}: missing column(s) {', '.join(missing)} "
                    f"(found: {', '.join(reader.fieldnames or []) or 'nothing'}). "
                    f"The file is written by the synth stage: {RUN_SYNTH}"
                )
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise SclmdError(f"{path}: not a readable CSV file ({error}). {RUN_SYNTH}") from None
    speakers: dict[str, tuple[str | None, float | None]] = {}
    for row_number, row in enumerate(rows, start=2):  # row 1 is the header
        speaker_id = (row["speaker_id"] or "").strip()
        gender = (row["gender"] or "").strip().lower()
        try:
            age = float(row["age"]) if (row["age"] or "").strip() else None
        except ValueError:
            skipped.append(
                (
                    f"{SPEAKERS_FILE} row {row_number}",
                    f"row {row_number}: age {row['age']!r} is not a number",
                )
            )
            continue
        if not speaker_id:
            skipped.append((f"{SPEAKERS_FILE} row {row_number}", f"row {row_number}: empty speaker_id"))
            continue
        speakers[speaker_id] = (gender if gender in ("f", "m") else None, age)
    return speakers


def _utterances(folder: str, root: str, skipped: Skipped) -> list[tuple[int, str]]:
    """(utterance number, path) of a speaker's wav files, by number."""
    utterances: list[tuple[int, str]] = []
    for entry in list_entries(folder, root, skipped):
        if entry.is_dir or not entry.name.endswith(".wav"):
            continue
        stem = entry.name.removesuffix(".wav")
        if not stem.isdigit():
            skipped.append((relative(entry.path, root), "utterance file name is not a number"))
            continue
        utterances.append((int(stem), entry.path))
    return sorted(utterances)


def _faces(folder: str | None, root: str, skipped: Skipped) -> list[str]:
    if folder is None:
        return []
    entries = list_entries(folder, root, skipped)
    return [e.path for e in entries if not e.is_dir and e.name.endswith(".png")]


def _subfolder_entries(root: str, name: str, skipped: Skipped) -> list[Entry]:
    folder = os.path.realpath(os.path.join(root, name))
    if not os.path.isdir(folder):
        raise SclmdError(f"{os.path.join(root, name)}: VoxSynth folder missing. {RUN_SYNTH}")
    if not is_inside(folder, root):
        raise SclmdError(
            f"{os.path.join(root, name)}: resolves to {folder}, outside the VoxSynth "
            f"directory {root}. Keep the whole data set under one folder (no symlinks out "
            "of it)."
        )
    return list_entries(folder, root, skipped)


def scan(params: PrepareParams, project_root: Path) -> SourceScan:
    root_dir = resolve_dir(project_root, params.voxsynth_dir, "VoxSynth data directory", RUN_SYNTH)
    root = str(root_dir)
    skipped = Skipped()
    speakers = _read_speakers(root_dir / SPEAKERS_FILE, skipped)
    wav_dirs = {e.name: e.path for e in _subfolder_entries(root, "wav", skipped) if e.is_dir}
    face_dirs = {e.name: e.path for e in _subfolder_entries(root, "faces", skipped) if e.is_dir}
    clips: list[RawClip] = []
    for speaker_id in sorted(speakers):
        gender, age = speakers[speaker_id]
        # Names come from the speaker list, so they are looked up in the listings
        # (never joined onto a path): a '../x' id cannot reach outside the root.
        if speaker_id not in wav_dirs:
            skipped.append((speaker_id, "no wav/<speaker_id>/ folder"))
            continue
        faces = _faces(face_dirs.get(speaker_id), root, skipped)
        if not faces:
            skipped.append((speaker_id, "no face images in faces/<speaker_id>/"))
            continue
        utterances = _utterances(wav_dirs[speaker_id], root, skipped)
        if params.max_clips_per_speaker:
            utterances = utterances[: params.max_clips_per_speaker]
        for utterance, wav_path in utterances:
            clips.append(
                RawClip(
                    source=SOURCE,
                    root=root,
                    clip_id=f"{speaker_id}_{utterance}",
                    speaker_id=speaker_id,
                    audio_path=relative(wav_path, root),
                    face_path=relative(faces[utterance % len(faces)], root),
                    gender=gender,
                    age=age,
                )
            )
    return SourceScan(clips=clips, skipped=skipped)
