"""The speech-conditioned latent diffusion model with prior normalisation (SCLDM, sec. 3.2-3.3).

- A diffusers `UNet2DConditionModel` on the face latent `z` (scaled to unit variance,
  as Stable Diffusion scales its VAE latents), cross-attending to `n_tokens` tokens
  projected from the frozen pre-trained speech embedding.
- Classifier-free guidance: a learned "no speech" embedding replaces the speech one
  with probability `cfg_dropout` in training; at sampling the two predictions are mixed.
- Prior normalisation with weight lambda (DESIGN.md): the network always sees latents
  shifted by lambda * p.  Training input: z_t + lambda * p.  Sampling starts from
  eps + lambda * p and every solver step is taken on the unshifted latent, so the
  solver's own algebra is untouched and lambda = 0 is exactly the plain LDM.

The functions `training_input` and `sample_latents` are the only places that apply
the shift; tests pin both down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

SAMPLERS = ("ddim", "dpm++", "ddpm")


@dataclass(frozen=True)
class LDMConfig:
    size: str  # small | paper
    latent_channels: int
    latent_size: int
    embed_dim: int  # the speech embedding's size
    n_tokens: int
    cross_attention_dim: int
    latent_scale: float  # z * latent_scale has unit variance over the training faces
    # Also add the speech condition to the timestep embedding (diffusers' "projection" class
    # embedding of the mean token), so every ResNet block is modulated by it, not only the
    # cross-attention layers: a small CPU-trained UNet otherwise learns to ignore the voice.
    time_conditioning: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def unet_kwargs(cfg: LDMConfig) -> dict:
    """UNet2DConditionModel arguments of the named size."""
    common = dict(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        cross_attention_dim=cfg.cross_attention_dim,
    )
    if cfg.time_conditioning:
        common |= dict(class_embed_type="projection", projection_class_embeddings_input_dim=cfg.cross_attention_dim)
    if cfg.size == "small" and cfg.latent_size >= 16:
        # Three levels over a 16x16 latent (16 -> 8 -> 4), cross-attention at 4x4 only; the voice
        # also reaches every ResNet block through the time embedding (`time_conditioning`).
        # 1.5 M parameters, ~0.43 s a batch-64 step on 2 CPU cores; attention at 8x8 as well
        # (32-64-96 wide) measured 0.74 s, too slow for the budget.
        return common | dict(
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            attention_head_dim=8,
            norm_num_groups=8,
        )
    if cfg.size == "small":
        # Two levels over an 8x8 latent, attention at both; 1.1 M parameters, ~0.22 s a
        # batch-64 step on 2 CPU cores (64/128 wide: 0.69 s, too slow for the budget).
        return common | dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4,
            norm_num_groups=8,
        )
    if cfg.size == "paper":
        # Stable Diffusion's widths (the paper builds on it), one level fewer for an 8x8 latent.
        return common | dict(
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8,
            norm_num_groups=32,
        )
    raise ValueError(f"unknown LDM size '{cfg.size}' (small | paper)")


def build_unet(cfg: LDMConfig):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_kwargs(cfg))


class SpeechCondition(nn.Module):
    """Speech embedding [B, D] -> cross-attention tokens [B, n_tokens, cross_attention_dim].

    The embedding is L2-normalised first: the contrastive space is a cosine space, so
    its length carries no meaning.  `null` is the learned "no speech" embedding of
    classifier-free guidance.
    """

    def __init__(self, embed_dim: int, n_tokens: int, cross_attention_dim: int):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, cross_attention_dim
        self.project = nn.Linear(embed_dim, n_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)
        self.null = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, speech_emb: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        emb = F.normalize(speech_emb.float(), dim=-1)
        if drop is not None:  # bool [B]: these rows get the null embedding
            emb = torch.where(drop[:, None], self.null.expand_as(emb), emb)
        tokens = self.project(emb).view(-1, self.n_tokens, self.dim)
        return self.norm(tokens)

    def unconditional(self, batch: int) -> torch.Tensor:
        return self.norm(self.project(self.null).view(1, self.n_tokens, self.dim)).expand(batch, -1, -1)


def make_scheduler(sampler: str, train_config: dict | None = None):
    """A diffusers scheduler for `sampler`, sharing the training noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = train_config or DDPMScheduler(clip_sample=False).config
    # Every value explicit: a live config lists the keys it left at their defaults under
    # `_use_default_values`, and from_config then gives the *target* class's defaults for
    # them.  DPM-Solver's timestep_spacing default ("linspace") starts sampling at t = 999,
    # where the cosine schedule's signal is ~0 and x0 = (x - sigma * eps) / alpha explodes;
    # the training schedule's "leading" spacing starts one stride below.
    config = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    if sampler == "dpm++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config)
    raise ValueError(f"unknown sampler '{sampler}' ({' | '.join(SAMPLERS)})")


def training_input(noisy: torch.Tensor, prior: torch.Tensor, prior_weight: float) -> torch.Tensor:
    """What the network sees in training: z_t + lambda * p (prior in the same scaled space)."""
    return noisy + prior_weight * prior if prior_weight else noisy


Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, tokens) -> eps


@torch.no_grad()
def sample_latents(
    denoise: Denoiser,
    scheduler,
    tokens: torch.Tensor,
    null_tokens: torch.Tensor | None,
    prior: torch.Tensor,
    prior_weight: float,
    steps: int,
    guidance: float,
    generator: torch.Generator,
    shape: tuple[int, ...],
    progress: bool = False,
) -> torch.Tensor:
    """Unshifted latents [B, C, h, w] from noise, conditioned on `tokens`.

    The sampler's state is the unshifted latent x_t; the network is shown x_t + lambda*p,
    so the shifted chain starts at eps + lambda*p exactly as in training.  With
    guidance != 1 the unconditional prediction (null tokens) is mixed in:
    eps = eps_u + guidance * (eps_c - eps_u).
    """
    from tqdm import tqdm

    device = tokens.device
    scheduler.set_timesteps(steps, device=device)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    x = noise * scheduler.init_noise_sigma
    shift = prior_weight * prior.to(device) if prior_weight else None
    guided = guidance != 1.0 and null_tokens is not None
    both = torch.cat([null_tokens, tokens]) if guided else tokens
    for t in tqdm(scheduler.timesteps, desc="sampling", unit="step", disable=not progress, leave=False):
        seen = x if shift is None else x + shift
        seen = scheduler.scale_model_input(seen, t)
        if guided:
            eps_u, eps_c = denoise(torch.cat([seen, seen]), t, both).chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            eps = denoise(seen, t, both)
        x = scheduler.step(eps, t, x).prev_sample
    return x


def run_unet(unet, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """eps from the UNet: tokens for cross-attention, and their mean for the time embedding when it takes one."""
    global_condition = tokens.mean(dim=1) if unet.config.class_embed_type == "projection" else None
    return unet(x, t, encoder_hidden_states=tokens, class_labels=global_condition).sample


def unet_denoiser(unet) -> Denoiser:
    return lambda x, t, tokens: run_unet(unet, x, t, tokens)
