"""Tiny but real media files and data-set trees for tests.

Everything is written with soundfile, PyAV and Pillow (no ffmpeg binary needed) and
kept small so that a test builds what it needs in milliseconds.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image, ImageDraw

from sclmd.config import AVSpeechParams, VoxCelebParams

RED = (220, 40, 40)
VIDEO_BACKGROUND = (90, 90, 90)


def write_wav(path: Path, signal: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """`signal` is [samples] or [channels, samples], floats in [-1, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = signal.T if signal.ndim == 2 else signal
    soundfile.write(path, frames, sr, subtype=subtype)
    return path


def tone(seconds: float, sr: int, frequency: float, amplitude: float = 0.5) -> np.ndarray:
    """A sine, float32 [samples]."""
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def voice_like(seconds: float, sr: int, channels: int = 1, f0: float = 120) -> np.ndarray:
    """A buzzy voiced sound, float32 [channels, samples], peak 0.5.

    Harmonics of `f0` (up to Nyquist, falling off as 1/k like a glottal buzz) with a
    slight vibrato and a 4 Hz syllable-rate envelope, so it is neither silent nor a
    pure tone.  Channels differ only by a small gain, so a downmix keeps the pitch.
    """
    t = np.arange(round(seconds * sr)) / sr
    phase = 2 * np.pi * f0 * t + 0.3 * np.sin(2 * np.pi * 5 * t)  # ~2 % vibrato
    harmonics = range(1, max(2, int(sr / 2 / (f0 * 1.03))))
    buzz = sum(np.sin(k * phase) / k for k in harmonics)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    mono = buzz * envelope
    mono = 0.5 * mono / np.max(np.abs(mono))
    gains = np.linspace(1.0, 0.8, channels)[:, None]
    return (gains * mono).astype(np.float32)


def _add_audio_stream(
    container: av.container.OutputContainer, signal: np.ndarray, sr: int
) -> tuple[av.audio.stream.AudioStream, np.ndarray]:
    """An AAC stream for `signal` ([samples] or [channels, samples]), and the signal
    as planar float32 [channels, samples]."""
    planar = np.atleast_2d(signal).astype(np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    return container.add_stream("aac", rate=sr, layout=layout), planar


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    planar: np.ndarray,
) -> None:
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
    frame.sample_rate = stream.rate
    frame.pts = 0
    frame.time_base = Fraction(1, stream.rate)
    # One frame holding the whole signal: PyAV cuts it into the encoder's frame size.
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_m4a(path: Path, signal: np.ndarray, sr: int) -> Path:
    """AAC in an MP4 (m4a) container; `signal` is mono [samples] or stereo [2, samples]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        _encode_audio(container, *_add_audio_stream(container, signal, sr))
    return path


def video_frame(
    index: int,
    n_frames: int,
    size: tuple[int, int],
    face_color: tuple[int, int, int],
    face_center: tuple[float, float],
    face_radius: float,
) -> Image.Image:
    """Frame `index`: a disc (the "face") on a background that brightens over time."""
    width, height = size
    level = int(40 + 160 * index / max(1, n_frames - 1))
    image = Image.new("RGB", size, (level, level, level))
    x, y, r = face_center[0] * width, face_center[1] * height, face_radius * height
    ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill=face_color)
    return image


def write_mp4(
    path: Path,
    seconds: float,
    fps: int,
    size: tuple[int, int],
    sr: int,
    with_audio: bool = True,
    face_color: tuple[int, int, int] = RED,
    face_center: tuple[float, float] = (0.5, 0.5),
    face_radius: float = 0.12,
    audio: np.ndarray | None = None,
    picture: Image.Image | None = None,
) -> Path:
    """H.264 video (size = (width, height), even numbers) plus an AAC track.

    With `picture` every frame is that picture (resized to `size`): a still of real faces.

    Each frame shows a `face_color` disc of radius `face_radius` (fraction of the
    height) at `face_center`, on a grey background that goes from dark (first frame)
    to light (last), so tests can tell frames apart.  The audio is `audio` (mono
    [samples] at `sr`) or else `voice_like`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = round(seconds * fps)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        # Every stream must exist before the first packet is muxed.
        if with_audio:
            signal = voice_like(seconds, sr)[0] if audio is None else audio
            audio_stream, planar = _add_audio_stream(container, signal, sr)
        for index in range(n_frames):
            image = (
                video_frame(index, n_frames, size, face_color, face_center, face_radius)
                if picture is None
                else picture.resize(size)
            )
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if with_audio:
            _encode_audio(container, audio_stream, planar)
    return path


def write_image(path: Path, mode: str, size: tuple[int, int], color: tuple[int, int, int] = RED) -> Path:
    """An image of `mode` (any PIL mode the format takes) and size (width, height).

    A `color` disc in the middle of a light-grey field; in alpha modes the field is
    fully transparent.  The format follows the suffix (CMYK needs .jpg or .tif).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = Image.new("RGBA", size, (200, 200, 200, 0 if "A" in mode else 255))
    r = min(size) / 4
    ImageDraw.Draw(image).ellipse((width / 2 - r, height / 2 - r, width / 2 + r, height / 2 + r), fill=(*color, 255))
    if mode.startswith("I;16"):
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(path)  # uint16 -> mode I;16
    elif mode in ("RGBA", "LA", "PA"):
        image.convert(mode).save(path)
    else:
        image.convert("RGB").convert(mode).save(path)
    return path


def make_avspeech_tree(
    root: Path, n_videos: int, missing: int = 0, full_videos: int = 0, seconds: float = 2.0
) -> AVSpeechParams:
    """An AVSpeech CSV with one segment per video, and its downloaded videos.

    The last `missing` videos are not written (link rot); of the others, the first
    `full_videos` are written as full videos (``<ytid>.mp4``, segment [0.5, 0.5 +
    seconds]) and the rest as pre-cut segments.  Faces are at (0.4, 0.5).  Returns
    params with absolute paths.
    """
    root = Path(root)
    videos_dir = root / "clips"
    videos_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n_videos):
        ytid = f"v{index:02d}-Ab_cDe"  # YouTube ids use letters, digits, '-' and '_'
        start, end = 0.5, 0.5 + seconds
        rows.append(f"{ytid},{start:.6f},{end:.6f},0.400000,0.500000\n")
        if index >= n_videos - missing:
            continue
        if index < full_videos:
            write_mp4(videos_dir / f"{ytid}.mp4", end + 0.5, 10, (96, 64), 16000, face_center=(0.4, 0.5))
        else:
            write_mp4(
                videos_dir / f"{ytid}_{start:.6f}_{end:.6f}.mp4",
                seconds,
                10,
                (96, 64),
                16000,
                face_center=(0.4, 0.5),
            )
    csv_path = root / "avspeech_train.csv"
    csv_path.write_text("".join(rows))
    return AVSpeechParams(csv=str(csv_path), videos_dir=str(videos_dir))


def _write_faces(folder: Path, count: int) -> None:
    for index in range(count):
        write_image(folder / f"{index + 1:04d}_01.jpg", "RGB", (40, 48))


def make_voxceleb1_tree(
    root: Path,
    n_speakers: int = 3,
    videos_per_speaker: int = 2,
    utterances_per_video: int = 2,
    faces_per_speaker: int = 2,
    seconds: float = 1.5,
) -> VoxCelebParams:
    """vox1_meta.csv (tab-separated), wav/<id>/<ytid>/NNNNN.wav, faces/<VGGFace1 ID>/.

    Speakers alternate m, f.  Returns params with absolute paths.
    """
    root = Path(root)
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"]
    for speaker in range(n_speakers):
        vox_id, name = f"id1{speaker:04d}", f"Celebrity_{speaker}.Name"
        gender = "mf"[speaker % 2]
        lines.append(f"{vox_id}\t{name}\t{gender}\tUSA\tdev\n")
        for video in range(videos_per_speaker):
            for utterance in range(utterances_per_video):
                write_wav(
                    root / "wav" / vox_id / f"yt{speaker}v{video}_x" / f"{utterance + 1:05d}.wav",
                    voice_like(seconds, 16000, f0=110 + 20 * speaker),
                    16000,
                )
        _write_faces(root / "faces" / name, faces_per_speaker)
    (root / "vox1_meta.csv").write_text("".join(lines))
    return VoxCelebParams(meta=str(root / "vox1_meta.csv"), audio_dir=str(root / "wav"), faces_dir=str(root / "faces"))


def make_voxceleb2_tree(
    root: Path,
    n_speakers: int = 2,
    videos_per_speaker: int = 1,
    utterances_per_video: int = 2,
    faces_per_speaker: int = 2,
    seconds: float = 1.5,
) -> VoxCelebParams:
    """vox2_meta.csv (comma-separated, trailing spaces as distributed),
    aac/<id>/<ytid>/NNNNN.m4a, faces/<VGGFace2 ID>/.  Speakers alternate m, f.
    Returns params with absolute paths.
    """
    root = Path(root)
    lines = ["VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n"]
    for speaker in range(n_speakers):
        vox_id, name = f"id0{speaker:04d}", f"n00{speaker:04d}"
        gender = "mf"[speaker % 2]
        lines.append(f"{vox_id} ,{name} ,{gender} ,dev \n")
        for video in range(videos_per_speaker):
            for utterance in range(utterances_per_video):
                write_m4a(
                    root / "aac" / vox_id / f"yt{speaker}v{video}-y" / f"{utterance + 1:05d}.m4a",
                    voice_like(seconds, 16000, f0=110 + 20 * speaker)[0],
                    16000,
                )
        _write_faces(root / "faces" / name, faces_per_speaker)
    (root / "vox2_meta.csv").write_text("".join(lines))
    return VoxCelebParams(meta=str(root / "vox2_meta.csv"), audio_dir=str(root / "aac"), faces_dir=str(root / "faces"))


def make_voxsynth_tree(
    root: Path,
    n_speakers: int = 3,
    utterances_per_speaker: int = 3,
    faces_per_speaker: int = 2,
    seconds: float = 1.5,
) -> Path:
    """speakers.csv, wav/<speaker_id>/<utt:02d>.wav, faces/<speaker_id>/<k:02d>.png.

    Speakers alternate f, m and are 20 + speaker years old.  Returns the root.
    """
    root = Path(root)
    lines = ["speaker_id,gender,age,f0\n"]
    for speaker in range(n_speakers):
        speaker_id, f0 = f"s{speaker:03d}", 110 + 20 * speaker
        lines.append(f"{speaker_id},{'fm'[speaker % 2]},{20 + speaker},{f0}\n")
        for utterance in range(utterances_per_speaker):
            write_wav(
                root / "wav" / speaker_id / f"{utterance:02d}.wav",
                voice_like(seconds, 16000, f0=f0),
                16000,
            )
        for index in range(faces_per_speaker):
            write_image(root / "faces" / speaker_id / f"{index:02d}.png", "RGB", (32, 32))
    root.mkdir(parents=True, exist_ok=True)
    (root / "speakers.csv").write_text("".join(lines))
    return root


def real_photos() -> dict[str, Path]:
    """Real photos of faces that ship inside installed packages (nothing is downloaded):
    scikit-image's astronaut (Eileen Collins, NASA) and matplotlib's Grace Hopper (US Navy),
    both public domain; and scikit-image's coffee cup (no face)."""
    import matplotlib
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return {
        "Collins": data / "astronaut.png",
        "Hopper": Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg",
        "coffee": data / "coffee.png",
    }


def make_real_photo_voxceleb1_tree(
    root: Path, n_speakers: int, faces_per_speaker: int = 2, utterances_per_speaker: int = 2
) -> VoxCelebParams:
    """A VoxCeleb1-format tree whose face images are real photos, framed differently per image
    (offsets, flips, backgrounds).  There are only two real people, so "speakers" alternate
    between Collins and Hopper; the gender column alternates f, m as fixture metadata (both are
    women: labels here are not facts, the tree exists to run the pipeline on real photos)."""
    root = Path(root)
    photos = real_photos()
    rng = np.random.default_rng(0)
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for k in range(n_speakers):
        vox_id, person = f"id{10001 + k}", ("Collins", "Hopper")[k % 2]
        name = f"{person}_{k:02d}"
        meta.append(f"{vox_id}\t{name}\t{'fm'[k % 2]}\tUSA\tdev")
        for u in range(utterances_per_speaker):
            write_wav(
                root / "wav" / vox_id / f"yt{k:02d}" / f"{u + 1:05d}.wav",
                voice_like(1.5, 16000, f0=110 + 15 * k),
                16000,
            )
        base = Image.open(photos[person]).convert("RGB").resize((400, 460))
        folder = root / "faces" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(faces_per_speaker):
            canvas = Image.new("RGB", (560, 600), tuple(int(c) for c in rng.integers(20, 230, 3)))
            picture = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if (k + i) % 2 else base
            canvas.paste(picture, (int(rng.integers(0, 160)), int(rng.integers(0, 140))))
            canvas.save(folder / f"{i + 1:04d}_01.jpg", quality=90)
    (root / "vox1_meta.csv").write_text("\n".join(meta) + "\n")
    return VoxCelebParams(meta=str(root / "vox1_meta.csv"), audio_dir=str(root / "wav"), faces_dir=str(root / "faces"))
