"""The perceptual term of the face autoencoder's reconstruction loss: LPIPS, or an honest offline substitute.

LPIPS (Zhang et al. 2018) needs two things: its small linear layers, shipped inside the `lpips`
package, and an ImageNet backbone (torchvision's AlexNet or VGG16 weights), which torchvision
normally downloads into the torch hub cache. Nothing is downloaded here, ever: the backbone is
read from that cache when it is there. When it is not, the caller chooses between a clear error
and DSSIM, a weight-free structural dissimilarity, and every run records which one was used
(`PerceptualLoss.describe`), so a DSSIM run is never mistaken for an LPIPS one.

Images are [B, 3, H, W] in [-1, 1]; every distance is per sample, shape [B].
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import AlexNet_Weights, VGG16_Weights

from sclmd.errors import SclmdError

log = logging.getLogger(__name__)

KINDS = ("lpips", "dssim")
ON_MISSING = ("fail", "substitute")

# The exact weights torchvision would download for each LPIPS backbone; their URLs give the
# file names the torch hub cache uses, so the expected files follow the installed torchvision.
_BACKBONE_WEIGHTS = {"alex": AlexNet_Weights.IMAGENET1K_V1, "vgg": VGG16_Weights.IMAGENET1K_V1}
_BACKBONE_ARCHITECTURE = {"alex": "AlexNet", "vgg": "VGG16"}


def backbone_file(net: str) -> Path:
    """Where LPIPS's ImageNet backbone for `net` ("alex" or "vgg") must be: the torch hub cache.

    That is `<torch.hub.get_dir()>/checkpoints/<torchvision's file name>`, so TORCH_HOME moves it.
    """
    weights = _backbone_weights(net)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


class DSSIM(nn.Module):
    """Structural dissimilarity (1 - SSIM) / 2 per sample, in [0, 1]; 0 for identical images.

    SSIM (Wang et al. 2004) over an 11 px Gaussian window (sigma 1.5), per channel, on images
    mapped from [-1, 1] to [0, 1]; the SSIM map (valid positions only) is averaged over channels
    and positions.
    """

    window_size = 11
    sigma = 1.5
    # Wang et al.'s stabilising constants for a data range of 1.
    c1 = 0.01**2
    c2 = 0.03**2

    def __init__(self) -> None:
        super().__init__()
        offsets = torch.arange(self.window_size, dtype=torch.float32) - (self.window_size - 1) / 2
        gaussian = torch.exp(-(offsets**2) / (2 * self.sigma**2))
        # 1-D taps: the 2-D Gaussian is separable, so two 1-D passes do the same work cheaper.
        # Not persistent: it is a constant, not state a checkpoint should carry.
        self.register_buffer("taps", gaussian / gaussian.sum(), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height < self.window_size or width < self.window_size:
            raise SclmdError(
                f"dssim needs images of at least {self.window_size}x{self.window_size} px "
                f"(its Gaussian window), got {height}x{width}: raise data.image_size"
            )
        # Not clamped to [0, 1]: clamping would cut the gradient that pulls out-of-range
        # reconstructions back into range.
        # float32 even under bf16/fp16 autocast: variance = E[x^2] - E[x]^2 cancels catastrophically
        # in bf16 (8 bits of mantissa) and the SSIM denominator reaches 0 (pretrain's loss became -inf).
        with torch.autocast(x.device.type, enabled=False):
            return self._dssim(x.float(), y.float())

    def _dssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2
        y = (y + 1) / 2
        channels = x.shape[1]
        # All five local statistics in one grouped convolution.
        moments = self._gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
        mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments.split(channels, dim=1)
        variance_x = mean_xx - mean_x**2
        variance_y = mean_yy - mean_y**2
        covariance = mean_xy - mean_x * mean_y
        ssim_map = ((2 * mean_x * mean_y + self.c1) * (2 * covariance + self.c2)) / (
            (mean_x**2 + mean_y**2 + self.c1) * (variance_x + variance_y + self.c2)
        )
        return (1 - ssim_map.mean(dim=(1, 2, 3))) / 2

    def _gaussian_blur(self, images: torch.Tensor) -> torch.Tensor:
        channels = images.shape[1]
        taps = self.taps.to(images.dtype)
        rows = taps.view(1, 1, 1, -1).expand(channels, 1, 1, self.window_size)
        columns = taps.view(1, 1, -1, 1).expand(channels, 1, self.window_size, 1)
        blurred = F.conv2d(images, rows, groups=channels)
        return F.conv2d(blurred, columns, groups=channels)


class PerceptualLoss(nn.Module):
    """A per-sample perceptual distance [B] between two image batches in [-1, 1].

    `name` is what is computed ("lpips-alex", "lpips-vgg" or "dssim"), `requested` what was asked
    for; they differ only when DSSIM stands in for a missing LPIPS backbone (`is_substitute`).
    Frozen: it has no trainable parameters, and gradients flow to the images only.
    """

    def __init__(
        self,
        distance: nn.Module,
        name: str,
        requested: str,
        backbone_file: Path | None = None,
        backbone_verified: bool | None = None,
    ) -> None:
        super().__init__()
        self.distance = distance.eval().requires_grad_(False)
        self.name = name
        self.requested = requested
        self.backbone_file = backbone_file
        self.backbone_verified = backbone_verified

    @property
    def is_substitute(self) -> bool:
        return self.name != self.requested

    def train(self, mode: bool = True) -> PerceptualLoss:
        # A parent model's .train() reaches this module too; LPIPS's linear layers carry
        # dropout, which would make the loss random, so the distance always stays in eval mode.
        super().train(mode)
        self.distance.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4:
            raise ValueError(
                f"expected two image batches [B, C, H, W] of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        # LPIPS answers [B, 1, 1, 1], DSSIM [B].
        return self.distance(x, y).reshape(x.shape[0])

    def describe(self) -> dict[str, str | bool | None]:
        """What a run records about its perceptual term (MLflow params)."""
        return {
            "perceptual": self.name,
            "perceptual_substitute": self.is_substitute,
            "perceptual_requested": self.requested,
            "perceptual_backbone_file": str(self.backbone_file) if self.backbone_file else None,
            # False: a file is there but it is not torchvision's original (see _is_original).
            "perceptual_backbone_verified": self.backbone_verified,
        }


def make_perceptual(kind: str = "lpips", net: str = "alex", on_missing: str = "substitute") -> PerceptualLoss:
    """The perceptual term: LPIPS with the `net` backbone, or DSSIM.

    kind "lpips" reads the backbone from `backbone_file(net)` and never downloads. When that file
    is missing, on_missing "fail" raises SclmdError saying which file to put where, and
    "substitute" uses DSSIM instead, logs a warning, and flags the result as a substitute.
    kind "dssim" is DSSIM by choice (`net` and `on_missing` do not apply).
    """
    if kind == "dssim":
        return PerceptualLoss(DSSIM(), name="dssim", requested="dssim")
    if kind != "lpips":
        raise SclmdError(f"unknown perceptual kind {kind!r}; choose one of {', '.join(KINDS)}")
    if on_missing not in ON_MISSING:
        raise SclmdError(f"unknown on_missing {on_missing!r}; choose one of {', '.join(ON_MISSING)}")
    requested = f"lpips-{net}"
    file = backbone_file(net)
    if file.is_file():
        verified = _is_original(file)
        if not verified:
            log.warning(
                "%s is not torchvision's original ImageNet %s weights (its sha256 does not start "
                "with the prefix in its name): %s values will not match published LPIPS ones",
                file,
                _BACKBONE_ARCHITECTURE[net],
                requested,
            )
        return PerceptualLoss(
            _lpips_from_file(net, file),
            name=requested,
            requested=requested,
            backbone_file=file,
            backbone_verified=verified,
        )
    if on_missing == "fail":
        raise SclmdError(_missing_backbone_message(net, file))
    log.warning(
        "%s was asked for, but its backbone %s is missing and nothing is downloaded at run time: "
        "using dssim (structural dissimilarity, no learned weights) instead; runs record "
        "perceptual_substitute=True. %s",
        requested,
        file,
        _where_to_put(net, file),
    )
    return PerceptualLoss(DSSIM(), name="dssim", requested=requested)


def _backbone_weights(net: str) -> AlexNet_Weights | VGG16_Weights:
    if net not in _BACKBONE_WEIGHTS:
        raise SclmdError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(_BACKBONE_WEIGHTS)}")
    return _BACKBONE_WEIGHTS[net]


def _where_to_put(net: str, file: Path) -> str:
    weights = _backbone_weights(net)
    return (
        f"It is torchvision's ImageNet {_BACKBONE_ARCHITECTURE[net]} weights "
        f"({type(weights).__name__}.{weights.name}, original file name {file.name}, published at "
        f"{weights.url}). Copy that file into the torch hub checkpoints folder {file.parent}, "
        f"or set TORCH_HOME to a folder whose hub/checkpoints/ holds it."
    )


def _missing_backbone_message(net: str, file: Path) -> str:
    return (
        f"LPIPS ({net}) needs its backbone at {file}, and it is not there; nothing is downloaded "
        f"at run time. {_where_to_put(net, file)} Or use the weight-free dssim substitute."
    )


def _is_original(file: Path) -> bool:
    """Whether `file` is the file torchvision publishes: its sha256 starts with the hex in its name."""
    # torchvision names weight files <model>-<sha256 prefix>.pth (torch.hub checks this only on download).
    published_prefix = re.search(r"-([0-9a-f]+)\.pth$", file.name)
    with file.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return published_prefix is not None and digest.startswith(published_prefix.group(1))


def _lpips_from_file(net: str, file: Path) -> nn.Module:
    """lpips.LPIPS with its backbone read from `file`, built so that no download is possible."""
    import lpips  # heavy, and only needed on this path

    # pnet_rand=True builds the backbone with random weights instead of asking torchvision to
    # fetch them, so no code path can reach the network; the real weights are loaded below.
    # lpips 0.1.4 still passes torchvision's deprecated `pretrained` argument: silence that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SclmdError(f"cannot read {file} as a torch state dict ({error}). {_where_to_put(net, file)}") from error
    # lpips regroups torchvision's `features` layers into slices (slice1.0, slice2.3, ...) that keep
    # each layer's index, so `sliceK.<i>.<param>` is `features.<i>.<param>` in torchvision's file.
    source_keys = {key: "features." + key.split(".", 1)[1] for key in model.net.state_dict()}
    absent = sorted(set(source_keys.values()) - set(state))
    if absent:
        raise SclmdError(
            f"{file} lacks the {_BACKBONE_ARCHITECTURE[net]} layers {', '.join(absent)}: it is not "
            f"torchvision's {_BACKBONE_ARCHITECTURE[net]} state dict. {_where_to_put(net, file)}"
        )
    try:
        model.net.load_state_dict({key: state[source] for key, source in source_keys.items()})
    except RuntimeError as error:
        raise SclmdError(
            f"{file} does not fit torchvision's {_BACKBONE_ARCHITECTURE[net]}: {error}. {_where_to_put(net, file)}"
        ) from error
    return model
