"""Face encoder (VGG-Face layout) and the symmetric face decoder.

The encoder has VGG-Face's 13 3x3 convolutions in 5 blocks, named as in the commonly
used converted VGG-Face state dict (`conv1_1` ... `conv5_3`), so those weights load
by name when `width == 1`.  Blocks 1-3 (each ending in 2x2 max pooling) give the
spatial latent `z` (`latent_channels` x H/8 x W/8, by a 1x1 conv) that the diffusion
model works in; blocks 4-5 continue on the same features to a pooled, projected
embedding for the contrastive loss.  The decoder mirrors blocks 1-3: z -> image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sclmd.errors import SclmdError

VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convs, channels) per block
LATENT_BLOCKS = 3  # pooled blocks before z: H/8 x W/8


@dataclass(frozen=True)
class FaceConfig:
    width: float = 0.25  # channels = VGG-Face channels x width
    latent_channels: int = 4
    embed_dim: int = 128
    image_size: int = 64
    batch_norm: bool = True  # VGG-BN: trains from scratch; VGG-Face's own weights come without it

    def channels(self, block: int) -> int:
        return max(8, int(round(VGG_BLOCKS[block][1] * self.width)))

    @property
    def latent_size(self) -> int:
        return self.image_size // 2**LATENT_BLOCKS

    def to_dict(self) -> dict:
        return asdict(self)


def face_config(size: str, embed_dim: int, latent_channels: int, image_size: int) -> FaceConfig:
    widths = {"paper": 1.0, "small": 0.25}
    if size not in widths:
        raise ValueError(f"unknown model size '{size}' (small | paper)")
    return FaceConfig(widths[size], latent_channels, embed_dim, image_size)


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
        self.to_latent = nn.Conv2d(cfg.channels(LATENT_BLOCKS - 1), cfg.latent_channels, 1)
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

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] in [-1, 1] -> (z [B, C, H/8, W/8], embedding [B, embed_dim])."""
        x = image
        for b in range(LATENT_BLOCKS):
            x = self.pool(self._block(x, b))
        z = self.to_latent(x)
        for b in range(LATENT_BLOCKS, len(VGG_BLOCKS)):
            x = self._block(x, b)
        return z, self.project(x.mean(dim=(2, 3)))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Only z (skips the embedding branch)."""
        x = image
        for b in range(LATENT_BLOCKS):
            x = self.pool(self._block(x, b))
        return self.to_latent(x)

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
        wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in wanted.items() if tuple(state[k].shape) != tuple(v.shape)]
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
    """z -> image, mirroring encoder blocks 3, 2, 1 with nearest upsampling."""

    def __init__(self, cfg: FaceConfig):
        super().__init__()
        self.config = cfg
        def conv(cin: int, cout: int) -> list[nn.Module]:
            norm = nn.BatchNorm2d(cout) if cfg.batch_norm else nn.Identity()
            return [nn.Conv2d(cin, cout, 3, padding=1), norm, nn.ReLU(inplace=True)]

        layers: list[nn.Module] = conv(cfg.latent_channels, cfg.channels(LATENT_BLOCKS - 1))
        for b in reversed(range(LATENT_BLOCKS)):
            ch = cfg.channels(b)
            out = cfg.channels(b - 1) if b > 0 else cfg.channels(0)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *conv(ch, ch), *conv(ch, out)]
        to_rgb = nn.Conv2d(cfg.channels(0), 3, 3, padding=1)
        layers += [to_rgb, nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_relu_convs(self)
        # The RGB layer starts small: He-sized outputs would saturate the tanh, whose
        # gradient then vanishes and the decoder learns only the mean face.
        nn.init.normal_(to_rgb.weight, std=1e-3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
