"""The two baselines SCLDM is compared with, on the same frozen encoders and decoder.

Both map the frozen speech embedding to a face latent `z` (in the LDM's unit-variance
scale) in one deterministic pass, and the pre-trained face decoder draws it:

- `Speech2FaceRegressor`: Speech2Face's idea (regress the face representation from the
  voice, then decode it), as an MLP trained with an L1 loss.
- `ARSPM`: AR-SPM's residual idea: z = p + r(speech), the face prior p plus a residual
  computed from the voice, with an attention gate over the hidden features, trained
  with the tri-item loss w2 * L2 + w1 * L1 + wc * (1 - cos).  The residual layer starts
  at zero, so training starts from the prior face.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir

METHODS = ("speech2face", "ar_spm")  # the regressions; the GANs are `gan_baselines.GAN_METHODS`
CONFIG = "baselines.json"


@dataclass(frozen=True)
class BaselineConfig:
    embed_dim: int
    latent_shape: tuple[int, int, int]
    hidden: int
    latent_scale: float  # z * latent_scale has unit variance over the training faces (as the LDM's)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)


class Speech2FaceRegressor(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.config = cfg
        self.net = nn.Sequential(
            nn.Linear(cfg.embed_dim, cfg.hidden),
            nn.LayerNorm(cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.LayerNorm(cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.latent_dim),
        )

    def forward(self, speech_emb: torch.Tensor) -> torch.Tensor:
        """[B, D] -> scaled latents [B, C, h, w]."""
        return self.net(F.normalize(speech_emb.float(), dim=-1)).view(-1, *self.config.latent_shape)


class ARSPM(nn.Module):
    def __init__(self, cfg: BaselineConfig, prior_scaled: torch.Tensor):
        super().__init__()
        self.config = cfg
        self.register_buffer("prior", prior_scaled.detach().float().reshape(cfg.latent_shape).clone())
        self.encode = nn.Sequential(
            nn.Linear(cfg.embed_dim, cfg.hidden),
            nn.LayerNorm(cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.LayerNorm(cfg.hidden),
            nn.GELU(),
        )
        self.attention = nn.Linear(cfg.hidden, cfg.hidden)  # a sigmoid gate per hidden unit
        self.residual = nn.Linear(cfg.hidden, cfg.latent_dim)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    def forward(self, speech_emb: torch.Tensor) -> torch.Tensor:
        h = self.encode(F.normalize(speech_emb.float(), dim=-1))
        h = h * torch.sigmoid(self.attention(h))
        return self.prior + self.residual(h).view(-1, *self.config.latent_shape)


def tri_item_loss(predicted: torch.Tensor, target: torch.Tensor, w2: float, w1: float, wc: float) -> torch.Tensor:
    """AR-SPM's loss: a weighted sum of L2, L1 and negative cosine (as 1 - cos, so 0 is perfect)."""
    p, t = predicted.flatten(1), target.flatten(1)
    return w2 * F.mse_loss(p, t) + w1 * F.l1_loss(p, t) + wc * (1 - F.cosine_similarity(p, t, dim=-1)).mean()


def build(method: str, cfg: BaselineConfig, prior_scaled: torch.Tensor) -> nn.Module:
    if method == "speech2face":
        return Speech2FaceRegressor(cfg)
    if method == "ar_spm":
        return ARSPM(cfg, prior_scaled)
    raise ValueError(f"unknown baseline '{method}' ({' | '.join(METHODS)})")


def save_baselines(directory: Path, models: dict[str, nn.Module], cfg: BaselineConfig, extra: dict) -> None:
    from safetensors.torch import save_file

    with atomic_dir(Path(directory)) as tmp:
        for name, model in models.items():
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                str(tmp / f"{name}.safetensors"),
            )
        (tmp / CONFIG).write_text(json.dumps({"config": cfg.to_dict(), **extra}, indent=2) + "\n")


def load_baselines(directory: Path) -> dict[str, nn.Module]:
    """Every baseline in the folder: the two regressions, and the two GANs when it holds them
    (a folder written before they existed has only the regressions)."""
    from safetensors.torch import load_file

    from sclmd.models.gan_baselines import GAN_METHODS, load_gan

    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG).read_text())
        raw = meta["config"]
        cfg = BaselineConfig(**{**raw, "latent_shape": tuple(raw["latent_shape"])})
        models = {}
        for name in METHODS:
            state = load_file(str(directory / f"{name}.safetensors"))
            prior = state.get("prior", torch.zeros(cfg.latent_shape))
            model = build(name, cfg, prior)
            model.load_state_dict(state)
            models[name] = model.eval()
        for name in GAN_METHODS:
            if name in meta.get("gan_configs", {}):
                models[name] = load_gan(directory, name, meta)
    except FileNotFoundError as e:
        raise SclmdError(
            f"{directory}: no baselines ({Path(e.filename).name} missing). Run `sclmd stage baselines`."
        ) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise SclmdError(f"{directory}: unreadable baselines ({e}). Re-run `sclmd stage baselines`.") from None
    return models


def baseline_runs(directory: Path) -> dict[str, dict]:
    """How each GAN baseline's training went ({method: {"status": ok | collapsed | diverged, "why": ...}})."""
    try:
        return json.loads((Path(directory) / CONFIG).read_text()).get("gan_runs", {})
    except (OSError, json.JSONDecodeError):
        return {}


def draw_baseline(model: nn.Module, decoder: nn.Module, speech_emb: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
    """A baseline's one face per clip, [B, 3, H, W] in [-1, 1]: a GAN draws from the waveform, a
    regression's latent is drawn by the shared face decoder."""
    if getattr(model, "draws_from_waveform", False):
        return model(waves.float()).clamp(-1, 1)
    return decoder(model(speech_emb) / model.config.latent_scale).clamp(-1, 1)
