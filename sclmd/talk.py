"""`sclmd talk`: a voice file in, a talking-face video (mp4 with that voice) out.

The face is `--face` (any image; the centre square is used, as `prepare` crops faces), or,
without it, the face SCLDM draws from the same voice. The head pose follows the voice
(the talker's pose head) unless `--pose` gives one: a CSV with columns yaw, pitch, roll
in degrees, or a .npy [frames, 3], one row per 25 fps frame.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sclmd.errors import ClipRejected, SclmdError

MAX_SECONDS = 60.0
MIN_SECONDS = 0.5
SILENCE_DBFS = -55.0


def load_voice(path: Path, sample_rate: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """float32 mono at `sample_rate`, at most `max_seconds` (the rest is not used); SclmdError if unusable."""
    from sclmd.config import DataParams
    from sclmd.data.audio import prepare_audio

    try:
        prepared = prepare_audio(
            Path(path),
            DataParams(sample_rate=sample_rate, clip_seconds=max_seconds),
            min_seconds=MIN_SECONDS,
            silence_dbfs=SILENCE_DBFS,
            end=max_seconds + 1.0,
        )
    except ClipRejected as e:
        raise SclmdError(f"{path}: {e.reason}") from None
    keep = int(round(min(prepared.source_seconds, max_seconds) * sample_rate))
    return prepared.samples[:keep].astype(np.float32) / 32768.0


def load_face(path: Path, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the centre square of any image file; SclmdError if unusable."""
    from sclmd.data.image import prepare_face

    try:
        return prepare_face(Path(path), size, min_px=16)
    except ClipRejected as e:
        raise SclmdError(f"{path}: {e.reason}. Give a face image (PNG, JPEG, ...), roughly centred.") from None


def load_pose(path: Path, n_frames: int) -> np.ndarray:
    """float32 [n_frames, 3] yaw, pitch, roll (degrees) from a CSV (header yaw,pitch,roll) or .npy."""
    path = Path(path)
    if not path.is_file():
        raise SclmdError(f"{path}: no such pose file")
    if path.suffix.lower() == ".npy":
        try:
            pose = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise SclmdError(f"{path}: not a readable .npy array ({e})") from None
    else:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"yaw", "pitch", "roll"} - set(reader.fieldnames or [])
            if missing:
                raise SclmdError(
                    f"{path}: needs a header with columns yaw, pitch, roll (missing: {', '.join(sorted(missing))})"
                )
            rows = []
            for n, row in enumerate(reader, start=2):
                try:
                    rows.append([float(row["yaw"]), float(row["pitch"]), float(row["roll"])])
                except (TypeError, ValueError):
                    raise SclmdError(
                        f"{path}, row {n}: yaw, pitch and roll must be numbers (degrees), got "
                        f"{row['yaw']!r}, {row['pitch']!r}, {row['roll']!r}"
                    ) from None
        pose = np.array(rows, dtype=np.float32).reshape(-1, 3)
    if pose.ndim != 2 or pose.shape[1] != 3:
        raise SclmdError(f"{path}: expected [frames, 3] (yaw, pitch, roll), got shape {list(pose.shape)}")
    if not np.isfinite(pose).all():
        raise SclmdError(f"{path}: holds non-finite values")
    if len(pose) < n_frames:
        raise SclmdError(
            f"{path}: {len(pose)} rows, but the voice lasts {n_frames} frames at 25 fps: give one row per "
            "frame (extra rows are ignored)"
        )
    if np.abs(pose).max() > 45:
        raise SclmdError(
            f"{path}: angles up to {np.abs(pose).max():.0f} degrees; the talker was trained on a few "
            "degrees (|angle| <= 45 accepted). Give degrees, not radians x 100 or similar."
        )
    return pose[:n_frames].astype(np.float32)


