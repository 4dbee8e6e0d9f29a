"""The perceptual term: DSSIM's properties, and LPIPS's backbone found offline or clearly missing."""

from __future__ import annotations

import logging
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF

from sclmd.errors import SclmdError
from sclmd.models.perceptual import PerceptualLoss, backbone_file, make_perceptual

BATCH = 4
SIZE = 64


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(BATCH, 3, SIZE, SIZE, generator=generator) * 2 - 1


@pytest.fixture
def dssim() -> PerceptualLoss:
    return make_perceptual("dssim")


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def noisy(images: torch.Tensor, level: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return images + level * torch.randn(images.shape, generator=generator)


# --- DSSIM ----------------------------------------------------------------------------


def test_dssim_is_zero_for_identical_images(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    assert torch.allclose(dssim(images, images.clone()), torch.zeros(BATCH), atol=1e-6)


def test_dssim_grows_with_noise(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    distances = torch.stack([dssim(images, noisy(images, level)) for level in (0.05, 0.1, 0.2, 0.4, 0.8)])
    assert (distances.diff(dim=0) > 0).all()


def test_dssim_grows_with_blur(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    blurred = [TF.gaussian_blur(images, kernel_size=9, sigma=sigma) for sigma in (0.3, 0.6, 1.0, 2.0)]
    distances = torch.stack([dssim(images, image) for image in blurred])
    assert (distances.diff(dim=0) > 0).all()


def test_dssim_is_symmetric_and_bounded(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    other = noisy(images, 0.3).clamp(-1, 1)
    forward, backward = dssim(images, other), dssim(other, images)
    assert torch.allclose(forward, backward)
    assert ((forward > 0) & (forward <= 1)).all()


def test_dssim_is_per_sample(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    changed = images.clone()
    changed[1] = noisy(images[1:2], 0.5)[0]
    distances = dssim(images, changed)
    assert distances.shape == (BATCH,)
    assert distances[1] > 0
    assert torch.allclose(distances[[0, 2, 3]], torch.zeros(3), atol=1e-6)


def test_dssim_passes_gradients_to_the_images(dssim: PerceptualLoss, images: torch.Tensor) -> None:
    reconstruction = noisy(images, 0.2).requires_grad_(True)
    dssim(reconstruction, images).mean().backward()
    assert reconstruction.grad is not None
    assert torch.isfinite(reconstruction.grad).all() and reconstruction.grad.abs().sum() > 0


def test_dssim_is_computed_in_float32_under_bf16_autocast(dssim: PerceptualLoss) -> None:
    """In bf16, E[x^2] - E[x]^2 cancels: flat regions (a face's background) gave a zero SSIM
    denominator and pretrain's loss went to -inf on CPUs with native bf16."""
    generator = torch.Generator().manual_seed(2)
    flat = torch.full((2, 3, 32, 32), 0.3) + 0.01 * torch.randn(2, 3, 32, 32, generator=generator)
    other = flat + 0.02 * torch.randn(flat.shape, generator=generator)
    reference = dssim(flat, other)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = dssim(flat.bfloat16(), other.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    assert torch.allclose(value, reference, atol=0.02)


def test_dssim_records_itself(dssim: PerceptualLoss) -> None:
    assert dssim.name == "dssim" and not dssim.is_substitute
    assert dssim.describe() == {
        "perceptual": "dssim",
        "perceptual_substitute": False,
        "perceptual_requested": "dssim",
        "perceptual_backbone_file": None,
        "perceptual_backbone_verified": None,
    }


# --- LPIPS backbone: where it must be, and what happens without it ---------------------


def test_backbone_files_are_torchvisions_names_in_the_hub_cache(empty_torch_home: Path) -> None:
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    assert backbone_file("alex") == checkpoints / "alexnet-owt-7be5be79.pth"
    assert backbone_file("vgg") == checkpoints / "vgg16-397923af.pth"


def test_missing_backbone_fails_naming_the_file(empty_torch_home: Path) -> None:
    with pytest.raises(SclmdError) as caught:
        make_perceptual("lpips", "vgg", on_missing="fail")
    message = str(caught.value)
    assert str(backbone_file("vgg")) in message
    assert "vgg16-397923af.pth" in message and "VGG16" in message and "TORCH_HOME" in message


def test_missing_backbone_is_substituted_with_a_warning(
    empty_torch_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sclmd.models.perceptual"):
        loss = make_perceptual("lpips", "alex", on_missing="substitute")
    assert loss.name == "dssim" and loss.is_substitute
    assert loss.describe()["perceptual_requested"] == "lpips-alex"
    assert loss.describe()["perceptual_substitute"] is True
    [warning] = caplog.records
    assert "dssim" in warning.getMessage() and str(backbone_file("alex")) in warning.getMessage()


def test_unknown_choices_are_user_errors() -> None:
    for arguments in ({"kind": "ssim"}, {"net": "squeeze"}, {"on_missing": "download"}):
        with pytest.raises(SclmdError):
            make_perceptual(**arguments)


def test_present_backbone_builds_lpips_without_the_network(
    empty_torch_home: Path,
    images: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # This checks the offline loading path only, not perceptual quality: the file holds a
    # randomly initialised AlexNet, not torchvision's real ImageNet weights.
    torch.manual_seed(0)
    random_alexnet = torchvision.models.alexnet().state_dict()
    file = backbone_file("alex")
    file.parent.mkdir(parents=True)
    torch.save(random_alexnet, file)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the perceptual loss tried to use the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)

    with caplog.at_level(logging.WARNING, logger="sclmd.models.perceptual"):
        loss = make_perceptual("lpips", "alex", on_missing="fail")

    assert loss.name == "lpips-alex" and not loss.is_substitute
    assert loss.describe() == {
        "perceptual": "lpips-alex",
        "perceptual_substitute": False,
        "perceptual_requested": "lpips-alex",
        "perceptual_backbone_file": str(file),
        "perceptual_backbone_verified": False,  # random weights are not torchvision's file
    }
    assert any("not torchvision's original" in record.getMessage() for record in caplog.records)
    # The backbone came from the file, not from lpips's own random initialisation.
    first_conv = next(loss.distance.net.parameters())
    assert torch.equal(first_conv, random_alexnet["features.0.weight"])
    assert not any(parameter.requires_grad for parameter in loss.parameters())

    loss.train()  # as a parent model would: LPIPS's dropout must stay off
    other = noisy(images, 0.3)
    distances = loss(images, other)
    assert distances.shape == (BATCH,) and torch.isfinite(distances).all()
    assert torch.equal(distances, loss(images, other))
    assert torch.allclose(loss(images, images.clone()), torch.zeros(BATCH), atol=1e-6)


def test_unreadable_backbone_is_an_error_even_when_substitution_is_allowed(empty_torch_home: Path) -> None:
    # Someone put a file there meant to be used: quietly falling back to dssim would hide it.
    file = backbone_file("alex")
    file.parent.mkdir(parents=True)
    file.write_bytes(b"not a checkpoint")
    with pytest.raises(SclmdError, match="cannot read"):
        make_perceptual("lpips", "alex", on_missing="substitute")
