"""The talking face (DAE-Talker): a diffusion autoencoder animated by a Conformer from speech.

- **Diffusion autoencoder** (`DiffusionAutoencoder`): a semantic encoder maps a frame to a
  small semantic code, and a conditional DDIM decoder
  (a diffusers UNet, the motion vector z entering through its time embedding as
  scale-and-shift, as in Diff-AE) rebuilds the frame from noise. It works in the latent space of the project's
  frozen face autoencoder (4 x 16 x 16 at 64 px), as Stable Diffusion does, because a
  64 px pixel-space UNet costs ~0.75 s a training step on 2 CPU cores.
- **Identity and motion are separated by construction**: the decoder also sees a
  *reference* frame of the same person (its latent, concatenated to the noisy input) drawn
  from another moment of the clip, and z is the *difference* of the two frames' semantic
  codes, z = E(frame) - E(reference). What the two frames share (who it is, hair, background)
  cancels, so z says only how the mouth, eyes and head moved, and the reference says who it
  is. (With z = E(frame) alone, 84% of z's variance lay between speakers, which speech cannot
  predict; the difference code raised val lip sync from 0.69 to 0.82.) At
  generation the reference is any still face: a photo, a VoxSynth face, or the face SCLDM
  drew from the same voice.
- **speech2latent** (`Speech2Latent`): log-mel features stacked to the 25 fps video rate, a
  torchaudio Conformer, a pose head (yaw, pitch, roll) and a latent head that reads the
  Conformer's output together with the pose and the reference face's semantic code (how far
  a mouth opens depends on the face and on its state in the reference), so a given pose
  sequence replaces the predicted one (pose control). What speech cannot predict of the pose
  (VoxSynth heads drift slowly on their own, as people's do) is sampled, not averaged away: a
  smooth random drift with the spread and correlation time of the pose head's residual on the
  training clips (`sample_pose_drift`), so a generated head moves like a real one.
- **Continuous generation**: every frame of a clip is decoded deterministically (DDIM,
  eta 0) from *one shared* stochastic code x_T, so frames differ only where z differs and
  the clip does not flicker. By default x_T is Gaussian noise drawn once from a seed
  (`code="noise"`); `code="inversion"` uses the DDIM inversion of the reference under zero
  motion instead, which reproduces the reference exactly where z is zero but also pins
  its mouth: the inverted code carries the reference's mouth state, which a small z
  cannot move (val lip sync 0.82 with inversion, 0.84-0.87 over three noise seeds; the
  frames' identity distance to the reference 0.001 against 0.002, with 0.64 between speakers).
- **Regression reference** (`LatentRegressor`): the same speech front-end and the same
  UNet, but the frame's latent is regressed from speech and the reference in one pass,
  with no diffusion: what diffusion adds is what the evaluation compares.
- **Mouth probe** (`MotionProbe`): a small CNN that reads mouth opening and head pose off
  a frame; trained on real VoxSynth frames, it is the evaluation's measuring instrument.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir

POSE_SCALE = 10.0  # degrees per unit: pose enters and leaves the networks as degrees / 10
CONFIG = "talker.json"
FACE_AUTOENCODER = "pretrain"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class TalkerConfig:
    latent_channels: int = 4  # the face autoencoder's z
    latent_size: int = 16
    motion_dim: int = 16  # a frame's semantic code, and the motion vector z (a difference of two codes)
    unet_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    encoder_width: int = 64
    sample_rate: int = 16000
    fps: int = 25
    n_mels: int = 80
    conformer_dim: int = 144
    conformer_heads: int = 4
    conformer_layers: int = 3
    conformer_kernel: int = 15
    num_train_timesteps: int = 1000
    ddim_steps: int = 10
    extra: dict = field(default_factory=dict)

    @property
    def hop(self) -> int:
        return self.sample_rate // 100  # mel frames at 100 Hz

    @property
    def stack(self) -> int:
        return 100 // self.fps  # mel frames per video frame

    @property
    def feature_dim(self) -> int:
        return self.n_mels * self.stack

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TalkerConfig":
        d = dict(d)
        d["unet_channels"] = tuple(d["unet_channels"])
        return cls(**d)


def frames_for(n_samples: int, cfg: TalkerConfig) -> int:
    """Video frames covering `n_samples` of audio at the config's rates."""
    return max(1, int(round(n_samples / cfg.sample_rate * cfg.fps)))


