"""The classifier two-sample test (realism): near 0.5 on one distribution, near 1.0 on colour blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sclmd.data.voxsynth import render_face, sample_speakers
from sclmd.evaluate.two_sample import classifier_two_sample_test, group_folds, real_vs_real, wilson_interval


def render(n_speakers: int, per_speaker: int, stream: int) -> tuple[torch.Tensor, np.ndarray]:
    """VoxSynth faces [N, 3, 64, 64] in [-1, 1] and their speaker ids; `stream` picks other pictures
    (pose, lighting, background) of the same speakers."""
    images, groups = [], []
    for i, attrs in enumerate(sample_speakers(n_speakers, seed=0)):
        for k in range(per_speaker):
            images.append(np.asarray(render_face(attrs, np.random.default_rng([i, stream, k]), 64, supersample=2)))
            groups.append(attrs.speaker_id)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1, np.array(groups)


def colour_blobs(faces: torch.Tensor, sigma: float = 4.0, saturation: float = 3.0) -> torch.Tensor:
    """Heavily blurred, colour-saturated versions of the faces: what a failed decoder draws."""
    radius = int(3 * sigma)
    kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = faces.shape[1]
    out = F.conv2d(
        F.pad(faces, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c
    )
    out = F.conv2d(
        F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )
    grey = out.mean(dim=1, keepdim=True)
    return ((out - grey) * saturation + grey).clamp(-1, 1)


@pytest.fixture(scope="module")
def faces():
    real, speakers = render(80, 2, stream=0)  # 160 faces of 80 speakers, as the embedded default's test split
    other, _ = render(80, 2, stream=1)  # the same speakers drawn again: the same distribution
    return real, other, speakers


def test_faces_of_one_distribution_are_not_told_apart(faces) -> None:
    real, other, speakers = faces
    result = classifier_two_sample_test(real, other, speakers, speakers)
    assert 0.3 <= result.acc <= 0.7, result
    assert result.n == 320 and result.ci[0] < result.acc < result.ci[1] and result.ci[1] - result.ci[0] < 0.15
    halves = real_vs_real(real, speakers)  # the evaluate stage's sanity row
    assert 0.3 <= halves.acc <= 0.7, halves


def test_colour_blobs_are_told_apart(faces) -> None:
    real, _, speakers = faces
    result = classifier_two_sample_test(real, colour_blobs(real), speakers, speakers)
    assert result.acc >= 0.9, result


def test_deterministic_for_a_seed_and_leaves_the_global_rng_alone(faces) -> None:
    real, other, speakers = faces
    subset = slice(0, 48)

    def run(seed):
        blobs = colour_blobs(other[subset], 1.0, 1.5)
        return classifier_two_sample_test(real[subset], blobs, speakers[subset], speakers[subset], epochs=5, seed=seed)

    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first = run(0)
    assert torch.rand(1) == expected  # the test's own RNG use did not move the caller's
    threads = torch.get_num_threads()
    assert (
        classifier_two_sample_test(
            real[subset], other[subset], speakers[subset], speakers[subset], epochs=1, threads=1
        ).n
        == 96
        and torch.get_num_threads() == threads
    )  # restored
    assert run(0) == first
    assert run(0).acc == first.acc and run(1).n == first.n


def test_folds_keep_groups_whole_and_small_inputs_return_nan() -> None:
    groups = np.repeat([f"s{i}" for i in range(7)], [1, 2, 3, 1, 2, 3, 4])
    fold = group_folds(groups, 2, np.random.default_rng(0))
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    assert abs((fold == 0).sum() - (fold == 1).sum()) <= 2
    faces = torch.zeros(4, 3, 8, 8)
    single = classifier_two_sample_test(faces, faces, ["a"] * 4, ["a"] * 4)
    assert np.isnan(single.acc) and "cannot fill 2 folds" in single.note
    with pytest.raises(ValueError, match="one group per face"):
        classifier_two_sample_test(faces, faces, ["a"] * 3, ["a"] * 4)


def test_wilson_interval_by_hand() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    low, high = wilson_interval(100, 100)
    assert high == 1.0 and low == pytest.approx(0.9630, abs=1e-3)
    assert all(np.isnan(wilson_interval(0, 0)))
