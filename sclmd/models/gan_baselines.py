"""The paper's two GAN baselines, drawn in pixels straight from the voice (no shared encoder or decoder).

- **Wav2Pix** (Duarte et al., ICASSP 2019): a SEGAN-style 1-D CNN over one second of raw,
  pre-emphasised waveform gives a speech embedding; a generator without a noise input (its
  only randomness in the original is dropout) draws the face from it; a discriminator sees the
  face with the embedding tiled at its 4 x 4 stage.  Spectral norm in both, LSGAN losses, a
  "wrong face" term (a real face with another speaker's voice is fake), one-sided label
  smoothing, feature matching, an L1 term to the paired face and a speaker-identity classifier
  on the embedding (see `sclmd.train.gan`).
- **Wen et al.** (NeurIPS 2019, "Face reconstruction from voice using GANs"): a voice-embedding
  1-D CNN over 64 log-mel filterbanks, trained first for speaker identification and then
  frozen; a generator from that 64-d embedding; one face trunk shared by a real/fake head and
  an identity-classifier head.  The generator is pushed to draw faces the classifier takes for
  the speaker's identity.

Widths come in two sizes: `paper` (the published layers) and `small` (the CPU budget of the
embedded default: a quarter of the channels).  Both generators are deterministic at
inference (dropout off): one face per voice, like the regression baselines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

GAN_METHODS = ("wav2pix", "wen")
SIZES = ("small", "paper")


def _widths(size: str, paper: tuple[int, ...], small: tuple[int, ...]) -> tuple[int, ...]:
    if size not in SIZES:
        raise ValueError(f"unknown size '{size}' ({' | '.join(SIZES)})")
    return paper if size == "paper" else small


# --------------------------------------------------------------------------------------- Wav2Pix


@dataclass(frozen=True)
class Wav2PixConfig:
    image_size: int
    sample_rate: int
    n_identities: int  # training speakers: the auxiliary classifier's classes
    size: str = "small"
    audio_seconds: float = 1.0  # the original's clips: one second of 16 kHz speech
    embed_dim: int = 128
    encoder_channels: tuple[int, ...] = ()
    generator_channels: tuple[int, ...] = ()  # at 4 x 4, 8 x 8, ... up to image_size / 2
    discriminator_channels: tuple[int, ...] = ()  # at image_size / 2, ... down to 4 x 4
    dropout: float = 0.5

    @classmethod
    def for_size(cls, size: str, image_size: int, sample_rate: int, n_identities: int, **kw) -> "Wav2PixConfig":
        ups = _n_doublings(image_size)
        return cls(
            image_size,
            sample_rate,
            n_identities,
            size,
            encoder_channels=_widths(size, (16, 32, 128, 256, 512, 1024), (8, 16, 32, 64, 128, 128)),
            generator_channels=_pyramid(_widths(size, (512,), (128,))[0], ups, descending=True),
            discriminator_channels=_pyramid(_widths(size, (64,), (16,))[0], ups, descending=False),
            **kw,
        )

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sample_rate))

    def to_dict(self) -> dict:
        return asdict(self)


def _n_doublings(image_size: int) -> int:
    """Stride-2 layers between 4 x 4 and the image (64 px: 4)."""
    n = (image_size // 4).bit_length() - 1
    if image_size < 8 or 4 << n != image_size:
        raise ValueError(f"the GAN baselines need an image size of 4 x a power of two (got {image_size})")
    return n


def _pyramid(first: int, n: int, descending: bool) -> tuple[int, ...]:
    """n channel counts halving (generator, from 4 x 4 up) or doubling (discriminator, down to 4 x 4)."""
    return tuple(max(first >> k, 8) for k in range(n)) if descending else tuple(first << k for k in range(n))


def preemphasis(wave: torch.Tensor, coefficient: float) -> torch.Tensor:
    return torch.cat([wave[:, :1], wave[:, 1:] - coefficient * wave[:, :-1]], dim=1)


def centre_crop(wave: torch.Tensor, samples: int) -> torch.Tensor:
    """[B, N] -> [B, samples]: the middle of the clip (zero-padded when shorter), as Wav2Pix's loader cuts."""
    if wave.shape[1] < samples:
        return F.pad(wave, (0, samples - wave.shape[1]))
    start = (wave.shape[1] - samples) // 2
    return wave[:, start : start + samples]


