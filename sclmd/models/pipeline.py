"""Voice in, face out: everything `sclmd generate` needs, in one folder.

Layout of a saved pipeline (diffusers-style, safetensors only):

    unet/                     UNet2DConditionModel.save_pretrained (EMA weights)
    scheduler/                the training noise schedule (DDPMScheduler config)
    condition.safetensors     the speech -> tokens projection (EMA weights)
    pretrain/                 the frozen speech encoder + face autoencoder (SpeechFaceModel)
    prior/                    the face prior p (FacePrior)
    sclmd.json                LDMConfig, the sampling defaults and the data shapes

so a copied folder generates faces without the training data or the pipeline around it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir
from sclmd.models.ldm import LDMConfig, SpeechCondition, make_scheduler, sample_latents, unet_denoiser
from sclmd.models.prior import FacePrior
from sclmd.models.speech_face import SpeechFaceModel

CONFIG = "sclmd.json"
CONDITION = "condition.safetensors"


@dataclass(frozen=True)
class SamplingDefaults:
    sampler: str
    steps: int
    guidance: float
    prior_weight: float


class SpeechToFacePipeline:
    def __init__(
        self,
        config: LDMConfig,
        unet,
        condition: SpeechCondition,
        encoders: SpeechFaceModel,
        prior: FacePrior,
        scheduler_config: dict,
        defaults: SamplingDefaults,
        data: dict,
    ):
        self.config, self.unet, self.condition, self.encoders = config, unet, condition, encoders
        self.prior, self.scheduler_config, self.defaults, self.data = prior, dict(scheduler_config), defaults, data
        self.device = torch.device("cpu")
        for module in (unet, condition, encoders):
            module.eval().requires_grad_(False)

    def to(self, device: str | torch.device) -> "SpeechToFacePipeline":
        self.device = torch.device(device)
        for module in (self.unet, self.condition, self.encoders):
            module.to(self.device)
        return self

    @property
    def scaled_prior(self) -> torch.Tensor:
        return self.prior.mean * self.config.latent_scale

    @torch.no_grad()
    def speech_embedding(self, waves: torch.Tensor) -> torch.Tensor:
        return self.encoders.speech_encoder(waves.to(self.device))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unshifted, scaled latents -> images [B, 3, H, W] in [-1, 1]."""
        return self.encoders.face_decoder.decode(latents / self.config.latent_scale).clamp(-1, 1)

    @torch.no_grad()
    def __call__(
        self,
        speech_emb: torch.Tensor,
        *,
        seed: int = 0,
        samples: int = 1,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        prior_weight: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Faces [B * samples, 3, H, W] for speech embeddings [B, D]; row b*samples+k is sample k of input b.

        The same seed gives the same faces: all noise comes from one generator seeded here.
        """
        d = self.defaults
        scheduler = make_scheduler(sampler or d.sampler, self.scheduler_config)
        emb = speech_emb.to(self.device).repeat_interleave(samples, dim=0)
        tokens = self.condition(emb)
        null = self.condition.unconditional(len(emb))
        c, s = self.config.latent_channels, self.config.latent_size
        latents = sample_latents(
            unet_denoiser(self.unet),
            scheduler,
            tokens,
            null,
            self.scaled_prior,
            d.prior_weight if prior_weight is None else prior_weight,
            steps or d.steps,
            d.guidance if guidance is None else guidance,
            torch.Generator().manual_seed(seed),
            (len(emb), c, s, s),
            progress=progress,
        )
        return self.decode(latents)

    # --- files ------------------------------------------------------------------------------------

    def save_pretrained(self, directory: Path, pretrain_dir: Path, prior_dir: Path) -> None:
        """Atomically: the UNet and projection, plus copies of the encoders' and the prior's folders."""
        from diffusers import DDPMScheduler

        with atomic_dir(Path(directory)) as tmp:
            self.unet.save_pretrained(tmp / "unet", safe_serialization=True)
            DDPMScheduler.from_config(self.scheduler_config).save_pretrained(tmp / "scheduler")
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.condition.state_dict().items()}, str(tmp / CONDITION)
            )
            shutil.copytree(pretrain_dir, tmp / "pretrain")
            shutil.copytree(prior_dir, tmp / "prior")
            (tmp / CONFIG).write_text(
                json.dumps(
                    {
                        "ldm": self.config.to_dict(),
                        "sampling": self.defaults.__dict__,
                        "data": self.data,
                    },
                    indent=2,
                )
                + "\n"
            )

    @classmethod
    def from_pretrained(cls, directory: Path) -> "SpeechToFacePipeline":
        from diffusers import DDPMScheduler, UNet2DConditionModel

        directory = Path(directory)
        missing = [
            name
            for name in (CONFIG, CONDITION, "unet", "scheduler", "pretrain", "prior")
            if not (directory / name).exists()
        ]
        if missing:
            raise SclmdError(
                f"{directory}: not a trained sclmd pipeline (missing {', '.join(missing)}). "
                "Train one with `sclmd stage train_ldm` or pass --checkpoint DIR."
            )
        try:
            meta = json.loads((directory / CONFIG).read_text())
            config = LDMConfig(**meta["ldm"])
            unet = UNet2DConditionModel.from_pretrained(directory / "unet", use_safetensors=True)
            condition = SpeechCondition(config.embed_dim, config.n_tokens, config.cross_attention_dim)
            condition.load_state_dict(load_file(str(directory / CONDITION)))
            scheduler_config = DDPMScheduler.from_pretrained(directory / "scheduler").config
        except SclmdError:
            raise
        except Exception as e:
            raise SclmdError(
                f"{directory}: unreadable pipeline ({type(e).__name__}: {e}). Re-run `sclmd stage train_ldm`."
            ) from None
        encoders = SpeechFaceModel.from_pretrained(directory / "pretrain")
        prior = FacePrior.load(directory / "prior")
        return cls(
            config,
            unet,
            condition,
            encoders,
            prior,
            scheduler_config,
            SamplingDefaults(**meta["sampling"]),
            meta["data"],
        )
