"""The evaluation plots: valid PNGs, atomic writes, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from sclmd.evaluate.plots import (
    plot_loss_curves,
    plot_metric_comparison,
    plot_reconstructions,
    plot_similarity_matrix,
    plot_sweep,
)

OLD_BYTES = b"the previous plot"


def assert_png(path: Path, min_width: int = 300, min_height: int = 200) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        return image.size


def only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def faces(seed: int, count: int = 10, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(count, 3, size, size)).astype(np.float32)


def test_loss_curves(tmp_path: Path) -> None:
    steps = range(0, 500, 5)
    history = {
        "train/loss": [(s, 2.0 * np.exp(-s / 100) + 0.01) for s in steps],
        "val/loss": [(s, 2.5 * np.exp(-s / 120) + 0.02) for s in steps[::10]],
    }
    path = plot_loss_curves(history, tmp_path / "loss.png", "autoencoder")
    assert path == tmp_path / "loss.png"
    assert_png(path)
    assert only_file(tmp_path) == ["loss.png"]


def test_loss_curves_with_negative_and_diverged_values(tmp_path: Path) -> None:
    history = {"elbo": [(s, -100.0 + s + (np.nan if s == 7 else 0.0)) for s in range(20)], "diverged": [(0, np.inf)]}
    assert_png(plot_loss_curves(history, tmp_path / "loss.png", "mixed signs"))


def test_reconstructions_upscale_small_faces(tmp_path: Path) -> None:
    inputs = torch.from_numpy(faces(0))  # torch input is accepted as well
    path = plot_reconstructions(inputs, inputs * 0.5, tmp_path / "recon.png", n=4)
    width, height = assert_png(path)
    assert height >= 2 * 128 and width >= 4 * 128  # 64 px faces shown at >= 128 px
    assert only_file(tmp_path) == ["recon.png"]


def test_similarity_matrix_small_and_large(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    small = rng.uniform(-1, 1, size=(6, 6))
    assert_png(plot_similarity_matrix(small, [f"spk{i}" for i in range(6)], tmp_path / "small.png", "six"))
    large = rng.uniform(-1, 1, size=(60, 60))
    assert_png(plot_similarity_matrix(large, [str(i) for i in range(60)], tmp_path / "large.png", "sixty"))
    assert only_file(tmp_path) == ["large.png", "small.png"]


def test_metric_comparison_uses_shared_numeric_metrics(tmp_path: Path) -> None:
    rows = {
        "trained": {"recall@1": 0.4, "age_mae": 6.5, "gender_accuracy": 0.9, "only_here": 1.0},
        "control": {"recall@1": 0.05, "age_mae": float("nan"), "gender_accuracy": 0.5, "skipped": "no labels"},
    }
    assert_png(plot_metric_comparison(rows, tmp_path / "bars.png", "trained vs control"))
    with pytest.raises(ValueError, match="share no numeric metric"):
        plot_metric_comparison({"a": {"x": 1.0}, "b": {"y": 2.0}}, tmp_path / "none.png", "nothing shared")
    assert only_file(tmp_path) == ["bars.png"]


def test_sweep_one_panel_per_metric_with_the_chosen_value_marked(tmp_path: Path) -> None:
    scales = [20.0, 1.0, 5.0, 2.0, 10.0]  # unsorted on purpose: lines are drawn in x order
    curves = {"gender accuracy": [0.86, 0.53, 0.64, 0.55, 0.74], "frechet": [45.6, 116.1, 86.4, 110.0, 61.3]}
    path = plot_sweep(
        scales,
        curves,
        tmp_path / "sweep.png",
        "guidance",
        "guidance scale",
        chosen=20.0,
        references={"gender accuracy": 0.84},
    )
    width, _ = assert_png(path)
    assert width >= 2 * 300  # two panels
    assert only_file(tmp_path) == ["sweep.png"]


@pytest.mark.parametrize(
    "bad_call",
    [
        lambda path: plot_reconstructions(faces(0), faces(1, count=3), path),
        lambda path: plot_similarity_matrix(np.zeros((3, 4)), ["a", "b", "c"], path, "not square"),
        lambda path: plot_similarity_matrix(np.zeros((3, 3)), ["a", "b"], path, "too few labels"),
        lambda path: plot_loss_curves({"loss": [(0, 1.0, 2.0)]}, path, "triples"),
        lambda path: plot_loss_curves({}, path, "empty"),
        lambda path: plot_metric_comparison({}, path, "empty"),
        lambda path: plot_sweep([1.0, 2.0], {"acc": [0.5]}, path, "short curve", "x"),
        lambda path: plot_sweep([], {}, path, "empty", "x"),
    ],
    ids=[
        "reconstruction-shapes",
        "not-square",
        "labels",
        "loss-triples",
        "loss-empty",
        "bars-empty",
        "sweep-short",
        "sweep-empty",
    ],
)
def test_bad_input_leaves_the_existing_plot(tmp_path: Path, bad_call) -> None:
    path = tmp_path / "plot.png"
    path.write_bytes(OLD_BYTES)
    with pytest.raises(ValueError):
        bad_call(path)
    assert path.read_bytes() == OLD_BYTES
    assert only_file(tmp_path) == ["plot.png"]


def test_a_crash_while_writing_leaves_the_existing_plot(tmp_path: Path, monkeypatch) -> None:
    def half_written(self, target, **kwargs) -> None:
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    path = tmp_path / "plot.png"
    path.write_bytes(OLD_BYTES)
    with pytest.raises(OSError, match="disk full"):
        plot_similarity_matrix(np.eye(3), ["a", "b", "c"], path, "crash")
    assert path.read_bytes() == OLD_BYTES
    assert only_file(tmp_path) == ["plot.png"]