class RawSpeechEncoder(nn.Module):
    """SEGAN-discriminator-style strided 1-D convolutions over the waveform, then an MLP to the embedding."""

    def __init__(self, cfg: Wav2PixConfig):
        super().__init__()
        layers, in_ch, length = [], 1, cfg.audio_samples
        for ch in cfg.encoder_channels:
            # kernel 15, stride 4, padded 6 left and 7 right as in the original: length -> ceil(length / 4)
            layers += [
                nn.ConstantPad1d((6, 7), 0.0),
                nn.Conv1d(in_ch, ch, 15, stride=4),
                nn.BatchNorm1d(ch),
                nn.LeakyReLU(0.3),
            ]
            in_ch, length = ch, (length + 13 - 15) // 4 + 1
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(in_ch * length, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, cfg.embed_dim)
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, audio_samples] (pre-emphasised, peak-normalised) -> [B, embed_dim]."""
        return self.head(self.convs(wave[:, None]).flatten(1))


class Wav2PixGenerator(nn.Module):
    def __init__(self, cfg: Wav2PixConfig):
        super().__init__()
        chans = cfg.generator_channels
        layers: list[nn.Module] = [
            spectral_norm(nn.ConvTranspose2d(cfg.embed_dim, chans[0], 4, 1, 0, bias=False)),
            nn.Dropout(cfg.dropout),
            nn.ReLU(),
        ]
        for a, b in zip(chans, chans[1:]):
            layers += [spectral_norm(nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False)), nn.Dropout(cfg.dropout), nn.ReLU()]
        layers += [spectral_norm(nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding[:, :, None, None])


class Wav2PixDiscriminator(nn.Module):
    """Face -> (score, the 4 x 4 features used for feature matching); the embedding joins at 4 x 4."""

    def __init__(self, cfg: Wav2PixConfig):
        super().__init__()
        layers, in_ch = [], 3
        for ch in cfg.discriminator_channels:
            layers += [spectral_norm(nn.Conv2d(in_ch, ch, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2)]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(in_ch + cfg.embed_dim, 1, 4, 1, 0, bias=False)

    def forward(self, face: torch.Tensor, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(face)
        tiled = embedding[:, :, None, None].expand(-1, -1, *feats.shape[2:])
        return self.score(torch.cat([feats, tiled], dim=1)).flatten(), feats


class IdentityHead(nn.Module):
    """Wav2Pix's auxiliary classifier: the speech embedding -> training-speaker logits."""

    def __init__(self, embed_dim: int, n_identities: int, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_identities)
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class Wav2Pix(nn.Module):
    """Waveform -> face: the speech encoder and generator (what is kept after training)."""

    draws_from_waveform = True

    def __init__(self, cfg: Wav2PixConfig):
        super().__init__()
        self.config = cfg
        self.encoder = RawSpeechEncoder(cfg)
        self.generator = Wav2PixGenerator(cfg)

    def condition(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] float waveform -> the encoder's input: a window of `audio_seconds`, peak-normalised,
        pre-emphasised."""
        if wave.shape[1] != self.config.audio_samples:
            wave = centre_crop(wave, self.config.audio_samples)
        peak = wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-4)
        return preemphasis(wave / peak, 0.95)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.condition(wave.float()))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] float waveform (any length; the centre `audio_seconds` are used) -> [B, 3, H, W] in [-1, 1]."""
        return self.generator(self.embed(wave))


# ---------------------------------------------------------------------------------------- Wen et al.


@dataclass(frozen=True)
class WenConfig:
    image_size: int
    sample_rate: int
    n_identities: int
    size: str = "small"
    n_mels: int = 64
    embed_dim: int = 64
    voice_channels: tuple[int, ...] = ()  # the voice-embedding CNN's hidden layers
    generator_channels: tuple[int, ...] = ()  # at 4 x 4 ... up to image_size
    face_channels: tuple[int, ...] = ()  # the shared face trunk: 1 x 1 stem, then stride-2 layers to 4 x 4
    embedding_noise: float = 0.05  # the original's Gaussian noise on the unit-normalised embedding in training

    @classmethod
    def for_size(cls, size: str, image_size: int, sample_rate: int, n_identities: int, **kw) -> "WenConfig":
        ups = _n_doublings(image_size)
        return cls(
            image_size,
            sample_rate,
            n_identities,
            size,
            voice_channels=_widths(size, (256, 384, 576, 864), (64, 96, 128, 160)),
            generator_channels=_pyramid(_widths(size, (1024,), (128,))[0], ups + 1, descending=True),
            face_channels=_pyramid(_widths(size, (32,), (8,))[0], ups + 1, descending=False),
            **kw,
        )

    def to_dict(self) -> dict:
        return asdict(self)


