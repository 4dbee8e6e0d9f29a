"""Voice features that must survive the trip from VoxSynth to real recordings: pitch tracking and
the recording-chain augmentation that must leave the pitch alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sclmd.models.speech_encoder import F0_REFERENCE, SpeechEncoder, pitch_statistics, speech_encoder_config
from sclmd.train.voice_augment import augment_voices
from tests.media import voice_like

SR = 16000


def voices(*f0s: float, seconds: float = 3.0) -> torch.Tensor:
    return torch.from_numpy(np.stack([voice_like(seconds, SR, f0=f0)[0] for f0 in f0s]))


def median_f0(wave: torch.Tensor) -> np.ndarray:
    return F0_REFERENCE * 2 ** pitch_statistics(wave, SR)[:, 0].numpy()


def test_pitch_statistics_find_the_fundamental_of_low_and_high_voices():
    stats = pitch_statistics(voices(85, 120, 220, 300), SR)
    assert stats.shape == (4, 4)
    assert median_f0(voices(85, 120, 220, 300)) == pytest.approx([85, 120, 220, 300], rel=0.04)
    assert (stats[:, 3] > 0.8).all()  # a sustained buzz is voiced throughout


def test_silence_and_noise_have_no_pitch():
    silent = torch.zeros(1, 3 * SR)
    noise = torch.randn(1, 3 * SR, generator=torch.Generator().manual_seed(0)) * 0.1
    stats = pitch_statistics(torch.cat([silent, noise]), SR)
    assert stats[0].tolist() == [0, 0, 0, 0] and stats[1, 3] < 0.1


def test_the_recording_chain_keeps_the_pitch_and_is_reproducible():
    clean = voices(110, 140, 200, 240)
    chain = augment_voices(clean, torch.Generator().manual_seed(3), SR, 1.0)
    again = augment_voices(clean, torch.Generator().manual_seed(3), SR, 1.0)
    assert torch.equal(chain, again) and chain.shape == clean.shape and chain.abs().max() <= 1
    assert (chain - clean).abs().mean() > 0.01  # it did change the recordings
    assert median_f0(chain) == pytest.approx([110, 140, 200, 240], rel=0.06)
    assert torch.equal(augment_voices(clean, torch.Generator().manual_seed(3), SR, 0.0), clean)


def test_speech_encoder_with_pitch_features_round_trips_its_config():
    cfg = speech_encoder_config("small", 16, magnitude_channel=True, pitch_features=True)
    encoder = SpeechEncoder(cfg).eval()
    assert encoder(voices(120, 220, seconds=1.0)).shape == (2, 16)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "pitch_features"}  # a model saved before the switch
    assert type(cfg).from_dict(old).pitch_features is False
