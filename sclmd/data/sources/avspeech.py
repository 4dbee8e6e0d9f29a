"""AVSpeech: YouTube segments of one visible, audible speaker.

`prepare.avspeech.csv` is the official CSV (avspeech_train.csv / avspeech_test.csv):
no header, one segment per row::

    <YouTube id>,<start seconds>,<end seconds>,<face centre x>,<face centre y>

with the face centre normalised to 0-1 of the frame (x from the left, y from the
top).  The videos are the user's own downloads, all directly in
`prepare.avspeech.videos_dir` (which is the data root), named in one of two ways,
looked up in this order:

1. a pre-cut segment: ``<ytid>_<start>_<end>.<ext>`` with start and end written
   with six decimals, as in the CSV (e.g. ``AvWWVOgaMlk_90.000000_93.566667.mp4``);
   audio is the whole file and the face frame is at (end - start) / 2 seconds;
2. the full video: ``<ytid>.<ext>``; audio is cut to [start, end] seconds and the
   face frame is at (start + end) / 2 seconds.

`<ext>` is one of mp4, mkv, webm.  A segment with neither file is skipped with the
reason "video not downloaded" (link rot makes that normal, not an error); a missing
CSV or videos folder is an error.  Malformed rows are skipped ("row N: ...").  Skipped rows
are counted, and a bounded sample of them kept (`SkipTally`): the CSV is streamed, so memory
follows the downloaded segments, not the CSV's length.

AVSpeech has no identity labels, so speaker_id is the YouTube id: one video, one
speaker as far as splits and `max_clips_per_speaker` are concerned (the same person
may still appear in other videos).  Gender and age are unknown (None).  The face
crop box, `prepare.avspeech.face_box`, is not in the RawClip: `prepare` passes it
to `face_from_video` with the clip's face_center.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from sclmd.config import PrepareParams
from sclmd.data.records import RawClip, SourceScan
from sclmd.data.sources import Skipped, list_entries, relative, resolve_dir
from sclmd.errors import SclmdError

SOURCE = "avspeech"
VIDEO_EXTENSIONS = ("mp4", "mkv", "webm")
NOT_DOWNLOADED = "video not downloaded"


@dataclass(frozen=True)
class Segment:
    ytid: str
    start: float
    end: float
    center: tuple[float, float]

    @property
    def name(self) -> str:
        """The pre-cut segment's file name, without extension; also the clip id."""
        return f"{self.ytid}_{self.start:.6f}_{self.end:.6f}"


def _parse_row(fields: list[str]) -> Segment:
    """One CSV row as a Segment; ValueError says what is wrong with it.  (Runs 2.6M times on
    the real CSV: plain statements rather than generator expressions.)"""
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (ytid,start,end,x,y), found {len(fields)}")
    ytid = fields[0].strip()
    if not ytid:
        raise ValueError("empty YouTube id")
    try:
        start, end, x, y = float(fields[1]), float(fields[2]), float(fields[3]), float(fields[4])
    except ValueError:
        raise ValueError(f"start, end, x, y must be numbers, got {fields[1:]}") from None
    if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(x) and math.isfinite(y)):
        raise ValueError("start, end, x, y must be finite")
    if start < 0 or end <= start:
        raise ValueError(f"segment [{start:g}, {end:g}] s is not a valid time range")
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"face centre ({x:g}, {y:g}) is outside 0-1")
    return Segment(ytid, start, end, (x, y))


def _videos_by_stem(videos: dict[str, str]) -> dict[str, str]:
    """File name without extension -> path, for the video extensions (mp4 before mkv before webm)."""
    by_stem: dict[str, str] = {}
    for extension in reversed(VIDEO_EXTENSIONS):  # the preferred extension is written last and wins
        suffix = f".{extension}"
        for name, path in videos.items():
            if name.endswith(suffix):
                by_stem[name[: -len(suffix)]] = path
    return by_stem


def _present_segments(path: Path, videos: dict[str, str], skipped: Skipped) -> list[tuple[Segment, str, bool]]:
    """(segment, video path, pre-cut?) for each CSV row whose video (`videos`: by file name
    without extension) is downloaded, sorted by
    (ytid, start, end); every other row is counted in `skipped`.

    The CSV is streamed: memory grows with the downloaded segments only, never with the
    CSV's 2.6M rows (`benchmarks/prepare_scale.py`).  Repeated rows are found among the
    downloaded segments; a repeat of a row whose video is missing counts as not downloaded.
    """
    present: list[tuple[Segment, str, bool]] = []
    seen: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for row_number, fields in enumerate(csv.reader(handle), start=1):
                if not fields:
                    continue
                try:
                    segment = _parse_row(fields)
                except ValueError as error:
                    skipped.append((f"{path.name} row {row_number}", f"row {row_number}: {error}"))
                    continue
                name = segment.name
                if (video := videos.get(name)) is not None:
                    pre_cut = True
                elif (video := videos.get(segment.ytid)) is not None:
                    pre_cut = False
                else:
                    skipped.append((name, NOT_DOWNLOADED))
                    continue
                if name in seen:
                    skipped.append((f"{path.name} row {row_number}", f"row {row_number}: repeats row {seen[name]}"))
                    continue
                seen[name] = row_number
                present.append((segment, video, pre_cut))
    except (UnicodeDecodeError, csv.Error) as error:
        raise SclmdError(
            f"{path}: not a readable AVSpeech CSV ({error}). Expected the official file: "
            "no header, rows of ytid,start,end,x,y."
        ) from None
    present.sort(key=lambda p: (p[0].ytid, p[0].start, p[0].end))
    return present


def scan(params: PrepareParams, project_root: Path) -> SourceScan:
    settings = params.avspeech
    csv_path = Path(project_root) / settings.csv
    if not csv_path.is_file():
        raise SclmdError(
            f"{csv_path}: AVSpeech CSV not found. Download avspeech_train.csv (or _test) from "
            "the AVSpeech site and set prepare.avspeech.csv in params.yaml."
        )
    skipped = Skipped()
    root_dir = resolve_dir(
        project_root,
        settings.videos_dir,
        "AVSpeech videos directory",
        "Download the videos (see sclmd/data/sources/avspeech.py for the file naming) "
        "into it, or set prepare.avspeech.videos_dir in params.yaml.",
    )
    root = str(root_dir)
    # One listing of the folder; names built from the CSV are only looked up in it,
    # so a YouTube id holding '/' or '..' can never reach a file outside the root.
    videos = _videos_by_stem({e.name: e.path for e in list_entries(root, root, skipped) if not e.is_dir})
    clips: list[RawClip] = []
    clips_of_video: dict[str, int] = {}
    for segment, video, pre_cut in _present_segments(csv_path, videos, skipped):
        if params.max_clips_per_speaker and (clips_of_video.get(segment.ytid, 0) >= params.max_clips_per_speaker):
            continue
        if pre_cut:
            audio_start, audio_end = None, None
            face_time = (segment.end - segment.start) / 2
        else:
            audio_start, audio_end = segment.start, segment.end
            face_time = (segment.start + segment.end) / 2
        clips_of_video[segment.ytid] = clips_of_video.get(segment.ytid, 0) + 1
        video_path = relative(video, root)
        clips.append(
            RawClip(
                source=SOURCE,
                root=root,
                clip_id=segment.name,
                speaker_id=segment.ytid,
                audio_path=video_path,
                face_path=video_path,
                audio_start=audio_start,
                audio_end=audio_end,
                face_time=face_time,
                face_center=segment.center,
            )
        )
    return SourceScan(clips=clips, skipped=skipped)
