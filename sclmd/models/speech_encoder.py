"""The speech encoder: Speech2Face's voice encoder with CBAM attention (SCLDM, sec. 3.1).

Input: 6 s of 16 kHz audio.  Front end: the complex STFT (25 ms Hann window, 10 ms
hop, 512-point FFT, torchaudio) with power-law compression: the magnitude is raised
to 0.3 and the phase kept (S * |S|^-0.7), and the result's real and imaginary parts
are stacked as 2 channels of a [time x frequency] image.  (Speech2Face applies
sgn(x)|x|^0.3 to the real and imaginary parts separately; compressing the magnitude
keeps the phase exact and costs a third of the time on a CPU.)  Then conv blocks
(CBAM after the later ones), average pooling over time (the utterance-level summary
Speech2Face uses), and fully connected layers to an embedding of size `embed_dim`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn

from sclmd.models.attention import CBAM


@dataclass(frozen=True)
class ConvSpec:
    channels: int
    stride: tuple[int, int]  # (time, frequency)
    pool: tuple[int, int] = (1, 1)  # max pooling after the block, (time, frequency)
    cbam: bool = False


@dataclass(frozen=True)
class SpeechEncoderConfig:
    convs: tuple[ConvSpec, ...]
    hidden: int
    embed_dim: int = 128
    sample_rate: int = 16000
    n_fft: int = 512
    window_ms: float = 25.0
    hop_ms: float = 10.0
    compression: float = 0.3
    # Also feed |S|^c as a third channel.  The compressed real and imaginary parts carry
    # it too, but only through the phase, which flips from bin to bin; a small strided
    # CNN cannot undo that cheaply, so it gets the magnitude spelled out.
    magnitude_channel: bool = False
    # Also feed the voice's pitch statistics (`pitch_statistics`) to the head, beside the
    # time-averaged spectrogram features.  Median F0 carries gender from synthetic voices to
    # real ones almost perfectly; a long-term spectrum mostly carries the recording chain.
    pitch_features: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpeechEncoderConfig":
        convs = tuple(ConvSpec(c["channels"], tuple(c["stride"]), tuple(c["pool"]), c["cbam"]) for c in d["convs"])
        return cls(**{**d, "convs": convs})


def speech_encoder_config(
    size: str, embed_dim: int, magnitude_channel: bool = False, pitch_features: bool = False
) -> SpeechEncoderConfig:
    if size == "paper":
        # Speech2Face's published voice encoder widths: conv 64, 64, 128, then 128-128-256-512
        # with 2x1 max pooling over time, 512, 512; FC 4096 before the embedding.
        convs = (
            ConvSpec(64, (1, 1)),
            ConvSpec(64, (1, 1)),
            ConvSpec(128, (1, 1), (2, 1), cbam=True),
            ConvSpec(128, (1, 1), (2, 1), cbam=True),
            ConvSpec(128, (1, 1), (2, 1), cbam=True),
            ConvSpec(256, (1, 1), (2, 1), cbam=True),
            ConvSpec(512, (1, 1)),
            ConvSpec(512, (1, 1)),
            ConvSpec(512, (2, 2), cbam=True),
        )
        return SpeechEncoderConfig(
            convs=convs,
            hidden=4096,
            embed_dim=embed_dim,
            magnitude_channel=magnitude_channel,
            pitch_features=pitch_features,
        )
    if size == "small":
        # Strided from the first layer: sized for the 2-core CPU budget of the embedded default.
        convs = (
            ConvSpec(8, (2, 2)),
            ConvSpec(16, (2, 2)),
            ConvSpec(32, (2, 2)),
            ConvSpec(64, (2, 2), cbam=True),
            ConvSpec(96, (2, 2), cbam=True),
        )
        return SpeechEncoderConfig(
            convs=convs,
            hidden=256,
            embed_dim=embed_dim,
            magnitude_channel=magnitude_channel,
            pitch_features=pitch_features,
        )
    raise ValueError(f"unknown model size '{size}' (small | paper)")


class CompressedSpectrogram(nn.Module):
    """Waveform [B, N] -> power-law-compressed complex STFT as [B, 2, time, freq]."""

    def __init__(self, cfg: SpeechEncoderConfig):
        super().__init__()
        self.stft = torchaudio.transforms.Spectrogram(
            n_fft=cfg.n_fft,
            win_length=int(cfg.sample_rate * cfg.window_ms / 1000),
            hop_length=int(cfg.sample_rate * cfg.hop_ms / 1000),
            power=None,  # complex output
        )
        self.compression = cfg.compression
        self.magnitude_channel = cfg.magnitude_channel
        self.channels = 3 if cfg.magnitude_channel else 2

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        parts = torch.view_as_real(self.stft(wave.float()))  # [B, F, T, 2]
        power = parts.square().sum(-1, keepdim=True) + 1e-12
        parts = parts * power.pow((self.compression - 1) / 2)  # |S|^c, phase kept
        if self.magnitude_channel:
            parts = torch.cat([parts, power.pow(self.compression / 2)], dim=-1)
        return parts.permute(0, 3, 2, 1).contiguous()  # [B, C, T, F]


PITCH_STATISTICS = 4  # median, 10th and 90th percentile of log F0, voiced share
F0_RANGE = (60.0, 420.0)  # Hz: deep male to high female speech
F0_REFERENCE = 150.0  # Hz: log F0 is given relative to this, in octaves


@torch.no_grad()
def pitch_statistics(
    wave: torch.Tensor, sample_rate: int, frame_ms: float = 50.0, hop_ms: float = 20.0, voicing: float = 0.5
) -> torch.Tensor:
    """[B, N] waveform -> [B, 4]: median, 10th and 90th percentile of log2(F0 / 150 Hz) over voiced
    frames, and the share of voiced frames.  Autocorrelation pitch tracking on the batch (no grad):
    a frame is voiced when its normalised autocorrelation peak in the F0 range exceeds `voicing`
    and it is not near-silent; the period is the first local maximum whose autocorrelation is
    within 10% of the peak (which avoids picking a multiple of the period, an octave too low),
    refined by a parabola through it and its neighbours.  A 50 ms frame holds three periods of
    60 Hz.  A clip without voiced frames gets zeros."""
    wave = wave.float()
    frame, hop = int(sample_rate * frame_ms / 1000), int(sample_rate * hop_ms / 1000)
    if wave.shape[1] < frame:
        return wave.new_zeros(wave.shape[0], PITCH_STATISTICS)
    frames = wave.unfold(1, frame, hop)  # [B, T, frame]
    frames = (frames - frames.mean(-1, keepdim=True)) * torch.hann_window(frame, device=wave.device)
    size = 1 << (2 * frame - 1).bit_length()
    spectrum = torch.fft.rfft(frames, size)
    acf = torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), size)[..., :frame]
    window_acf = torch.fft.irfft(
        torch.fft.rfft(torch.hann_window(frame, device=wave.device), size).abs().square(), size
    )[:frame]
    energy = acf[..., :1]
    normalised = acf / energy.clamp_min(1e-10) / (window_acf / window_acf[0]).clamp_min(1e-3)
    low, high = int(sample_rate / F0_RANGE[1]), int(sample_rate / F0_RANGE[0])
    search = normalised[..., low - 1 : high + 2]  # one lag of margin each side, for the local maxima
    inner = search[..., 1:-1]
    local_max = (inner >= search[..., :-2]) & (inner >= search[..., 2:])
    peak = torch.where(local_max, inner, torch.full_like(inner, -1.0)).max(-1).values
    candidate = local_max & (inner >= 0.9 * peak[..., None])
    first = candidate.float().argmax(-1)  # index into `inner`: the shortest period near the peak
    # Parabolic interpolation of the peak through its neighbours (search index first + 1).
    left, centre, right = (search.gather(-1, (first + k)[..., None])[..., 0] for k in (0, 1, 2))
    curvature = left - 2 * centre + right
    offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-6), torch.zeros_like(curvature))
    lag = first.float() + low + offset.clamp(-0.5, 0.5)
    loud = energy[..., 0] > 1e-3 * energy[..., 0].amax(dim=1, keepdim=True)
    voiced = (peak > voicing) & loud & candidate.any(-1)
    log_f0 = torch.log2(sample_rate / lag / F0_REFERENCE)
    masked = torch.where(voiced, log_f0, torch.full_like(log_f0, float("nan")))
    stats = torch.nanquantile(masked, torch.tensor([0.5, 0.1, 0.9], device=wave.device), dim=1).T  # [B, 3]
    share = voiced.float().mean(1, keepdim=True)
    return torch.nan_to_num(torch.cat([stats, share], dim=1), nan=0.0)


class SpeechEncoder(nn.Module):
    def __init__(self, cfg: SpeechEncoderConfig):
        super().__init__()
        self.config = cfg
        self.frontend = CompressedSpectrogram(cfg)
        layers: list[nn.Module] = []
        in_ch = self.frontend.channels
        for spec in cfg.convs:
            layers += [
                nn.Conv2d(in_ch, spec.channels, 3, stride=spec.stride, padding=1, bias=False),
                nn.BatchNorm2d(spec.channels),
                nn.ReLU(inplace=True),
            ]
            if spec.cbam:
                layers.append(CBAM(spec.channels))
            if spec.pool != (1, 1):
                layers.append(nn.MaxPool2d(spec.pool, ceil_mode=True))
            in_ch = spec.channels
        self.convs = nn.Sequential(*layers)
        freq_bins = self._freq_bins_after_convs(cfg)
        pitch = PITCH_STATISTICS if cfg.pitch_features else 0
        self.head = nn.Sequential(
            nn.Linear(in_ch * freq_bins + pitch, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.embed_dim),
        )

    @staticmethod
    def _freq_bins_after_convs(cfg: SpeechEncoderConfig) -> int:
        bins = cfg.n_fft // 2 + 1
        for spec in cfg.convs:
            bins = (bins + 2 - 3) // spec.stride[1] + 1
            bins = -(-bins // spec.pool[1])
        return bins

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] float waveform in [-1, 1] -> [B, embed_dim] (not normalised)."""
        x = self.convs(self.frontend(wave))  # [B, C, T', F']
        x = x.mean(dim=2).flatten(1)  # average over time: an utterance-level summary
        if self.config.pitch_features:
            x = torch.cat([x, pitch_statistics(wave, self.config.sample_rate).to(x.dtype)], dim=1)
        return self.head(x)
