"""Audio decoding and preparation: every bad input gets a clear rejection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from sclmd.config import DataParams
from sclmd.data.audio import _decode_with_pyav, decode_audio, prepare_audio
from sclmd.errors import ClipRejected
from tests.media import tone, voice_like, write_m4a, write_mp4, write_wav

DATA = DataParams(sample_rate=16000, clip_seconds=6.0)
MIN_SECONDS = 1.0
SILENCE_DBFS = -55.0


def prepare(path: Path, **cut: float) -> np.ndarray:
    return prepare_audio(path, DATA, min_seconds=MIN_SECONDS, silence_dbfs=SILENCE_DBFS, **cut).samples


def dominant_frequency(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * sr / samples.size)


def rejection(path: Path, **cut: float) -> str:
    with pytest.raises(ClipRejected) as caught:
        prepare(path, **cut)
    assert caught.value.path == str(path)
    return caught.value.reason


# --- bad inputs ---------------------------------------------------------------------


def test_truncated_wav_uses_what_remains(tmp_path: Path) -> None:
    # Policy: the whole frames a truncated file still holds are used when they pass
    # the usual checks (see the module docstring).
    path = write_wav(tmp_path / "cut.wav", voice_like(3.0, 16000)[0], 16000)
    data_bytes = 3 * 16000 * 2
    path.write_bytes(path.read_bytes()[: -data_bytes // 2])  # lose the last 1.5 s
    samples, sr = decode_audio(path)
    assert sr == 16000
    assert samples.shape == (1, 24000)
    assert prepare(path).shape == (DATA.clip_samples,)


def test_truncated_wav_too_short_after_cut_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", voice_like(3.0, 16000)[0], 16000)
    path.write_bytes(path.read_bytes()[: 44 + 8000 * 2])  # header + 0.5 s
    assert "too short" in rejection(path)


def test_wav_cut_inside_its_header_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", voice_like(1.5, 16000)[0], 16000)
    path.write_bytes(path.read_bytes()[:20])
    reason = rejection(path)
    assert "not readable as audio" in reason
    assert "soundfile:" in reason and "PyAV:" in reason


def test_zero_byte_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert "empty file" in rejection(path)


def test_wav_with_no_samples_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "none.wav", np.zeros(0, np.float32), 16000)
    assert "no audio samples" in rejection(path)


def test_text_file_is_rejected_naming_both_decoders(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 40)
    reason = rejection(path)
    assert reason.startswith("not readable as audio")
    assert "soundfile:" in reason and "PyAV:" in reason


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    assert rejection(tmp_path / "gone.wav") == "file not found"


def test_nan_filled_float_wav_is_rejected(tmp_path: Path) -> None:
    signal = voice_like(2.0, 16000)[0]
    signal[::100] = np.nan
    path = write_wav(tmp_path / "nan.wav", signal, 16000, subtype="FLOAT")
    assert "non-finite" in rejection(path)


def test_one_sample_wav_is_rejected_as_too_short(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "one.wav", np.array([0.5], np.float32), 16000)
    assert "too short" in rejection(path)


def test_silent_wav_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silent.wav", np.zeros(3 * 16000, np.float32), 16000)
    assert "silent" in rejection(path)


def test_very_quiet_wav_is_rejected_as_silent(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "hiss.wav", tone(2.0, 16000, 300, amplitude=1e-4), 16000)
    assert "below the -55 dBFS threshold" in rejection(path)


def test_silent_first_six_seconds_are_rejected_despite_later_speech(tmp_path: Path) -> None:
    signal = np.concatenate([np.zeros(6 * 16000, np.float32), voice_like(4.0, 16000)[0]])
    path = write_wav(tmp_path / "late.wav", signal, 16000)
    assert "silent" in rejection(path)


def test_reversed_segment_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", voice_like(2.0, 16000)[0], 16000)
    assert "not after its start" in rejection(path, start=1.5, end=1.0)


# --- formats and levels ---------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_integer_and_float_wavs_keep_their_level(tmp_path: Path, subtype: str) -> None:
    path = write_wav(tmp_path / f"{subtype}.wav", tone(1.5, 16000, 250, amplitude=0.5), 16000, subtype)
    samples, _ = decode_audio(path)
    assert samples.dtype == np.float32
    assert abs(np.max(samples) - 0.5) < 0.01
    assert abs(np.min(samples) + 0.5) < 0.01
    assert abs(float(np.mean(samples))) < 0.01  # unsigned 8-bit is centred, not offset


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_32", "FLOAT"])
def test_pyav_fallback_agrees_with_soundfile(tmp_path: Path, subtype: str) -> None:
    # The fallback's own sample-format handling (packed vs planar, integer scaling,
    # unsigned 8-bit offset) checked against libsndfile on the same stereo file.
    stereo = np.stack([tone(0.5, 16000, 300, 0.5), tone(0.5, 16000, 700, 0.25)])
    path = write_wav(tmp_path / f"{subtype}.wav", stereo, 16000, subtype)
    by_pyav, rate = _decode_with_pyav(path, None, None)
    by_soundfile, _ = decode_audio(path)
    assert rate == 16000
    np.testing.assert_allclose(by_pyav, by_soundfile, atol=1e-6)


def test_unsigned_8bit_wav_prepares_at_the_right_level(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "u8.wav", tone(2.0, 16000, 250, amplitude=0.5), 16000, "PCM_U8")
    clip = prepare(path)
    assert abs(int(clip.max()) - 16384) < 400
    assert abs(float(clip.mean())) < 200


def test_96khz_six_channel_wav_is_downmixed_and_resampled(tmp_path: Path) -> None:
    channels = np.stack([tone(2.0, 96000, 1000, amplitude=0.4)] * 3 + [np.zeros(192000, np.float32)] * 3)
    path = write_wav(tmp_path / "surround.wav", channels, 96000)
    clip = prepare(path)
    assert clip.shape == (DATA.clip_samples,) and clip.dtype == np.int16
    assert abs(dominant_frequency(clip[:32000].astype(np.float32), 16000) - 1000) < 1
    # Half the channels carry the tone, so the mono mix has half its level.
    assert abs(int(clip.max()) - 0.2 * 32768) < 300


@pytest.mark.parametrize("source_rate", [8000, 44100, 96000])
def test_resampling_keeps_a_440hz_tone_at_440hz(tmp_path: Path, source_rate: int) -> None:
    path = write_wav(tmp_path / f"a{source_rate}.wav", tone(6.0, source_rate, 440), source_rate)
    clip = prepare(path).astype(np.float32)
    assert abs(dominant_frequency(clip, DATA.sample_rate) - 440) < 0.5
    assert abs(float(np.max(clip)) / 32768 - 0.5) < 0.01


def test_two_second_clip_is_looped_to_six_seconds(tmp_path: Path) -> None:
    signal = voice_like(2.0, 16000)[0]
    path = write_wav(tmp_path / "short.wav", signal, 16000)
    prepared = prepare_audio(path, DATA, min_seconds=MIN_SECONDS, silence_dbfs=SILENCE_DBFS)
    assert (prepared.source_seconds, prepared.source_rate) == (2.0, 16000)
    clip = prepared.samples
    expected, _ = soundfile.read(path, dtype="int16")  # int16 passes through bit for bit
    for repeat in range(3):
        np.testing.assert_array_equal(clip[repeat * 32000 : (repeat + 1) * 32000], expected)


def test_long_clip_keeps_its_first_six_seconds(tmp_path: Path) -> None:
    signal = np.concatenate([tone(6.0, 16000, 300), tone(2.0, 16000, 900)])
    path = write_wav(tmp_path / "long.wav", signal, 16000)
    clip = prepare(path).astype(np.float32)
    assert abs(dominant_frequency(clip, 16000) - 300) < 1


def test_wav_segment_cut(tmp_path: Path) -> None:
    signal = np.concatenate([tone(1.0, 16000, 300), tone(1.0, 16000, 900)])
    path = write_wav(tmp_path / "two.wav", signal, 16000)
    samples, _ = decode_audio(path, start=1.25, end=1.75)
    assert samples.shape == (1, 8000)
    assert abs(dominant_frequency(samples[0], 16000) - 900) < 3


def test_m4a_decodes(tmp_path: Path) -> None:
    path = write_m4a(tmp_path / "voice.m4a", tone(1.5, 44100, 440), 44100)
    samples, sr = decode_audio(path)
    assert sr == 44100
    assert samples.shape[0] == 1
    assert abs(samples.shape[1] / sr - 1.5) < 0.1  # AAC pads to whole 1024-sample frames
    assert abs(dominant_frequency(samples[0, 4410:-4410], sr) - 440) < 2
    assert prepare(path).shape == (DATA.clip_samples,)


def test_mp4_audio_segment_cut(tmp_path: Path) -> None:
    audio = np.concatenate([tone(1.0, 16000, 300), tone(1.0, 16000, 900), tone(1.0, 16000, 300)])
    path = write_mp4(tmp_path / "talk.mp4", 3.0, 10, (64, 48), 16000, audio=audio)
    samples, sr = decode_audio(path, start=1.1, end=1.9)
    assert sr == 16000
    assert samples.shape == (1, 12800)
    assert abs(dominant_frequency(samples[0], sr) - 900) < 3
    head, _ = decode_audio(path, end=0.9)
    assert abs(dominant_frequency(head[0], sr) - 300) < 3


def test_mp4_segment_past_the_end_is_rejected(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "talk.mp4", 1.0, 10, (64, 48), 16000)
    assert "no audio samples" in rejection(path, start=5.0, end=7.0)


def test_video_without_audio_track_is_rejected(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "mute.mp4", 1.0, 10, (64, 48), 16000, with_audio=False)
    assert "no audio stream" in rejection(path)
