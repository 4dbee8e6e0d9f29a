"""What a source reader hands to `prepare`: one raw clip, not yet decoded."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawClip:
    """One (voice, face) pair as found in a source data set.

    Paths are relative to `root` (the source's data root) so that a manifest never
    points outside it.  Audio may come from an audio file or from a video's audio
    track; the face from an image file or from a video frame.
    """

    source: str
    root: str
    clip_id: str
    speaker_id: str
    audio_path: str
    face_path: str
    audio_start: float | None = None  # seconds into audio_path (videos: AVSpeech segments)
    audio_end: float | None = None
    face_time: float | None = None  # seconds into face_path when it is a video
    face_center: tuple[float, float] | None = None  # (x, y) in 0-1 of the frame
    gender: str | None = None  # "f" | "m" | None when unknown
    age: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SourceScan:
    """A source's clips plus what was skipped while listing them (e.g. link rot)."""

    clips: list[RawClip]
    skipped: list[tuple[str, str]]  # (item, reason)