class LogMelFilterbank(nn.Module):
    """64 log-mel bands, 25 ms Hamming windows every 10 ms, 20-7200 Hz, pre-emphasis 0.97, each band
    standardised over the utterance (Wen et al.'s features; their voice-activity trimming is left out:
    the prepared clips are already speech)."""

    def __init__(self, sample_rate: int, n_mels: int):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=1024,
            win_length=int(0.025 * sample_rate),
            hop_length=int(0.010 * sample_rate),
            f_min=20.0,
            f_max=7200.0,
            n_mels=n_mels,
            window_fn=torch.hamming_window,
            power=2.0,
        )

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, n_mels, frames]."""
        logmel = torch.log(self.mel(preemphasis(wave.float(), 0.97)) + 1e-6)
        return (logmel - logmel.mean(-1, keepdim=True)) / logmel.std(-1, keepdim=True).clamp_min(1e-5)


class VoiceEmbedNet(nn.Module):
    """Filterbanks -> a 64-d voice embedding: stride-2 1-D convolutions, then the mean over time."""

    def __init__(self, cfg: WenConfig):
        super().__init__()
        layers, in_ch = [], cfg.n_mels
        for ch in cfg.voice_channels:
            layers += [nn.Conv1d(in_ch, ch, 3, 2, 1, bias=False), nn.BatchNorm1d(ch), nn.ReLU()]
            in_ch = ch
        layers.append(nn.Conv1d(in_ch, cfg.embed_dim, 3, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.net(fbank).mean(-1)


class WenGenerator(nn.Module):
    def __init__(self, cfg: WenConfig):
        super().__init__()
        chans = cfg.generator_channels
        layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.embed_dim, chans[0], 4, 1, 0), nn.ReLU()]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]
        layers.append(nn.Conv2d(chans[-1], 3, 1))  # linear output, clamped to [-1, 1] when drawing
        self.net = nn.Sequential(*layers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding[:, :, None, None])


class FaceTrunk(nn.Module):
    """The face network shared by Wen et al.'s discriminator and identity classifier: face -> 64-d."""

    def __init__(self, cfg: WenConfig):
        super().__init__()
        chans = cfg.face_channels
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 1), nn.LeakyReLU(0.2)]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(chans[-1], cfg.embed_dim, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.net(face).flatten(1)


class WenCritic(nn.Module):
    """The shared trunk with its two heads: real/fake logit and identity logits."""

    def __init__(self, cfg: WenConfig):
        super().__init__()
        self.trunk = FaceTrunk(cfg)
        self.real = nn.Linear(cfg.embed_dim, 1, bias=False)
        self.identity = nn.Linear(cfg.embed_dim, cfg.n_identities, bias=False)

    def forward(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(face)
        return self.real(h).flatten(), self.identity(h)


class Wen(nn.Module):
    """Waveform -> face: filterbanks, the frozen voice embedder, the generator."""

    draws_from_waveform = True

    def __init__(self, cfg: WenConfig):
        super().__init__()
        self.config = cfg
        self.fbank = LogMelFilterbank(cfg.sample_rate, cfg.n_mels)
        self.voice = VoiceEmbedNet(cfg)
        self.generator = WenGenerator(cfg)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, N] -> unit-norm [B, embed_dim] (the whole clip: the embedder averages over time)."""
        return F.normalize(self.voice(self.fbank(wave)), dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.generator(self.embed(wave)).clamp(-1, 1)


# ------------------------------------------------------------------------------------- save / load

CONFIGS = {"wav2pix": Wav2PixConfig, "wen": WenConfig}
MODELS = {"wav2pix": Wav2Pix, "wen": Wen}


def build_gan(method: str, config: dict) -> nn.Module:
    cls = CONFIGS[method]
    tuples = {f.name for f in cls.__dataclass_fields__.values() if f.name.endswith("channels")}
    cfg = cls(**{k: tuple(v) if k in tuples else v for k, v in config.items()})
    return MODELS[method](cfg)


def load_gan(directory: Path, method: str, meta: dict) -> nn.Module:
    from safetensors.torch import load_file

    model = build_gan(method, meta["gan_configs"][method])
    model.load_state_dict(load_file(str(Path(directory) / f"{method}.safetensors")))
    return model.eval()
