"""VoxSynth: determinism, layout, and that voice and face carry the attributes they should."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from sclmd.config import DataParams, SynthParams
from sclmd.data.voxsynth import (
    SpeakerAttributes,
    generate_voxsynth,
    make_contact_sheet,
    pick_sample_wavs,
    render_face,
    sample_speakers,
    synthesize_utterance,
)
from sclmd.data.voxsynth.attributes import MAX_AGE, MIN_AGE, csv_columns
from sclmd.data.voxsynth.voice import voice_profile

SR = 16000
SMALL_SYNTH = SynthParams(seed=7, n_speakers=8, utterances_per_speaker=2, faces_per_speaker=2, workers=1)
SMALL_DATA = DataParams(sample_rate=SR, clip_seconds=2.0, image_size=32)


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("voxsynth") / "raw"
    stats = generate_voxsynth(out, SMALL_SYNTH, SMALL_DATA, progress=False)
    return out, stats


# --- audio analysis helpers ---------------------------------------------------------


def _frames(x: np.ndarray, length: int = 640, hop: int = 160) -> np.ndarray:
    starts = np.arange(0, len(x) - length, hop)
    return x[starts[:, None] + np.arange(length)].astype(float)


def _loud_periodicity(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitch lag in samples, autocorrelation peak, frames) of every loud frame."""
    frames = _frames(x) * np.hanning(640)
    energy = np.sqrt((frames**2).mean(axis=1))
    loud = frames[energy > 0.25 * energy.max()]
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(loud, 2048)) ** 2)[:, :640]
    autocorr /= autocorr[:, :1]
    low, high = SR // 400, SR // 60
    lag = low + np.argmax(autocorr[:, low:high], axis=1)
    return lag, autocorr[np.arange(len(loud)), lag], loud


