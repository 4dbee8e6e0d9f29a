"""Face encoder (VGG-Face layout) and the symmetric face decoder.

The encoder has VGG-Face's 13 3x3 convolutions in 5 blocks, named as in the commonly
used converted VGG-Face state dict (`conv1_1` ... `conv5_3`), so those weights load
by name when `width == 1`.  Blocks 1-3 end in 2x2 max pooling.  The first
`latent_blocks` of them give the spatial latent `z` (`latent_channels` x H/2^k x W/2^k,
by a 1x1 conv) that the diffusion model works in: k = 2 keeps a 16x16 latent at 64 px
(Stable Diffusion's f = 4 trade-off, where eyes and mouth survive), k = 3 the coarser
8x8 one.  The remaining blocks continue on the same features to a pooled, projected
embedding for the contrastive loss.

The decoder mirrors the latent blocks (z -> image), `decoder_width` times as wide as
the encoder.  (Stable Diffusion's GroupNorm residual decoder blocks were measured here:
2-4x slower per step on 2 CPU cores, and no sharper within the same minutes.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sclmd.errors import SclmdError
from sclmd.models.inference import run_in_chunks

VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convs, channels) per block
POOLED_BLOCKS = 3  # VGG blocks 1-3 end in 2x2 max pooling (blocks 4-5 run at H/8 here)


@dataclass(frozen=True)
class FaceConfig:
    width: float = 0.25  # channels = VGG-Face channels x width
    latent_channels: int = 4
    embed_dim: int = 128
    image_size: int = 64
    batch_norm: bool = True  # VGG-BN: trains from scratch; VGG-Face's own weights come without it
    latent_blocks: int = 3  # pooled blocks before z: latent side = image_size / 2**latent_blocks
    decoder_width: float = 1.0  # decoder channels = encoder channels x this
    # Standardise each latent channel (batch norm without affine): the diffusion model then
    # sees every channel at the same scale, so a chroma channel with a small spread is not
    # drowned by the noise first and drawn in saturated false colours.
    latent_norm: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.latent_blocks <= POOLED_BLOCKS:
            raise ValueError(f"latent_blocks must be 1..{POOLED_BLOCKS}, got {self.latent_blocks}")

    def channels(self, block: int) -> int:
        return max(8, int(round(VGG_BLOCKS[block][1] * self.width)))

    def decoder_channels(self, block: int) -> int:
        return max(8, int(round(self.channels(block) * self.decoder_width / 8)) * 8)

    @property
    def latent_size(self) -> int:
        return self.image_size // 2**self.latent_blocks

    def to_dict(self) -> dict:
        return asdict(self)


def face_config(
    size: str,
    embed_dim: int,
    latent_channels: int,
    image_size: int,
    latent_downsample: int = 8,
    decoder_width: float = 1.0,
    latent_norm: bool = False,
) -> FaceConfig:
    widths = {"paper": 1.0, "small": 0.25}
    if size not in widths:
        raise ValueError(f"unknown model size '{size}' (small | paper)")
    blocks = {2: 1, 4: 2, 8: 3}
    if latent_downsample not in blocks:
        raise ValueError(f"latent_downsample must be 2, 4 or 8, got {latent_downsample}")
    return FaceConfig(
        widths[size],
        latent_channels,
        embed_dim,
        image_size,
        latent_blocks=blocks[latent_downsample],
        decoder_width=decoder_width,
        latent_norm=latent_norm,
    )


def init_relu_convs(module: nn.Module) -> None:
    """He init, as torchvision's VGG: without normalisation layers, PyTorch's default conv
    init shrinks activations layer by layer until 13 layers deep every face maps to
    (nearly) the same embedding and the contrastive loss cannot start learning."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)