class SpeechFrames(nn.Module):
    """Waveform [B, samples] -> per-video-frame features [B, T, n_mels * stack].

    Log-mel at 100 Hz (25 ms windows), normalised per utterance (mean and variance of
    each band over the clip, so a microphone's colouring and level drop out), then each
    group of `stack` mel frames becomes one video frame's feature vector.
    """

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        import torchaudio

        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            cfg.sample_rate, n_fft=400, win_length=400, hop_length=cfg.hop, n_mels=cfg.n_mels, center=True
        )

    def forward(self, wave: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        cfg = self.cfg
        n_frames = n_frames or frames_for(wave.shape[-1], cfg)
        with torch.autocast(wave.device.type, enabled=False):
            mel = torch.log(self.mel(wave.float()) + 1e-6)  # [B, n_mels, F]
        mel = (mel - mel.mean(-1, keepdim=True)) / (mel.std(-1, keepdim=True) + 1e-5)
        need = n_frames * cfg.stack
        mel = F.pad(mel, (0, max(0, need - mel.shape[-1])), mode="replicate")[..., :need]
        return mel.reshape(mel.shape[0], cfg.n_mels, n_frames, cfg.stack).permute(0, 2, 3, 1).flatten(2)


class SpeechContext(nn.Module):
    """Per-frame features -> Conformer states [B, T, conformer_dim]."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        from torchaudio.models import Conformer

        self.features = SpeechFrames(cfg)
        self.inp = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.conformer_dim), nn.LayerNorm(cfg.conformer_dim))
        self.conformer = Conformer(
            input_dim=cfg.conformer_dim,
            num_heads=cfg.conformer_heads,
            ffn_dim=2 * cfg.conformer_dim,
            num_layers=cfg.conformer_layers,
            depthwise_conv_kernel_size=cfg.conformer_kernel,
            dropout=0.1,
        )

    def forward(self, wave: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        x = self.inp(self.features(wave, n_frames))
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return self.conformer(x, lengths)[0]


class Speech2Latent(nn.Module):
    """Speech and a reference face -> per-frame pose (yaw, pitch, roll) and motion vector z (normalised units)."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        d = cfg.conformer_dim
        self.context = SpeechContext(cfg)
        self.pose_head = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, 3))
        self.latent_head = nn.Sequential(
            nn.Linear(d + 3 + cfg.motion_dim, 2 * d), nn.SiLU(), nn.Linear(2 * d, cfg.motion_dim)
        )

    def forward(
        self,
        wave: torch.Tensor,
        reference_code: torch.Tensor,
        n_frames: int | None = None,
        pose: torch.Tensor | None = None,
        drift: torch.Tensor | None = None,
    ):
        """(z [B, T, motion_dim], pose [B, T, 3] in degrees) of `wave` [B, samples] spoken by the face whose
        normalised semantic code is `reference_code` [B, motion_dim]; `pose` given: used instead of the predicted;
        `drift` [B, T, 3] (degrees): added to the predicted pose (the part speech cannot predict, sampled)."""
        h = self.context(wave, n_frames)
        predicted = self.pose_head(h) * POSE_SCALE
        if drift is not None and pose is None:
            predicted = predicted + drift.to(h)
        used = predicted if pose is None else pose.to(h)
        face = reference_code.to(h)[:, None].expand(-1, h.shape[1], -1)
        z = self.latent_head(torch.cat([h, used / POSE_SCALE, face], dim=-1))
        return z, predicted


