"""Recording-chain randomisation of training voices, on the batch.

VoxSynth's voices all come through one clean synthetic "recording chain": no room, no
microphone colouring, no noise, full 8 kHz bandwidth.  A speech encoder trained on them can
key on that chain's fingerprint (the long-term spectrum) instead of the voice, and then
does not carry over to real recordings.  Each training voice is therefore passed through a
random chain, in this order, each link with probability `probability`:

- room: convolution with a synthetic impulse response (exponentially decaying noise,
  RT60 0.1-0.6 s) mixed with the dry signal;
- microphone and channel colouring: a random smooth EQ curve over log-frequency (spectral
  tilt of +-6 dB per octave about 1 kHz and +-6 dB bumps), plus band-limiting (low-pass
  3.4-8 kHz, high-pass 50-300 Hz);
- background noise: white or pink noise at a random SNR of 5-35 dB;
- level: a random gain of -12..+12 dB, with hard clipping at full scale.

Pitch (F0) and the spectral envelope's shape (formants) are kept: those are the voice.
Everything is a pure function of the batch and the generator, so a resumed run sees the same
augmented batches as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(generator: torch.Generator, n: int, probability: float) -> torch.Tensor:
    return torch.rand(n, generator=generator) < probability


def _room(wave: torch.Tensor, generator: torch.Generator, sample_rate: int, pick: torch.Tensor) -> torch.Tensor:
    n, length = wave.shape
    rt60 = _uniform(generator, n, 0.1, 0.6)
    ir_len = int(0.6 * sample_rate)
    t = torch.arange(ir_len) / sample_rate
    decay = torch.exp(-6.9 * t[None, :] / rt60[:, None])  # -60 dB at RT60
    ir = torch.randn(n, ir_len, generator=generator) * decay
    ir = ir / ir.square().sum(1, keepdim=True).sqrt().clamp_min(1e-8)
    size = 1 << (length + ir_len - 1).bit_length()
    wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(ir, size), size)[:, :length]
    wet = wet * wave.std(1, keepdim=True) / wet.std(1, keepdim=True).clamp_min(1e-8)
    mix = _uniform(generator, n, 0.2, 0.8)[:, None]
    return torch.where(pick[:, None], (1 - mix) * wave + mix * wet, wave)


def _colour(wave: torch.Tensor, generator: torch.Generator, sample_rate: int, pick: torch.Tensor) -> torch.Tensor:
    n, length = wave.shape
    spectrum = torch.fft.rfft(wave)
    freqs = torch.fft.rfftfreq(length, 1 / sample_rate).clamp_min(20.0)
    octaves = torch.log2(freqs / 1000.0)[None, :]  # [1, F], 0 at 1 kHz
    tilt = _uniform(generator, n, -6.0, 6.0)[:, None] * octaves.clamp(-3, 3) / 3  # +-6 dB at the ends
    bumps = torch.zeros(n, freqs.numel())
    for _ in range(3):
        centre = _uniform(generator, n, math.log2(0.1), math.log2(6.0))[:, None]  # 100 Hz - 6 kHz
        gain = _uniform(generator, n, -6.0, 6.0)[:, None]
        width = _uniform(generator, n, 0.3, 1.0)[:, None]
        bumps = bumps + gain * torch.exp(-0.5 * ((octaves - centre) / width) ** 2)
    lowpass = _uniform(generator, n, 3400.0, sample_rate / 2)[:, None]
    highpass = _uniform(generator, n, 50.0, 300.0)[:, None]
    f = freqs[None, :]
    band = torch.sigmoid((lowpass - f) / 150.0) * torch.sigmoid((f - highpass) / 20.0)
    curve = 10 ** ((tilt + bumps) / 20) * band
    coloured = torch.fft.irfft(spectrum * curve, length)
    return torch.where(pick[:, None], coloured, wave)


def _noise(wave: torch.Tensor, generator: torch.Generator, pick: torch.Tensor) -> torch.Tensor:
    n, length = wave.shape
    white = torch.randn(n, length, generator=generator)
    pink = torch.fft.irfft(torch.fft.rfft(white) / torch.arange(1, length // 2 + 2).sqrt(), length)
    use_pink = _chosen(generator, n, 0.5)[:, None]
    noise = torch.where(use_pink, pink, white)
    snr_db = _uniform(generator, n, 5.0, 35.0)[:, None]
    scale = wave.std(1, keepdim=True) / noise.std(1, keepdim=True).clamp_min(1e-8) * 10 ** (-snr_db / 20)
    return torch.where(pick[:, None], wave + scale * noise, wave)


def _level(wave: torch.Tensor, generator: torch.Generator, pick: torch.Tensor) -> torch.Tensor:
    gain = 10 ** (_uniform(generator, wave.shape[0], -12.0, 12.0) / 20)[:, None]
    return torch.where(pick[:, None], (wave * gain).clamp(-1, 1), wave)


@torch.no_grad()
def augment_voices(
    wave: torch.Tensor, generator: torch.Generator, sample_rate: int, probability: float
) -> torch.Tensor:
    """[B, N] waveforms in [-1, 1] through a random recording chain (see the module docstring)."""
    if probability <= 0:
        return wave
    device = wave.device
    x = wave.detach().float().cpu()
    n = x.shape[0]
    x = _room(x, generator, sample_rate, _chosen(generator, n, probability))
    x = _colour(x, generator, sample_rate, _chosen(generator, n, probability))
    x = _noise(x, generator, _chosen(generator, n, probability))
    x = _level(x, generator, _chosen(generator, n, probability))
    return x.clamp(-1, 1).to(device=device, dtype=wave.dtype)
