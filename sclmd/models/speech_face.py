"""The jointly pre-trained speech encoder + face autoencoder, saved diffusers-style.

`save_pretrained(dir)` writes `config.json` and `model.safetensors`;
`SpeechFaceModel.from_pretrained(dir)` reads them back (safetensors only: no pickle).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir
from sclmd.models.face_autoencoder import FaceConfig, FaceDecoder, FaceEncoder, face_config
from sclmd.models.speech_encoder import SpeechEncoder, SpeechEncoderConfig, speech_encoder_config

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


class SpeechFaceModel(nn.Module):
    def __init__(self, speech: SpeechEncoderConfig, face: FaceConfig):
        super().__init__()
        self.speech_encoder = SpeechEncoder(speech)
        self.face_encoder = FaceEncoder(face)
        self.face_decoder = FaceDecoder(face)
        # CLIP's learned temperature, stored as log(1/T), initialised at T = 0.07
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @classmethod
    def from_params(
        cls,
        size: str,
        embed_dim: int,
        latent_channels: int,
        image_size: int,
        magnitude_channel: bool = False,
        pitch_features: bool = False,
        **face_options,
    ) -> "SpeechFaceModel":
        """`face_options`: latent_downsample, decoder_width, latent_norm (see `face_config`)."""
        return cls(
            speech_encoder_config(size, embed_dim, magnitude_channel, pitch_features),
            face_config(size, embed_dim, latent_channels, image_size, **face_options),
        )

    def config_dict(self) -> dict:
        return {"speech": self.speech_encoder.config.to_dict(), "face": self.face_encoder.config.to_dict()}

    def contrastive_logits(self, speech_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.clamp(max=math.log(100)).exp()  # CLIP caps the scale at 100
        return scale * F.normalize(speech_emb, dim=-1) @ F.normalize(face_emb, dim=-1).T

    def forward(
        self,
        wave: torch.Tensor | None,
        image: torch.Tensor,
        shared_grad: float = 1.0,
        latent_noise: float = 0.0,
        reconstruct: bool = True,
    ) -> dict[str, torch.Tensor]:
        """One pre-training pass; through forward() so that DDP syncs every parameter's gradient.

        `wave=None` is the autoencoder phase: only z and the reconstruction.  `shared_grad`: see
        `FaceEncoder.forward`.  `latent_noise`: in training, the decoder draws z plus Gaussian
        noise of this standard deviation (relative to z's own spread).  `reconstruct=False` skips
        the decoder (a frozen first stage has nothing to learn from the reconstruction).
        """

        def decode(z: torch.Tensor) -> torch.Tensor:
            if self.training and latent_noise > 0:
                z = z + latent_noise * z.detach().std() * torch.randn_like(z)
            return self.face_decoder(z)

        if wave is None:
            z = self.face_encoder.encode(image)
            return {"z": z, "recon": decode(z)}
        speech_emb = self.speech_encoder(wave)
        z, face_emb = self.face_encoder(image, shared_grad)
        out = {
            "speech_emb": speech_emb,
            "face_emb": face_emb,
            "z": z,
            "logits": self.contrastive_logits(speech_emb, face_emb),
        }
        if reconstruct:
            out["recon"] = decode(z)
        return out

    def first_stage_modules(self) -> list[nn.Module]:
        """What the first stage trained: the face encoder's latent blocks (to z) and the decoder."""
        enc = self.face_encoder
        blocks = [
            getattr(enc, prefix + name[4:])
            for name in enc.conv_names
            if int(name[4:].split("_")[0]) <= enc.config.latent_blocks
            for prefix in ("conv", "norm")
        ]
        return [*blocks, enc.to_latent, enc.latent_norm, self.face_decoder]

    def save_pretrained(self, directory: Path, extra: dict | None = None) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(Path(directory)) as tmp:
            save_file(state, str(tmp / WEIGHTS))
            (tmp / CONFIG).write_text(json.dumps({**self.config_dict(), **(extra or {})}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: Path, map_location: str = "cpu") -> "SpeechFaceModel":
        directory = Path(directory)
        try:
            cfg = json.loads((directory / CONFIG).read_text())
            state = load_file(str(directory / WEIGHTS), device=map_location)
        except FileNotFoundError as e:
            raise SclmdError(
                f"{directory}: no pre-trained model ({e.filename} missing). Run `sclmd stage pretrain`."
            ) from None
        except Exception as e:
            raise SclmdError(
                f"{directory}: unreadable pre-trained model ({e}). Re-run `sclmd stage pretrain`."
            ) from None
        model = cls(SpeechEncoderConfig.from_dict(cfg["speech"]), FaceConfig(**cfg["face"]))
        model.load_state_dict(state)
        return model