class FaceEncoder(nn.Module):
    def __init__(self, cfg: FaceConfig):
        super().__init__()
        self.config = cfg
        self.conv_names: list[str] = []
        in_ch = 3
        for b, (n_convs, _) in enumerate(VGG_BLOCKS):
            out_ch = cfg.channels(b)
            for i in range(n_convs):
                name = f"conv{b + 1}_{i + 1}"
                self.add_module(name, nn.Conv2d(in_ch, out_ch, 3, padding=1))
                self.add_module(f"norm{b + 1}_{i + 1}", nn.BatchNorm2d(out_ch) if cfg.batch_norm else nn.Identity())
                self.conv_names.append(name)
                in_ch = out_ch
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU(inplace=True)
        self.to_latent = nn.Conv2d(cfg.channels(cfg.latent_blocks - 1), cfg.latent_channels, 1)
        self.latent_norm = nn.BatchNorm2d(cfg.latent_channels, affine=False) if cfg.latent_norm else nn.Identity()
        # Pooled ReLU features share a large common component; batch norm removes it so that
        # faces start out distinguishable to the contrastive loss (as in SimCLR-style heads).
        pooled = cfg.channels(len(VGG_BLOCKS) - 1)
        self.project = nn.Sequential(nn.BatchNorm1d(pooled), nn.Linear(pooled, cfg.embed_dim))
        init_relu_convs(self)

    def _block(self, x: torch.Tensor, block: int) -> torch.Tensor:
        for name in self.conv_names:
            if name.startswith(f"conv{block + 1}_"):
                x = self.act(getattr(self, "norm" + name[4:])(getattr(self, name)(x)))
        return x

    def forward(self, image: torch.Tensor, shared_grad: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] in [-1, 1] -> (z [B, C, h, w], embedding [B, embed_dim]).

        `shared_grad` scales the gradient that the embedding sends back into the latent blocks
        they share (1: fully shared, 0: the latent blocks learn from reconstruction alone).
        """
        x = self._latent_features(image)
        z = self.latent_norm(self.to_latent(x))
        if shared_grad != 1.0:
            x = x * shared_grad + x.detach() * (1.0 - shared_grad)  # same value, scaled gradient
        for b in range(self.config.latent_blocks, len(VGG_BLOCKS)):
            x = self._block(x, b)
            if b < POOLED_BLOCKS:
                x = self.pool(x)
        return z, self.project(x.mean(dim=(2, 3)))

    def _latent_features(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for b in range(self.config.latent_blocks):
            x = self.pool(self._block(x, b))
        return x

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Only z (skips the embedding branch)."""
        return self.latent_norm(self.to_latent(self._latent_features(image)))

    def load_vgg_face(self, path: Path) -> list[str]:
        """Start the convolutions from a converted VGG-Face state dict; returns loaded names."""
        path = Path(path)
        if not path.exists():
            raise SclmdError(
                f"{path}: VGG-Face weights not found. Put the converted VGG-Face state dict "
                "(keys conv1_1.weight ... conv5_3.bias, e.g. vgg_face_dag.pth) there, or set "
                "pretrain.vgg_face_weights: null to train the face encoder from scratch."
            )
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SclmdError(f"{path}: not a readable state dict ({e}).") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        wanted = {f"{n}.{p}": getattr(getattr(self, n), p) for n in self.conv_names for p in ("weight", "bias")}
        missing = [k for k in wanted if k not in state]
        if missing:
            raise SclmdError(
                f"{path}: does not look like VGG-Face: missing {', '.join(missing[:4])}"
                f"{' ...' if len(missing) > 4 else ''} (found keys like {', '.join(list(state)[:4])})."
            )
        wrong = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in wanted.items()
            if tuple(state[k].shape) != tuple(v.shape)
        ]
        if wrong:
            raise SclmdError(
                f"{path}: shapes do not fit this face encoder (width {self.config.width}; "
                f"VGG-Face weights need pretrain.size: paper): {'; '.join(wrong[:3])}"
            )
        with torch.no_grad():
            for k, v in wanted.items():
                v.copy_(state[k])
        return sorted(wanted)


class FaceDecoder(nn.Module):
    """z -> image, mirroring the encoder's latent blocks with nearest upsampling."""

    def __init__(self, cfg: FaceConfig):
        super().__init__()
        self.config = cfg

        def conv(cin: int, cout: int) -> list[nn.Module]:
            norm = nn.BatchNorm2d(cout) if cfg.batch_norm else nn.Identity()
            return [nn.Conv2d(cin, cout, 3, padding=1), norm, nn.ReLU(inplace=True)]

        layers: list[nn.Module] = conv(cfg.latent_channels, cfg.decoder_channels(cfg.latent_blocks - 1))
        for b in reversed(range(cfg.latent_blocks)):
            ch = cfg.decoder_channels(b)
            out = cfg.decoder_channels(b - 1) if b > 0 else cfg.decoder_channels(0)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *conv(ch, ch), *conv(ch, out)]
        to_rgb = nn.Conv2d(cfg.decoder_channels(0), 3, 3, padding=1)
        layers += [to_rgb, nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_relu_convs(self)
        # The RGB layer starts small: He-sized outputs would saturate the tanh, whose
        # gradient then vanishes and the decoder learns only the mean face.
        nn.init.normal_(to_rgb.weight, std=1e-3)

    @property
    def last_layer(self) -> torch.Tensor:
        """The RGB layer's weight: where the adversarial term's adaptive weight compares gradients."""
        return self.net[-2].weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inference, without gradients: `forward` in cache-sized channels-last chunks (`run_in_chunks`: on the
        CPU about 4x the speed of one batch of 200; the same result up to float rounding)."""
        return run_in_chunks(self.net, z)


class PatchDiscriminator(nn.Module):
    """pix2pix's patch discriminator, as in Stable Diffusion's autoencoder, sized for 64 px faces:
    three strided 4x4 conv blocks (width, 2x, 4x) and a 4x4 conv to one logit per ~22 px patch,
    so it judges local texture (edges of eyes, mouth, glasses) rather than the whole face."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * width, 1, 4, stride=1, padding=1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> patch logits [B, 1, h, w] (real: high)."""
        return self.net(images)