class SemanticEncoder(nn.Module):
    """Face latent [B, 4, 16, 16] -> semantic code [B, motion_dim]."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        w = cfg.encoder_width
        self.net = nn.Sequential(
            nn.Conv2d(cfg.latent_channels, w, 3, padding=1),
            nn.GroupNorm(8, w),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            nn.GroupNorm(8, 2 * w),
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),
            nn.GroupNorm(8, 2 * w),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * w * (cfg.latent_size // 4) ** 2, cfg.motion_dim),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


def make_unet(cfg: TalkerConfig, in_channels: int):
    from diffusers import UNet2DModel

    n = len(cfg.unet_channels)
    return UNet2DModel(
        sample_size=cfg.latent_size,
        in_channels=in_channels,
        out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=16,
        down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * (n - 1),
        up_block_types=("AttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        class_embed_type="identity",
        resnet_time_scale_shift="scale_shift",
    )


def alphas_cumprod(cfg: TalkerConfig) -> torch.Tensor:
    """The squared-cosine schedule (improved DDPM), as the project's LDM uses."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule="squaredcos_cap_v2"
    ).alphas_cumprod.float()


class DiffusionAutoencoder(nn.Module):
    """Semantic encoder + conditional DDIM decoder over face latents, with a reference frame."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SemanticEncoder(cfg)
        self.unet = make_unet(cfg, 2 * cfg.latent_channels)
        time_dim = cfg.unet_channels[0] * 4
        self.condition = nn.Sequential(nn.Linear(cfg.motion_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.register_buffer("alphas_cumprod", alphas_cumprod(cfg), persistent=False)

    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, reference: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([noisy, reference], 1), t, class_labels=self.condition(z)).sample

    def motion(self, frame: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """z: how `frame` differs from `reference` (two face latents of one person), in semantic code."""
        return self.encoder(frame) - self.encoder(reference)

    def loss(self, target: torch.Tensor, reference: torch.Tensor, generator: torch.Generator | None = None):
        """v-prediction loss of one batch of (target, reference) latents, with z = motion(target, reference)."""
        z = self.motion(target, reference)
        t = torch.randint(0, self.cfg.num_train_timesteps, (target.shape[0],), generator=generator).to(target.device)
        noise = torch.randn(target.shape, generator=generator).to(target)
        a = self.alphas_cumprod.to(target.device)[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * target + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * target
        return F.mse_loss(self.velocity(noisy, t, reference, z).float(), v.float())

    def _timesteps(self, steps: int) -> list[int]:
        n = self.cfg.num_train_timesteps
        return [int(round(x)) for x in torch.linspace(n - 1, 0, steps).tolist()]

    def _x0_eps(self, x: torch.Tensor, t: int, reference: torch.Tensor, z: torch.Tensor):
        a = self.alphas_cumprod[t].to(x)
        v = self.velocity(x, torch.full((x.shape[0],), t, device=x.device), reference, z).to(x)
        x0 = a.sqrt() * x - (1 - a).sqrt() * v
        eps = (1 - a).sqrt() * x + a.sqrt() * v
        return x0, eps

    @torch.no_grad()
    def decode(
        self, x_t: torch.Tensor, reference: torch.Tensor, z: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        """DDIM (eta 0) from the stochastic code x_T to the clean latent, conditioned on z and the reference."""
        ts = self._timesteps(steps or self.cfg.ddim_steps)
        x = x_t
        for k, t in enumerate(ts):
            x0, eps = self._x0_eps(x, t, reference, z)
            if k == len(ts) - 1:
                return x0
            a_next = self.alphas_cumprod[ts[k + 1]].to(x)
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x

    @torch.no_grad()
    def invert(
        self, latent: torch.Tensor, reference: torch.Tensor, z: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        """The stochastic code x_T whose DDIM decoding gives back `latent` (DDIM inversion)."""
        ts = self._timesteps(steps or self.cfg.ddim_steps)[::-1]  # 0 .. T-1
        x = latent
        for k in range(len(ts) - 1):
            _, eps = self._x0_eps(x, ts[k], reference, z)
            a, a_next = self.alphas_cumprod[ts[k]].to(x), self.alphas_cumprod[ts[k + 1]].to(x)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x


class LatentRegressor(nn.Module):
    """The regression reference: speech (Conformer) + reference latent -> the frame's latent, one pass."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.context = SpeechContext(cfg)
        self.unet = make_unet(cfg, cfg.latent_channels)
        time_dim = cfg.unet_channels[0] * 4
        self.condition = nn.Linear(cfg.conformer_dim, time_dim)

    def frame_latents(self, h: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """h [N, conformer_dim] (one frame's speech state each), reference [N, 4, 16, 16] -> latents."""
        t = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        return reference + self.unet(reference, t, class_labels=self.condition(h)).sample


class MotionProbe(nn.Module):
    """A 64 px frame -> (mouth opening 0..1, yaw, pitch, roll in degrees / 10)."""

    OUTPUTS = ("opening", "yaw", "pitch", "roll")

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

        self.net = nn.Sequential(
            *block(3, w),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            *block(2 * w, 4 * w),
            nn.Flatten(),
            nn.Linear(4 * w * 16, 128),
            nn.ReLU(),
            nn.Linear(128, 4),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, 64, 64] in [-1, 1] -> [B, 4]."""
        return self.net(images)


class TalkerBundle(nn.Module):
    """Everything `sclmd talk` needs, saved together: DAE, speech2latent, regressor and code statistics."""

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.dae = DiffusionAutoencoder(cfg)
        self.speech2latent = Speech2Latent(cfg)
        self.regressor = LatentRegressor(cfg)
        # speech2latent's units: a frame's semantic code (its input, for the reference) is normalised by
        # code_mean and code_std over training frames; z (its output) by motion_std, z's spread within a clip.
        self.register_buffer("code_mean", torch.zeros(cfg.motion_dim))
        self.register_buffer("code_std", torch.ones(cfg.motion_dim))
        self.register_buffer("motion_std", torch.ones(cfg.motion_dim))
        # The head's slow drift that speech does not predict (VoxSynth's yaw and roll wander on their own, as
        # a person's do): the spread (degrees) and correlation time (a Gaussian filter's sigma, in frames) of
        # the pose head's residual on training clips, so a generated head samples a plausible drift instead of
        # holding the mean. Zeros: no drift (a talker saved before these existed).
        self.register_buffer("pose_drift_std", torch.zeros(3))
        self.register_buffer("pose_drift_frames", torch.zeros(3))

    def normalised_code(self, codes: torch.Tensor) -> torch.Tensor:
        """Semantic codes [..., motion_dim] in speech2latent's input units."""
        return (codes - self.code_mean) / self.code_std

    def reference_code(self, reference: torch.Tensor) -> torch.Tensor:
        """Face latents [B, C, h, w] -> their normalised semantic codes, speech2latent's face input."""
        return self.normalised_code(self.dae.encoder(reference))

    def save_pretrained(self, directory: Path, face_autoencoder: Path, extra: dict | None = None) -> None:
        """The talker and a copy of the face autoencoder it works in (`pretrain/`): a copied folder talks."""
        import shutil

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(Path(directory)) as tmp:
            save_file(state, str(tmp / WEIGHTS))
            shutil.copytree(face_autoencoder, tmp / FACE_AUTOENCODER)
            (tmp / CONFIG).write_text(json.dumps({"config": self.cfg.to_dict(), **(extra or {})}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: Path) -> "TalkerBundle":
        directory = Path(directory)
        try:
            meta = json.loads((directory / CONFIG).read_text())
            state = load_file(str(directory / WEIGHTS))
        except FileNotFoundError as e:
            raise SclmdError(
                f"{directory}: no trained talker ({Path(e.filename).name} missing). "
                "Run `make talker` (or `sclmd stage train_talker`) first."
            ) from None
        except Exception as e:
            raise SclmdError(f"{directory}: unreadable talker ({e}). Re-run `sclmd stage train_talker`.") from None
        bundle = cls(TalkerConfig.from_dict(meta["config"]))
        try:
            missing, unexpected = bundle.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes that do not fit the config
            raise SclmdError(f"{directory}: its weights do not fit its {CONFIG} ({e}).") from None
        missing = [k for k in missing if k not in OPTIONAL_BUFFERS]
        if missing or unexpected:
            raise SclmdError(
                f"{directory}: its {WEIGHTS} does not match a talker (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}). Re-train it (`sclmd stage train_talker`) or restore the shipped folder."
            )
        bundle.meta = meta
        return bundle.eval().requires_grad_(False)


STOCHASTIC_CODES = ("noise", "inversion")
OPTIONAL_BUFFERS = ("pose_drift_std", "pose_drift_frames")  # absent from talkers saved before the pose drift


def slow_noise(n: int, sigma_frames: float, generator: torch.Generator) -> torch.Tensor:
    """[n] smooth zero-mean noise of unit standard deviation: white noise through a Gaussian filter of width
    `sigma_frames`, scaled by the filter's own gain so a short clip is not stretched to unit spread."""
    if sigma_frames <= 0:
        return torch.zeros(n)
    pad = int(3 * sigma_frames) + 1
    k = torch.arange(-pad, pad + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (k / sigma_frames) ** 2)
    kernel = kernel / kernel.sum()
    white = torch.randn(n + 2 * pad, generator=generator, dtype=torch.float64)
    smooth = F.conv1d(white[None, None], kernel[None, None])[0, 0][:n]
    return (smooth * (2.0 * math.sqrt(math.pi) * sigma_frames) ** 0.5).float()


def sample_pose_drift(bundle: "TalkerBundle", n_frames: int, seed: int) -> torch.Tensor:
    """[n_frames, 3] degrees: one draw of the head's unpredictable drift (yaw, pitch, roll), from `seed`."""
    generator = torch.Generator().manual_seed(seed * 7919 + 17)
    return torch.stack(
        [
            float(std) * slow_noise(n_frames, float(sigma), generator)
            for std, sigma in zip(bundle.pose_drift_std, bundle.pose_drift_frames)
        ],
        dim=-1,
    )


def stochastic_code(
    bundle: TalkerBundle, reference: torch.Tensor, code: str = "noise", seed: int = 0, steps: int | None = None
) -> torch.Tensor:
    """The x_T [B, C, h, w] every frame of a clip starts from, for face latents `reference` [B, C, h, w]: one
    Gaussian noise from `seed` for every face ("noise"), or each face's DDIM inversion under zero motion
    ("inversion")."""
    if code == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((1, *reference.shape[1:]), generator=generator).to(reference).expand_as(reference)
    if code == "inversion":
        return bundle.dae.invert(
            reference, reference, reference.new_zeros(len(reference), bundle.cfg.motion_dim), steps
        )
    raise SclmdError(f"stochastic code '{code}' is not one of: {', '.join(STOCHASTIC_CODES)}")


@torch.no_grad()
def animate(
    bundle: TalkerBundle,
    wave: torch.Tensor,
    reference: torch.Tensor,
    n_frames: int,
    pose: torch.Tensor | None = None,
    steps: int | None = None,
    batch: int = 100,
    code: str = "noise",
    seed: int = 0,
    drift: bool = True,
):
    """Continuous generation: face latents [T, C, h, w] of `reference` (a face latent) speaking `wave`.

    All frames share one stochastic code (`stochastic_code`), so they differ only where the
    speech-driven z differs. Without a given `pose`, the head follows the pose head's prediction plus,
    with `drift`, a sampled drift (`sample_pose_drift`, from `seed`). Returns (latents, pose used [T, 3]).
    """
    ref = reference[None]
    x_t = stochastic_code(bundle, ref, code, seed, steps)
    sampled = sample_pose_drift(bundle, n_frames, seed)[None] if drift and pose is None else None
    z_norm, predicted = bundle.speech2latent(
        wave[None], bundle.reference_code(ref), n_frames, None if pose is None else pose[None], drift=sampled
    )
    z = z_norm[0] * bundle.motion_std
    out = []
    for s in range(0, n_frames, batch):
        k = min(batch, n_frames - s)
        out.append(bundle.dae.decode(x_t.expand(k, -1, -1, -1), ref.expand(k, -1, -1, -1), z[s : s + k], steps))
    return torch.cat(out), (predicted[0] if pose is None else pose)


@torch.no_grad()
def regress(bundle: TalkerBundle, wave: torch.Tensor, reference: torch.Tensor, n_frames: int, batch: int = 100):
    """The regression reference's face latents [T, C, h, w] for the same inputs."""
    h = bundle.regressor.context(wave[None], n_frames)[0]
    return torch.cat(
        [
            bundle.regressor.frame_latents(h[s : s + batch], reference[None].expand(len(h[s : s + batch]), -1, -1, -1))
            for s in range(0, n_frames, batch)
        ]
    )


class TalkingFace:
    """A trained talker with its face autoencoder: a still face and a voice in, frames out."""

    METHODS = ("dae", "regression", "still")

    def __init__(self, bundle: TalkerBundle, face_model):
        self.bundle, self.face = bundle, face_model.eval().requires_grad_(False)
        self.cfg = bundle.cfg

    @classmethod
    def from_pretrained(cls, directory: Path) -> "TalkingFace":
        from sclmd.models.speech_face import SpeechFaceModel

        bundle = TalkerBundle.from_pretrained(directory)
        return cls(bundle, SpeechFaceModel.from_pretrained(Path(directory) / FACE_AUTOENCODER))

    @torch.no_grad()
    def face_latent(self, face_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 [H, W, 3] -> the face autoencoder's latent [C, h, w]."""
        x = face_uint8.float().permute(2, 0, 1)[None] / 127.5 - 1
        return self.face.face_encoder.encode(x)[0]

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.face.face_decoder.decode(latents).clamp(-1, 1)

    @torch.no_grad()
    def predicted_pose(self, wave: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        """[T, 3] degrees: the pose head's prediction from `wave` [samples] alone (the mean, without drift)."""
        n_frames = n_frames or frames_for(wave.shape[-1], self.cfg)
        h = self.bundle.speech2latent.context(wave[None], n_frames)
        return self.bundle.speech2latent.pose_head(h)[0] * POSE_SCALE

    @torch.no_grad()
    def speak(
        self,
        wave: torch.Tensor,
        face_uint8: torch.Tensor,
        *,
        method: str = "dae",
        pose: torch.Tensor | None = None,
        n_frames: int | None = None,
        steps: int | None = None,
        code: str = "noise",
        seed: int = 0,
        drift: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames [T, 3, H, W] in [-1, 1] of the face speaking `wave` [samples] and the pose used (dae only).

        `method`: dae (the talker), regression (the regression reference) or still (the face, unmoving);
        `code` and `seed`: the DAE's shared stochastic code (`stochastic_code`) and the head's sampled drift
        (`drift`: False holds the pose head's mean)."""
        if method not in self.METHODS:
            raise SclmdError(f"method '{method}' is not one of: {', '.join(self.METHODS)}")
        if code not in STOCHASTIC_CODES:
            raise SclmdError(f"stochastic code '{code}' is not one of: {', '.join(STOCHASTIC_CODES)}")
        n_frames = n_frames or frames_for(wave.shape[-1], self.cfg)
        reference = self.face_latent(face_uint8)
        if method == "still":
            return self.decode_latents(reference[None]).expand(n_frames, -1, -1, -1), None
        if method == "regression":
            return self.decode_latents(regress(self.bundle, wave, reference, n_frames)), None
        latents, used = animate(self.bundle, wave, reference, n_frames, pose, steps, code=code, seed=seed, drift=drift)
        return self.decode_latents(latents), used
