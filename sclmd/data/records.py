"""What a source reader hands to `prepare`: one raw clip, not yet decoded."""

from __future__ import annotations

import re
from collections import Counter
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


def reason_kind(reason: str) -> str:
    """A reason without its particulars ('too short: 0.2 s, ...' -> 'too short'), for counting."""
    head = re.split(r"[(:]", reason, maxsplit=1)[0]
    return re.sub(r"\d+(\.\d+)?", "N", head).strip() or "other"


class SkipTally(list):
    """What a scan skipped, as (item, reason) pairs: every one counted by its kind of reason
    (`counts`, `total`), the first `keep` of each kind kept as examples (the list itself).

    Memory stays bounded whatever the source's size: AVSpeech's CSV lists 2.6M segments, and
    with a small share of the videos downloaded nearly all of them are skipped; one kept entry
    per skipped segment took about 300 MB.
    """

    def __init__(self, keep: int = 1000):
        super().__init__()
        self.keep = keep
        self.counts: Counter[str] = Counter()
        self._kinds: dict[str, str] = {}  # reason -> kind, for the reasons that repeat (bounded)

    def append(self, entry: tuple[str, str]) -> None:
        reason = entry[1]
        kind = self._kinds.get(reason)
        if kind is None:
            kind = reason_kind(reason)
            if len(self._kinds) < 10_000:
                self._kinds[reason] = kind
        self.counts[kind] += 1
        if self.counts[kind] <= self.keep:
            super().append(entry)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class SourceScan:
    """A source's clips plus what was skipped while listing them (e.g. link rot)."""

    clips: list[RawClip]
    skipped: SkipTally  # (item, reason) examples, and the counts of all
