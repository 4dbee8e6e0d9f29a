"""Metrics on generated faces: the Fréchet distance against hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sclmd.evaluate.metrics import frechet_distance


def test_identical_sets_are_at_zero_and_shifted_sets_at_the_squared_shift() -> None:
    real = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0, 0, 0, 0, 0, 0, 4.0])  # same covariance: only |mu_a - mu_b|^2 = 25 is left
    assert frechet_distance(real + shift, real) == pytest.approx(25.0, rel=1e-6)


def test_collapsed_samples_are_far_from_diverse_real_ones() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(1000, 4))  # unit Gaussian
    collapsed = 0.1 * rng.normal(size=(1000, 4))  # right mean, a tenth of the spread
    # Closed form for isotropic Gaussians: d * (1 - s)^2 = 4 * 0.81; sampling noise on top.
    assert frechet_distance(collapsed, real) == pytest.approx(4 * 0.9**2, rel=0.1)
    assert frechet_distance(collapsed, real) > frechet_distance(rng.normal(size=(1000, 4)), real)


def test_torch_input_and_argument_order() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 5)), 2.0 * rng.normal(size=(300, 5)) + 1.0
    assert frechet_distance(torch.from_numpy(a), b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


@pytest.mark.parametrize(
    ("generated", "real", "message"),
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), "3 dims but real has 4"),
        (np.zeros((1, 3)), np.zeros((10, 3)), "at least two rows"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "NaN"),
        (np.zeros(10), np.zeros((10, 1)), "2-D"),
    ],
)
def test_bad_features_are_rejected(generated, real, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frechet_distance(generated, real)
