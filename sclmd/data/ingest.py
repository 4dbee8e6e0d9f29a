"""Decode one chunk of raw clips into one packed shard.

This is the unit of work that `prepare` fans out over Dask workers: it reads raw
files, never the other shards, and writes exactly its own two .npy files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sclmd.config import DataParams, PrepareParams
from sclmd.data.audio import prepare_audio
from sclmd.data.image import detected_face, face_from_video, prepare_face
from sclmd.data.records import RawClip
from sclmd.data.store import shard_names
from sclmd.errors import ClipRejected

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov"}


@dataclass(frozen=True)
class ShardJob:
    split: str
    index: int
    clips: list[RawClip]


@dataclass(frozen=True)
class ShardResult:
    rows: list[dict]
    rejects: list[dict]


def detects_faces(prep: PrepareParams) -> bool:
    """`prepare.face_detector`: auto detects on the real sources (photos and video frames) and not on
    VoxSynth (drawn faces, already centred; a photo detector does not see them as faces)."""
    if prep.face_detector == "auto":
        return prep.source != "voxsynth"
    return prep.face_detector != "none"


def _load_face(clip: RawClip, face_path: Path, data: DataParams, prep: PrepareParams) -> np.ndarray:
    detect = detects_faces(prep)
    box = prep.avspeech.face_box if clip.face_center else None
    if face_path.suffix.lower() in VIDEO_SUFFIXES:
        return face_from_video(
            face_path,
            clip.face_time or 0.0,
            data.image_size,
            min_px=prep.min_face_px,
            center=clip.face_center,
            box=box,
            detect=detect,
            padding=prep.face_padding,
        )
    if detect:
        return detected_face(
            face_path, data.image_size, min_px=prep.min_face_px, center=clip.face_center, padding=prep.face_padding
        )
    return prepare_face(face_path, data.image_size, min_px=prep.min_face_px, center=clip.face_center, box=box)


def pack_shard(job: ShardJob, out_dir: Path, data: DataParams, prep: PrepareParams) -> ShardResult:
    """Decode job.clips, write `out_dir/shards/<split>-<index>.{audio,faces}.npy`."""
    audios: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    rows: list[dict] = []
    rejects: list[dict] = []
    audio_rel, face_rel = shard_names(job.split, job.index)
    for clip in job.clips:
        root = Path(clip.root)
        try:
            prepared = prepare_audio(
                root / clip.audio_path,
                data,
                min_seconds=prep.min_clip_seconds,
                silence_dbfs=prep.silence_dbfs,
                start=clip.audio_start,
                end=clip.audio_end,
            )
            face = _load_face(clip, root / clip.face_path, data, prep)
        except ClipRejected as e:
            rejects.append(
                {
                    "clip_id": clip.clip_id,
                    "speaker_id": clip.speaker_id,
                    "split": job.split,
                    "file": e.path or clip.audio_path,
                    "reason": e.reason,
                }
            )
            continue
        rows.append(
            {
                "clip_id": clip.clip_id,
                "speaker_id": clip.speaker_id,
                "split": job.split,
                "source": clip.source,
                "audio_file": audio_rel,
                "audio_index": len(audios),
                "face_file": face_rel,
                "face_index": len(faces),
                "gender": clip.gender,
                "age": float(clip.age) if clip.age is not None else float("nan"),
                "duration_s": prepared.source_seconds,
                "orig_sample_rate": prepared.source_rate,
                "sample_rate": data.sample_rate,
                "audio_source": clip.audio_path,
                "face_source": clip.face_path,
            }
        )
        audios.append(prepared.samples)
        faces.append(face)
    if rows:
        (out_dir / audio_rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / audio_rel, np.stack(audios).astype(np.int16, copy=False))
        np.save(out_dir / face_rel, np.stack(faces).astype(np.uint8, copy=False))
    return ShardResult(rows, rejects)