def talk(
    voice: Path,
    out: Path,
    *,
    face: Path | None = None,
    pose: Path | None = None,
    talker_dir: Path | None = None,
    checkpoint: Path | None = None,
    method: str = "dae",
    seed: int = 0,
    steps: int | None = None,
    max_seconds: float = MAX_SECONDS,
    scale: int = 4,
    code: str = "noise",
) -> dict:
    """Writes the video; returns what was used (talker, face source, frames, seconds). `talker_dir`: the talker
    (None: `sclmd.model_choice.choose_talker`'s default); `checkpoint`: the SCLDM that draws the face when none is
    given (None: `sclmd.model_choice.choose_model`'s default)."""
    import torch

    from sclmd.data.video import write_mp4
    from sclmd.evaluate.talker import to_uint8
    from sclmd.models.talker import STOCHASTIC_CODES, TalkingFace, frames_for

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise SclmdError(f"-o {out}: the output is an mp4 video; give a name ending in .mp4")
    if method not in TalkingFace.METHODS:
        raise SclmdError(f"--method '{method}' is not one of: {', '.join(TalkingFace.METHODS)}")
    if code not in STOCHASTIC_CODES:
        raise SclmdError(f"--code '{code}' is not one of: {', '.join(STOCHASTIC_CODES)}")
    if not 1 <= scale <= 16:
        raise SclmdError(f"--scale must be 1 to 16, got {scale}")
    if steps is not None and steps < 2:
        raise SclmdError(f"--steps must be 2 or more, got {steps}")
    from sclmd.env import project_root
    from sclmd.model_choice import choose_talker

    chosen = choose_talker(project_root(), talker_dir)
    talker = TalkingFace.from_pretrained(chosen.folder)
    size = talker.face.face_encoder.config.image_size
    wave = load_voice(voice, talker.cfg.sample_rate, max_seconds)
    n_frames = frames_for(len(wave), talker.cfg)
    given_pose = None if pose is None else torch.from_numpy(load_pose(pose, n_frames))
    if face is not None:
        face_image, source = load_face(face, size), str(face)
    else:
        import tempfile

        from sclmd.model_choice import choose_model
        from sclmd.models.pipeline import SpeechToFacePipeline

        choice = choose_model(project_root(), checkpoint)  # None: the champion, else the shipped release model
        with tempfile.TemporaryDirectory(prefix="sclmd-model-") as tmp:
            folder = choice.checkpoint
            if choice.model_uri:
                from sclmd.registry.versions import download_pipeline

                folder = download_pipeline(choice.model_uri, project_root(), Path(tmp))
            pipeline = SpeechToFacePipeline.from_pretrained(folder)
        checkpoint = choice.says
        need = int(round(pipeline.data["sample_rate"] * pipeline.data["clip_seconds"]))
        with torch.no_grad():
            drawn = pipeline(pipeline.speech_embedding(torch.from_numpy(np.resize(wave, need))[None]), seed=seed)
        face_image, source = to_uint8(drawn)[0], f"SCLDM ({checkpoint}, seed {seed})"
    frames, _ = talker.speak(
        torch.from_numpy(wave),
        torch.from_numpy(np.ascontiguousarray(face_image)),
        method=method,
        pose=given_pose,
        n_frames=n_frames,
        steps=steps,
        code=code,
        seed=seed,
    )
    video = to_uint8(frames)
    if scale > 1:  # the model draws 64 px faces; a player shows them larger without blurring the pixels away
        from PIL import Image

        side = video.shape[1] * scale
        video = np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.Resampling.LANCZOS)) for f in video])
    write_mp4(out, video, wave, talker.cfg.sample_rate, talker.cfg.fps)
    return {
        "talker": chosen.says,
        "face": source,
        "frames": n_frames,
        "seconds": round(len(wave) / talker.cfg.sample_rate, 2),
        "pose": str(pose) if pose else f"predicted from the voice, with a sampled drift (seed {seed})",
        "out": str(out),
    }
