"""Write the VoxSynth data set: speakers.csv, wav/<speaker>/<utt>.wav, faces/<speaker>/<k>.png.

Every utterance and image has its own random stream, keyed by (seed, speaker, modality,
index), so the files are byte-identical whatever the worker count or scheduling.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont

from sclmd.config import DataParams, SynthParams
from sclmd.data.parallel import map_in_processes
from sclmd.data.voxsynth.attributes import SpeakerAttributes, csv_columns, sample_speakers
from sclmd.data.voxsynth.face import render_face
from sclmd.data.voxsynth.oracle import RENDER_SETTINGS
from sclmd.data.voxsynth.voice import synthesize_utterance
from sclmd.errors import SclmdError

SPEAKERS_CSV = "speakers.csv"
WAV_DIR = "wav"
FACES_DIR = "faces"

_VOICE_STREAM = 0
_FACE_STREAM = 1


@dataclass(frozen=True)
class _SpeakerJob:
    index: int
    attrs: SpeakerAttributes
    out_dir: Path
    synth: SynthParams
    data: DataParams


def _rng(seed: int, speaker_index: int, stream: int, item: int) -> np.random.Generator:
    # Same keys SeedSequence(seed).spawn() would give, but without its mutable spawn counter.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(speaker_index, stream, item)))


def wav_path(raw_dir: Path, speaker_id: str, utterance: int) -> Path:
    return raw_dir / WAV_DIR / speaker_id / f"{utterance:02d}.wav"


def face_path(raw_dir: Path, speaker_id: str, image: int) -> Path:
    return raw_dir / FACES_DIR / speaker_id / f"{image:02d}.png"


def _keep_freed_memory() -> None:
    """Worker initialiser: stop glibc returning freed memory to the OS after every array.

    Synthesis allocates many short-lived ~1 MB arrays; by default each one is a fresh
    mmap whose pages fault in again, which costs ~20 % of the run in kernel time.
    A no-op where the C library has no mallopt.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_mmap_threshold, 32 << 20)


def _generate_speaker(job: _SpeakerJob) -> None:
    attrs, synth, data = job.attrs, job.synth, job.data
    wav_path(job.out_dir, attrs.speaker_id, 0).parent.mkdir(parents=True, exist_ok=True)
    face_path(job.out_dir, attrs.speaker_id, 0).parent.mkdir(parents=True, exist_ok=True)
    for utterance in range(synth.utterances_per_speaker):
        rng = _rng(synth.seed, job.index, _VOICE_STREAM, utterance)
        audio = synthesize_utterance(attrs, rng, data.sample_rate, data.clip_seconds)
        # Quantised here (as libsndfile would) because writing int16 skips its slower conversion.
        pcm = np.round(audio * 32767.0).astype(np.int16)
        sf.write(
            wav_path(job.out_dir, attrs.speaker_id, utterance),
            pcm,
            data.sample_rate,
            subtype="PCM_16",
        )
    for image in range(synth.faces_per_speaker):
        rng = _rng(synth.seed, job.index, _FACE_STREAM, image)
        face = render_face(attrs, rng, data.image_size, synth.supersample, synth.face_framing)
        face.save(face_path(job.out_dir, attrs.speaker_id, image))


def _write_speakers_csv(path: Path, speakers: list[SpeakerAttributes]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=csv_columns())
        writer.writeheader()
        for attrs in speakers:
            writer.writerow(attrs.as_row())


