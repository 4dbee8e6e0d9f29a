"""Talking-face videos on disk: mp4 (H.264 + AAC through PyAV) in, frames and audio out.

The encoder settings are fixed (yuv420p, CRF 18, no B-frames) so that a written file
decodes to the same frames on every machine with the same PyAV build.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from sclmd.errors import SclmdError
from sclmd.io import atomic_file

FPS = 25


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None, sample_rate: int, fps: int = FPS) -> None:
    """frames uint8 [T, H, W, 3] (H, W even) and mono float audio in [-1, 1] -> an mp4, atomically."""
    import av

    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SclmdError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise SclmdError(f"{path}: H.264 needs an even frame size, got {frames.shape[2]}x{frames.shape[1]}")
    with atomic_file(Path(path)) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            video.options = {"crf": "18", "bf": "0", "threads": "1"}
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=sample_rate)
                sound.layout = "mono"
            for frame in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if sound is not None:
                pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)[None]
                chunk = 1024
                for start in range(0, pcm.shape[1], chunk):
                    frame = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(pcm[:, start : start + chunk]), format="fltp", layout="mono"
                    )
                    frame.sample_rate = sample_rate
                    frame.pts = start
                    frame.time_base = Fraction(1, sample_rate)
                    for packet in sound.encode(frame):
                        container.mux(packet)
                for packet in sound.encode():
                    container.mux(packet)


def read_frames(path: Path) -> np.ndarray:
    """uint8 [T, H, W, 3] of an mp4's first video stream."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SclmdError(f"{path}: no video stream")
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    except av.FFmpegError as e:
        raise SclmdError(f"{path}: not a readable video ({e})") from e


def video_info(path: Path) -> dict:
    """Frame count, frame rate, size and audio rate of a video (for tests and reports)."""
    import av

    with av.open(str(path)) as container:
        v = container.streams.video[0]
        a = container.streams.audio[0] if container.streams.audio else None
        n = sum(1 for _ in container.decode(video=0))
        return {
            "frames": n,
            "fps": float(v.average_rate),
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "audio_rate": a.rate if a else None,
        }
