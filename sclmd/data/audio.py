"""Any audio file (or a video's audio track) to one fixed-length int16 mono clip.

Decoding tries soundfile (libsndfile: wav, flac, ogg, ...) first because it is fast
and exact for PCM, then PyAV (FFmpeg: m4a/aac, mp3, the audio track of
mp4/mkv/webm).  Every way a clip can be unusable ends in `ClipRejected` with a
reason a person can act on; the caller counts it and goes on.

Truncated files: both decoders return whatever whole frames the file still holds
(libsndfile trusts the file length over a wav header that claims more), so a
truncated clip is used when what remains passes the same checks as any other clip
(long enough, finite, not silent), and rejected otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
import torchaudio.functional

from sclmd.config import DataParams
from sclmd.errors import ClipRejected

# Resampling a cut clip zero-pads past its end; keeping this much extra source audio
# (far more than the resampling filter's reach) keeps the kept part exact.
_RESAMPLE_MARGIN_SECONDS = 0.01


def decode_audio(path: Path, start: float | None = None, end: float | None = None) -> tuple[np.ndarray, int]:
    """float32 samples [channels, samples] in [-1, 1] and their sample rate.

    `start`/`end` (seconds from the file's start) cut a segment; either may be None
    for "from the beginning" / "to the end".
    """
    path = Path(path)
    if not path.is_file():
        raise ClipRejected("file not found", str(path))
    if path.stat().st_size == 0:
        raise ClipRejected("empty file (0 bytes)", str(path))
    if start is not None and start < 0:
        raise ClipRejected(f"segment start {start:g} s is negative", str(path))
    if start is not None and end is not None and end <= start:
        raise ClipRejected(f"segment end {end:g} s is not after its start {start:g} s", str(path))
    try:
        return _decode_with_soundfile(path, start, end)
    except soundfile.LibsndfileError as soundfile_error:
        try:
            return _decode_with_pyav(path, start, end)
        except (av.FFmpegError, ValueError) as pyav_error:
            raise ClipRejected(
                f"not readable as audio (soundfile: {soundfile_error}; PyAV: {_describe(pyav_error)})",
                str(path),
            ) from None


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _decode_with_soundfile(path: Path, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    with soundfile.SoundFile(path) as audio_file:
        sample_rate = audio_file.samplerate
        first = 0 if start is None else round(start * sample_rate)
        frames = -1 if end is None else max(0, round(end * sample_rate) - first)
        if first > 0:
            if first >= audio_file.frames:
                return np.zeros((audio_file.channels, 0), np.float32), sample_rate
            audio_file.seek(first)
        # dtype float32 makes libsndfile scale every integer PCM width (unsigned 8-bit
        # included) to [-1, 1].
        samples = audio_file.read(frames, dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.T), sample_rate


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 [channels, samples] in [-1, 1]."""
    raw = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: one row, channels interleaved
        raw = raw.reshape(-1, channels).T
    if raw.dtype == np.uint8:
        return (raw.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.float32) / float(-np.iinfo(raw.dtype).min)
    return raw.astype(np.float32)


def _decode_with_pyav(path: Path, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        if start:
            # Lands on a packet at or before `start`; the samples before it are cut below.
            container.seek(int(start / stream.time_base), stream=stream)
        pieces: list[np.ndarray] = []
        sample_rate = stream.rate
        position = 0.0  # seconds; for frames that carry no timestamp
        for frame in container.decode(stream):
            sample_rate = frame.sample_rate
            samples = _frame_samples(frame)
            frame_start = frame.time if frame.time is not None else position
            position = frame_start + samples.shape[1] / sample_rate
            if start is not None and position <= start:
                continue
            if end is not None and frame_start >= end:
                break
            first = 0 if start is None else max(0, round((start - frame_start) * sample_rate))
            stop = samples.shape[1] if end is None else round((end - frame_start) * sample_rate)
            pieces.append(samples[:, first:stop])
        channels = stream.channels
    if not pieces:
        return np.zeros((channels, 0), np.float32), sample_rate
    return np.concatenate(pieces, axis=1), sample_rate


@dataclass(frozen=True)
class PreparedAudio:
    """One clip ready to pack, plus what it was made from (for the manifest)."""

    samples: np.ndarray  # int16 [clip_samples], mono, at DataParams.sample_rate
    source_seconds: float  # length of the decoded audio (or segment) before looping
    source_rate: int  # the file's own sample rate


def prepare_audio(
    path: Path,
    data: DataParams,
    *,
    min_seconds: float,
    silence_dbfs: float,
    start: float | None = None,
    end: float | None = None,
) -> PreparedAudio:
    """int16 mono [data.clip_samples] at data.sample_rate: the first clip_seconds.

    A clip shorter than clip_seconds (but at least `min_seconds`) is looped to fill
    the window, as Speech2Face does, so no model input is part silence.
    """
    samples, sample_rate = decode_audio(path, start, end)
    where = str(path)
    if samples.shape[1] == 0:
        raise ClipRejected("no audio samples (empty stream or segment)", where)
    if not np.isfinite(samples).all():
        raise ClipRejected("audio holds non-finite samples (NaN or inf)", where)
    mono = samples.mean(axis=0)
    seconds = mono.size / sample_rate
    if seconds < min_seconds:
        raise ClipRejected(f"too short: {seconds:.3f} s, need at least {min_seconds:g} s", where)
    # Loudness of the part that is kept: speech after a long silent lead-in does not
    # save the window from being silent.
    window = mono[: math.ceil(data.clip_seconds * sample_rate)]
    rms = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
    level_dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level_dbfs < silence_dbfs:
        raise ClipRejected(
            f"silent: level {level_dbfs:.1f} dBFS is below the {silence_dbfs:g} dBFS threshold",
            where,
        )
    mono = mono[: math.ceil((data.clip_seconds + _RESAMPLE_MARGIN_SECONDS) * sample_rate)]
    if sample_rate != data.sample_rate:
        mono = torchaudio.functional.resample(
            torch.from_numpy(np.ascontiguousarray(mono)), sample_rate, data.sample_rate
        ).numpy()
    # np.resize keeps the first clip_samples of a long clip and repeats a short one
    # end to start.
    clip = np.resize(mono, data.clip_samples)
    # The same scale soundfile reads int16 with, so a 16 kHz mono int16 wav passes
    # through bit for bit.
    pcm = np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16)
    return PreparedAudio(samples=pcm, source_seconds=seconds, source_rate=sample_rate)