def generate_voxsynth(out_dir: Path, synth: SynthParams, data: DataParams, progress: bool = True) -> dict:
    """Generate the whole data set into out_dir; returns counts and timing."""
    started = time.perf_counter()
    if synth.seed < 0:
        raise SclmdError(f"synth.seed must be 0 or more, got {synth.seed}. Fix params.yaml.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers = sample_speakers(synth.n_speakers, synth.seed)
    _write_speakers_csv(out_dir / SPEAKERS_CSV, speakers)
    # How the faces were drawn: the evaluation's attribute oracle (oracle.py) renders new ones the same way.
    (out_dir / RENDER_SETTINGS).write_text(
        json.dumps(
            {"image_size": data.image_size, "supersample": synth.supersample, "face_framing": synth.face_framing},
            indent=2,
        )
        + "\n"
    )

    jobs = [_SpeakerJob(i, attrs, out_dir, synth, data) for i, attrs in enumerate(speakers)]
    map_in_processes(
        _generate_speaker, jobs, synth.workers, "voxsynth", "speaker", progress, initializer=_keep_freed_memory
    )

    n_female = sum(s.gender == "f" for s in speakers)
    n_utterances = len(speakers) * synth.utterances_per_speaker
    return {
        "n_speakers": len(speakers),
        "n_female": n_female,
        "n_male": len(speakers) - n_female,
        "n_utterances": n_utterances,
        "n_faces": len(speakers) * synth.faces_per_speaker,
        "seconds_audio": n_utterances * data.clip_seconds,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def _read_speakers(raw_dir: Path) -> list[dict[str, str]]:
    path = Path(raw_dir) / SPEAKERS_CSV
    if not path.exists():
        raise SclmdError(f"{path}: not found. Generate VoxSynth first (the synth stage writes it).")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _spread_by_age(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """`count` rows evenly spaced in age order (all of them if there are fewer)."""
    ordered = sorted(rows, key=lambda r: int(r["age"]))
    if count >= len(ordered):
        return ordered
    picks = np.round(np.linspace(0, len(ordered) - 1, count)).astype(int)
    return [ordered[i] for i in picks]


def _balanced_selection(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """Up to `count` speakers, half of each gender where possible, each half spread over age."""
    female = [r for r in rows if r["gender"] == "f"]
    male = [r for r in rows if r["gender"] == "m"]
    n_female = min(len(female), max(count - len(male), count // 2))
    return _spread_by_age(female, n_female) + _spread_by_age(male, count - n_female)


def make_contact_sheet(raw_dir: Path, png_path: Path, max_speakers: int = 48) -> None:
    """A grid of faces (two per speaker where available) labelled with id, gender and age."""
    raw_dir = Path(raw_dir)
    chosen = _balanced_selection(_read_speakers(raw_dir), max_speakers)
    tile, label_height, gap, columns = 128, 16, 8, 6
    faces_per_cell = 2
    cell_width = faces_per_cell * tile + gap
    rows = max(1, -(-len(chosen) // columns))
    sheet = Image.new("RGB", (columns * cell_width + gap, rows * (tile + label_height + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for n, row in enumerate(chosen):
        r, c = divmod(n, columns)
        x, y = gap + c * cell_width, gap + r * (tile + label_height + gap)
        for k in range(faces_per_cell):
            path = face_path(raw_dir, row["speaker_id"], k)
            if path.exists():
                with Image.open(path) as face:
                    sheet.paste(
                        face.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS),
                        (x + k * tile, y),
                    )
        label = f"{row['speaker_id']}  {'female' if row['gender'] == 'f' else 'male'}  {row['age']}"
        draw.text((x + 2, y + tile + 2), label, fill=(20, 20, 20), font=font)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)


def pick_sample_wavs(raw_dir: Path, n: int) -> list[Path]:
    """n first utterances for people to listen to: both genders, young to old."""
    raw_dir = Path(raw_dir)
    if n <= 0:
        return []
    chosen = _balanced_selection(_read_speakers(raw_dir), n)
    # Interleave genders so that a short list still has both.
    female = [r for r in chosen if r["gender"] == "f"]
    male = [r for r in chosen if r["gender"] == "m"]
    interleaved = [r for pair in zip(female, male, strict=False) for r in pair]
    interleaved += female[len(male) :] + male[len(female) :]
    paths = [wav_path(raw_dir, r["speaker_id"], 0) for r in interleaved]
    return [p for p in paths if p.exists()]