def _voiced(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F0 in Hz, autocorrelation peak, frames) of loud, clearly periodic frames."""
    lag, peak, loud = _loud_periodicity(x)
    voiced = peak > 0.5
    return SR / lag[voiced], peak[voiced], loud[voiced]


def _spectral_centroid(frames: np.ndarray) -> float:
    power = (np.abs(np.fft.rfft(frames, 1024)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    band = (freqs > 200) & (freqs < 5000)
    return float((power[band] * freqs[band]).sum() / power[band].sum())


def _utterance(attrs: SpeakerAttributes, seed: int, seconds: float = 2.0) -> np.ndarray:
    return synthesize_utterance(attrs, np.random.default_rng(seed), SR, seconds)


# --- speakers -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [6, 7, 240])
def test_gender_exactly_balanced_and_ages_in_range(n):
    speakers = sample_speakers(n, seed=3)
    genders = [s.gender for s in speakers]
    assert min(genders.count("f"), genders.count("m")) == n // 2
    assert len(speakers) == n
    assert len({s.speaker_id for s in speakers}) == n
    assert all(MIN_AGE <= s.age <= MAX_AGE for s in speakers)


def test_ages_spread_over_the_range_for_each_gender():
    speakers = sample_speakers(240, seed=0)
    for gender in ("f", "m"):
        ages = np.array([s.age for s in speakers if s.gender == gender])
        assert ages.min() <= MIN_AGE + 3 and ages.max() >= MAX_AGE - 3
        assert abs(np.median(ages) - (MIN_AGE + MAX_AGE) / 2) < 5


def test_sample_speakers_is_deterministic():
    assert sample_speakers(20, seed=1) == sample_speakers(20, seed=1)
    assert sample_speakers(20, seed=1) != sample_speakers(20, seed=2)


# --- voice --------------------------------------------------------------------------


def test_utterance_format_and_level():
    attrs = sample_speakers(6, seed=0)[0]
    x = synthesize_utterance(attrs, np.random.default_rng(0), SR, 1.5)
    assert x.dtype == np.float32 and x.shape == (int(1.5 * SR),)
    assert np.abs(x).max() < 0.99
    rms_db = 20 * np.log10(np.sqrt(np.mean(x.astype(float) ** 2)))
    assert -26 < rms_db < -16


def test_women_have_higher_f0_than_men():
    speakers = sample_speakers(16, seed=1)
    medians = {"f": [], "m": []}
    for i, attrs in enumerate(speakers):
        f0, _, _ = _voiced(_utterance(attrs, i))
        assert len(f0) > 20, "too few voiced frames: is it still speech?"
        medians[attrs.gender].append(np.median(f0))
    female, male = np.mean(medians["f"]), np.mean(medians["m"])
    assert 150 < female < 280 and 80 < male < 190
    assert female > 1.4 * male


def test_larger_speakers_have_lower_formants():
    """Same speaker and phone sequence; only size differs, so only the tract length does."""
    ratios = []
    for i, attrs in enumerate(sample_speakers(8, seed=2)):
        small, large = (_utterance(replace(attrs, size=s), 100 + i) for s in (-2.0, 2.0))
        ratios.append(_spectral_centroid(_voiced(small)[2]) / _spectral_centroid(_voiced(large)[2]))
    assert all(r > 1.03 for r in ratios), ratios
    assert np.mean(ratios) > 1.08


def test_old_voices_are_less_periodic(monkeypatch):
    """Jitter, shimmer, tremor and breathiness grow with age: the autocorrelation peak drops.

    Only the voice-quality part of ageing differs between the two renderings (same F0,
    tract and speaking rate, so the same phones at the same times); age's other effects
    (F0, formants, tempo) move the autocorrelation peak either way from speaker to speaker.
    """
    from sclmd.data.voxsynth import voice

    drops = []
    for i, attrs in enumerate(sample_speakers(12, seed=4)):
        young, old = voice_profile(replace(attrs, age=20)), voice_profile(replace(attrs, age=80))
        assert old.jitter > young.jitter and old.shimmer > young.shimmer and old.breath > young.breath
        aged = replace(
            young, jitter=old.jitter, shimmer=old.shimmer, breath=old.breath, tremor_semitones=old.tremor_semitones
        )
        peaks = []
        for profile in (young, aged):
            monkeypatch.setattr(voice, "voice_profile", lambda _attrs, p=profile: p)
            peaks.append(_loud_periodicity(_utterance(attrs, 200 + i))[1].mean())
        drops.append(peaks[0] - peaks[1])
    assert np.mean(drops) > 0.015 and np.mean(np.array(drops) > 0) >= 0.8, drops


def test_speech_is_not_a_pure_tone():
    x = _utterance(sample_speakers(6, seed=5)[1], 9, seconds=3.0).astype(float)
    frames = _frames(x, 512, 256) * np.hanning(512)
    power = np.abs(np.fft.rfft(frames)) ** 2 + 1e-12
    energy_db = 10 * np.log10(power.sum(axis=1))
    # Pauses and closures: frames far below the loudest ones.
    assert np.mean(energy_db < energy_db.max() - 40) > 0.05
    # Voiced frames are peaky, fricatives flat: flatness must vary a lot between active frames.
    active = energy_db > energy_db.max() - 30
    flatness = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    assert flatness[active].min() < 0.02 and flatness[active].max() > 0.15
    # Energy in several bands, not one line.
    freqs = np.fft.rfftfreq(512, 1 / SR)
    total = power.sum()
    for low, high in ((80, 1000), (1000, 3000), (3000, 8000)):
        assert power[:, (freqs >= low) & (freqs < high)].sum() / total > 0.003, (low, high)
    # The pitch moves (intonation), it is not a held note.
    f0, _, _ = _voiced(x.astype(np.float32))
    assert np.percentile(f0, 90) / np.percentile(f0, 10) > 1.08


def test_utterances_of_one_speaker_differ():
    attrs = sample_speakers(6, seed=0)[0]
    assert not np.array_equal(_utterance(attrs, 1), _utterance(attrs, 2))
    assert np.array_equal(_utterance(attrs, 1), _utterance(attrs, 1))


# --- faces --------------------------------------------------------------------------


def test_face_format():
    image = render_face(sample_speakers(6, seed=0)[0], np.random.default_rng(0), size=48, supersample=2)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (48, 48)
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (48, 48, 3)
    assert pixels.std() > 10  # not a blank square


def test_face_framing_makes_the_face_fill_the_image():
    """framing 1.5 (the default) draws the same face larger, as real face crops frame it."""
    from sclmd.data.voxsynth.face import _Look

    ratios = []
    for i, attrs in enumerate(sample_speakers(8, seed=1)):
        skin = np.array(_Look.of(attrs).skin, dtype=float)
        share = []
        for framing in (1.0, 1.5):
            pixels = np.asarray(render_face(attrs, np.random.default_rng(i), framing=framing), dtype=float)
            share.append(np.mean(np.linalg.norm(pixels - skin, axis=-1) < 40))  # skin-coloured pixels
        ratios.append(share[1] / max(share[0], 1e-6))
    # area grows with the square of the scale (1.5^2 = 2.25); hair and clipping take some back
    assert np.median(ratios) > 1.6


def test_faces_resemble_their_speaker_more_than_others():
    speakers = sample_speakers(12, seed=5)
    centre = slice(16, 48)  # the face, without most of the background
    images = np.array(
        [
            [np.asarray(render_face(a, np.random.default_rng([i, k])))[centre, centre] for k in range(3)]
            for i, a in enumerate(speakers)
        ],
        dtype=float,
    )
    within, between = [], []
    for i in range(len(speakers)):
        for k in range(3):
            for j in range(i, len(speakers)):
                for m in range(3):
                    if (j, m) <= (i, k):
                        continue
                    distance = np.sqrt(np.mean((images[i, k] - images[j, m]) ** 2))
                    (within if i == j else between).append(distance)
    assert min(within) > 1.0, "images of one speaker should differ (pose, light, background)"
    assert min(between) > 1.0
    assert np.mean(within) < 0.8 * np.mean(between)


# --- the generated set --------------------------------------------------------------


def test_layout_and_speakers_csv(small_set):
    out, stats = small_set
    assert stats["n_speakers"] == 8 and stats["n_female"] == stats["n_male"] == 4
    assert stats["n_utterances"] == 16 and stats["n_faces"] == 16
    assert stats["seconds_audio"] == pytest.approx(32.0)
    with (out / "speakers.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:3] == ["speaker_id", "gender", "age"]
    assert reader.fieldnames == csv_columns()
    for column in (
        "size",
        "speaking_rate",
        "skin_tone",
        "hair_colour",
        "hair_style",
        "eye_colour",
        "beard",
    ):
        assert column in reader.fieldnames
    assert len(rows) == 8
    for row in rows:
        sid = row["speaker_id"]
        wavs = sorted((out / "wav" / sid).iterdir())
        faces = sorted((out / "faces" / sid).iterdir())
        assert [p.name for p in wavs] == ["00.wav", "01.wav"]
        assert [p.name for p in faces] == ["00.png", "01.png"]
        info = sf.info(str(wavs[0]))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == SMALL_DATA.clip_samples
        with Image.open(faces[0]) as image:
            assert image.mode == "RGB" and image.size == (32, 32)


def test_same_seed_gives_identical_files_whatever_the_worker_count(small_set, tmp_path):
    out, _ = small_set
    again = tmp_path / "two_workers"
    generate_voxsynth(again, SMALL_SYNTH.model_copy(update={"workers": 2}), SMALL_DATA, progress=False)
    assert _digest_tree(again) == _digest_tree(out)


def test_another_seed_gives_other_files(small_set, tmp_path):
    out, _ = small_set
    other = tmp_path / "other_seed"
    generate_voxsynth(other, SMALL_SYNTH.model_copy(update={"seed": 8}), SMALL_DATA, progress=False)
    first, second = _digest_tree(out), _digest_tree(other)
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first if name.endswith((".wav", ".png")))
    assert first["speakers.csv"] != second["speakers.csv"]


def test_contact_sheet_and_sample_wavs(small_set, tmp_path):
    out, _ = small_set
    sheet = tmp_path / "sheet" / "faces.png"
    make_contact_sheet(out, sheet, max_speakers=6)
    with Image.open(sheet) as image:
        assert image.mode == "RGB" and image.width >= 6 * 128 and image.height >= 128
    wavs = pick_sample_wavs(out, 4)
    assert len(wavs) == 4 and all(p.exists() for p in wavs)
    genders = {row["speaker_id"]: row["gender"] for row in csv.DictReader((out / "speakers.csv").open())}
    assert {genders[p.parent.name] for p in wavs} == {"f", "m"}
    assert pick_sample_wavs(out, 0) == []


def test_age_moves_pitch_tract_and_tempo_as_in_ageing_voices():
    """Women's F0 falls with age, men's rises after middle age; the tract lengthens; speech slows."""
    from sclmd.data.voxsynth.voice import median_f0, vocal_tract_cm

    for attrs in sample_speakers(6, seed=8):
        at = {age: replace(attrs, age=age) for age in (25, 55, 80)}
        if attrs.gender == "f":
            assert median_f0(at[80]) < 0.85 * median_f0(at[25])
        else:
            assert median_f0(at[80]) > 1.15 * median_f0(at[55])
        assert vocal_tract_cm(at[80]) - vocal_tract_cm(at[25]) > 0.8
        assert voice_profile(at[80]).syllables_per_s < 0.8 * voice_profile(at[25]).syllables_per_s
