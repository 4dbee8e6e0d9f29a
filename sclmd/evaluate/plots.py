"""The figures people look at: loss curves, reconstructions, similarity, metric bars.

Every function checks its inputs before drawing, renders with the Agg canvas (no
pyplot, so no global figure state and no display needed) and writes the PNG through
`sclmd.io.atomic_file`: a temp file beside the target, then `os.replace`.  A failed
call therefore leaves an existing plot untouched and no temp file behind.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sclmd.io import atomic_file

DPI = 100
# Faces are upscaled (nearest) until at least this many pixels high, so a 64 px face
# is readable.
MIN_FACE_PX = 128
MAX_SIMILARITY_TICK_LABELS = 40
ROW_COLOURS = ("#1565c0", "#9e9e9e", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")


def _save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float64)


# --- loss curves ------------------------------------------------------------------------


def _ema(values: np.ndarray, span: float) -> np.ndarray:
    """Exponential moving average, started at the first value (no warm-up bias)."""
    weight = 2.0 / (span + 1.0)
    smoothed = np.empty_like(values)
    smoothed[0] = values[0]
    for i in range(1, len(values)):
        smoothed[i] = smoothed[i - 1] + weight * (values[i] - smoothed[i - 1])
    return smoothed


def plot_loss_curves(history: dict[str, list[tuple[int, float]]], path: Path | str, title: str) -> Path:
    """One line per series of (step, value): raw values faint, an EMA drawn over them.

    The y axis is logarithmic when every value is positive (losses shrink by orders of
    magnitude), and the EMA is then taken on log values so it follows the curve's shape.
    Non-finite values (a diverged step) are left out and counted in the legend.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    series: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for name, points in history.items():
        pairs = _as_array(list(points))
        if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ValueError(f"series {name!r} must be a non-empty list of (step, value) pairs")
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
        finite = np.isfinite(pairs).all(axis=1)
        series[name] = (pairs[finite, 0], pairs[finite, 1], int(np.sum(~finite)))
    all_values = np.concatenate([values for _, values, _ in series.values()])
    if len(all_values) == 0:
        raise ValueError("history holds no finite values")
    log_y = bool(np.all(all_values > 0))

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for index, (name, (steps, values, dropped)) in enumerate(series.items()):
        colour = ROW_COLOURS[index % len(ROW_COLOURS)]
        label = name if dropped == 0 else f"{name} ({dropped} non-finite left out)"
        if len(values) == 0:
            ax.plot([], [], color=colour, label=label)  # keep the series visible in the legend
            continue
        span = max(1.0, len(values) / 20)
        if log_y:
            smoothed = np.exp(_ema(np.log(values), span))
        else:
            smoothed = _ema(values, span)
        ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smoothed, color=colour, linewidth=1.8, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("value (log scale)" if log_y else "value")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# --- reconstructions --------------------------------------------------------------------


def _to_display(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, 3] in [0, 1]; grey images get 3 channels."""
    pictures = np.clip((np.nan_to_num(images) + 1.0) / 2.0, 0.0, 1.0).transpose(0, 2, 3, 1)
    return np.repeat(pictures, 3, axis=3) if pictures.shape[3] == 1 else pictures


def plot_reconstructions(inputs: Any, outputs: Any, path: Path | str, n: int = 8) -> Path:
    """The first `n` faces: inputs on the top row, their reconstructions below.

    Images are [N, C, H, W] (C = 3, or 1 for grey) in [-1, 1], numpy or torch.  Each
    column is titled with the pair's mean absolute error (in the [-1, 1] scale).
    """
    originals = _as_array(inputs)
    rebuilt = _as_array(outputs)
    if originals.ndim != 4 or originals.shape[1] not in (1, 3):
        raise ValueError(f"inputs must be [N, 3, H, W], got shape {originals.shape}")
    if rebuilt.shape != originals.shape:
        raise ValueError(f"outputs {rebuilt.shape} must match inputs {originals.shape}")
    if n < 1 or len(originals) == 0:
        raise ValueError("nothing to plot: need n >= 1 and at least one image")
    count = min(n, len(originals))
    originals, rebuilt = originals[:count], rebuilt[:count]
    errors = np.mean(np.abs(np.nan_to_num(rebuilt) - np.nan_to_num(originals)), axis=(1, 2, 3))

    return plot_face_grid(
        np.stack([originals, rebuilt]),
        ["input", "reconstruction"],
        [f"#{column}  MAE {error:.3f}" for column, error in enumerate(errors)],
        path,
    )


def face_png(image: Any) -> bytes:
    """One face [3, H, W] in [-1, 1] as PNG bytes, pixel for pixel (no figure around it)."""
    import io

    from PIL import Image

    pixels = np.round((np.clip(_as_array(image), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def plot_face_grid(
    grid: Any, row_labels: list[str], column_labels: list[str], path: Path | str, title: str | None = None
) -> Path:
    """Faces in a grid: `grid` is [rows, columns, C, H, W] in [-1, 1], labels on the left and top."""
    faces = _as_array(grid)
    if faces.ndim != 5 or faces.shape[2] not in (1, 3) or 0 in faces.shape[:2]:
        raise ValueError(f"grid must be [rows, columns, 3, H, W] with at least one face, got shape {faces.shape}")
    n_rows, n_columns = faces.shape[:2]
    if len(row_labels) != n_rows or len(column_labels) != n_columns:
        raise ValueError(
            f"need {n_rows} row labels and {n_columns} column labels, got {len(row_labels)} and {len(column_labels)}"
        )
    height, width = faces.shape[3:]
    scale = max(1, math.ceil(MIN_FACE_PX / height))
    pad = 4
    cell_h, cell_w = height * scale, width * scale
    sheet = np.ones((n_rows * cell_h + (n_rows + 1) * pad, n_columns * cell_w + (n_columns + 1) * pad, 3))
    for row in range(n_rows):
        top = pad + row * (cell_h + pad)
        for column, image in enumerate(_to_display(faces[row])):
            left = pad + column * (cell_w + pad)
            sheet[top : top + cell_h, left : left + cell_w] = image.repeat(scale, axis=0).repeat(scale, axis=1)

    # Size the figure so one sheet pixel is one output pixel: nothing gets resampled.
    # The left margin fits the longest row label (~6 px a character at 8 pt).
    margin_left = max(120, 12 + 6 * max((len(label) for label in row_labels), default=0))
    margin_top, margin_bottom = 40 + (24 if title else 0), 10
    fig_w = (sheet.shape[1] + margin_left + 10) / DPI
    fig_h = (sheet.shape[0] + margin_top + margin_bottom) / DPI
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes(
        (
            margin_left / DPI / fig_w,
            margin_bottom / DPI / fig_h,
            sheet.shape[1] / DPI / fig_w,
            sheet.shape[0] / DPI / fig_h,
        )
    )
    ax.imshow(sheet, interpolation="nearest")
    ax.set_yticks([pad + row * (cell_h + pad) + cell_h / 2 for row in range(n_rows)], row_labels, fontsize=8)
    ax.set_xticks(
        [pad + column * (cell_w + pad) + cell_w / 2 for column in range(n_columns)], column_labels, fontsize=7
    )
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 6 / DPI / fig_h, va="top")
    return _save(fig, path)


def plot_convergence(table: list[dict], path: Path | str, title: str) -> Path:
    """Distance between successive priors against N (log-log): the paper's Table 1 as a curve."""
    if not table:
        raise ValueError("the convergence table is empty: need at least two sample sizes")
    n2 = np.array([row["n2"] for row in table], dtype=float)
    distance = np.array([row["l2"] for row in table], dtype=float)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(n2, distance, marker="o", color=ROW_COLOURS[0])
    for row in table:
        ax.annotate(
            f"{row['relative']:.1%}", (row["n2"], row["l2"]), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    ax.set_xscale("log", base=2)
    if np.all(distance > 0):
        ax.set_yscale("log")
    ax.set_xlabel("faces averaged, N (each point: N/2 -> N)")
    ax.set_ylabel("|p_N - p_N/2| (L2); labels: relative to |p_N|")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# --- similarity matrix ------------------------------------------------------------------


def plot_similarity_matrix(sim: Any, labels: list[str], path: Path | str, title: str) -> Path:
    """Heatmap of speech (rows) x face (columns) similarity; the diagonal is the true pairs.

    A white dot marks each row's best-matching face, so correct top-1 retrievals show
    as dots on the diagonal; the title counts them.  Above 40 speakers the tick labels
    would be unreadable and are left out.
    """
    matrix = _as_array(sim)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"sim must be a non-empty square matrix, got shape {matrix.shape}")
    speakers = matrix.shape[0]
    if len(labels) != speakers:
        raise ValueError(f"{len(labels)} labels for a {speakers} x {speakers} matrix")

    best = np.argmax(np.nan_to_num(matrix, nan=-np.inf), axis=1)
    hits = int(np.sum(best == np.arange(speakers)))
    side = min(12.0, max(5.0, 0.22 * speakers + 2.5))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    ax.scatter(
        best,
        np.arange(speakers),
        s=max(2.0, 400 / speakers),
        c="white",
        edgecolors="black",
        linewidths=0.4 if speakers <= MAX_SIMILARITY_TICK_LABELS else 0.0,
    )
    if speakers <= MAX_SIMILARITY_TICK_LABELS:
        ax.set_xticks(range(speakers), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(speakers), labels, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("face of speaker")
    ax.set_ylabel("speech of speaker")
    ax.set_title(
        f"{title}\ndiagonal = true pairs; dot = best match per row ({hits}/{speakers} on the diagonal)", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, path)


# --- metric comparison ------------------------------------------------------------------


def _metric_value(value: Any) -> float | None:
    """A metric as a float (missing -> NaN), or None when the entry is not a number."""
    if value is None:
        return float("nan")
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)):
        return None
    return float(value)


def plot_metric_comparison(rows: dict[str, dict[str, float]], path: Path | str, title: str) -> Path:
    """Grouped bars: one panel per metric shared by all rows, one bar per row.

    Each metric gets its own panel and y scale, because metrics of different units
    (recall in [0, 1], age error in years) would flatten each other on one axis.
    Missing (NaN) values are marked "n/a".
    """
    if not rows:
        raise ValueError("rows is empty: nothing to compare")
    row_names = list(rows)
    numeric = {name: {metric: _metric_value(value) for metric, value in rows[name].items()} for name in row_names}
    # Non-numeric entries (e.g. a probe's "skipped" reason) are notes, not metrics.
    shared = [
        metric for metric in numeric[row_names[0]] if all(numeric[name].get(metric) is not None for name in row_names)
    ]
    if not shared:
        raise ValueError(f"the rows {row_names} share no numeric metric")
    values = np.array([[numeric[name][metric] for name in row_names] for metric in shared])

    columns = min(4, len(shared))
    panel_rows = math.ceil(len(shared) / columns)
    fig = Figure(figsize=(max(6.0, 3.0 * columns), 2.8 * panel_rows + 0.8))
    axes = fig.subplots(panel_rows, columns, squeeze=False)
    colours = [ROW_COLOURS[i % len(ROW_COLOURS)] for i in range(len(row_names))]
    positions = np.arange(len(row_names))
    for ax, metric, metric_values in zip(axes.flat, shared, values):
        finite = np.isfinite(metric_values)
        ax.bar(positions[finite], metric_values[finite], color=[c for c, ok in zip(colours, finite) if ok])
        ax.axhline(0.0, color="black", linewidth=0.6)
        for position, value in zip(positions, metric_values):
            text = f"{value:.3g}" if np.isfinite(value) else "n/a"
            ax.annotate(
                text,
                (position, value if np.isfinite(value) else 0.0),
                textcoords="offset points",
                xytext=(0, 3 if not np.isfinite(value) or value >= 0 else -10),
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(positions, row_names, fontsize=8, rotation=20 if len(row_names) > 3 else 0)
        ax.set_xlim(-0.6, len(row_names) - 0.4)
        ax.margins(y=0.15)
        ax.set_title(metric, fontsize=9)
    for ax in axes.flat[len(shared) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# --- parameter sweeps -------------------------------------------------------------------


def plot_sweep(
    x: Any,
    curves: dict[str, Any],
    path: Path | str,
    title: str,
    xlabel: str,
    chosen: float | None = None,
    references: dict[str, float] | None = None,
) -> Path:
    """One panel per metric against a swept parameter (e.g. guidance), each on its own y scale.

    `chosen` marks the value in use with a dashed line; `references` draws a dotted level
    on the panel of the same name (e.g. what real faces score).  The x axis is logarithmic
    when the values span more than a factor of 20 and are all positive.
    """
    xs = _as_array(x)
    if xs.ndim != 1 or len(xs) == 0:
        raise ValueError(f"x must be a non-empty 1-D list of parameter values, got shape {xs.shape}")
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    for name, values in curves.items():
        if _as_array(values).shape != xs.shape:
            raise ValueError(f"curve '{name}' has {_as_array(values).shape} values for {len(xs)} x values")
    references = references or {}
    fig = Figure(figsize=(4.0 * len(curves), 3.6))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    order = np.argsort(xs)
    for i, (ax, (name, values)) in enumerate(zip(axes, curves.items())):
        ys = _as_array(values)
        ax.plot(xs[order], ys[order], marker="o", color=ROW_COLOURS[i % len(ROW_COLOURS)])
        if name in references:
            ax.axhline(references[name], color="black", linestyle=":", linewidth=1, label="reference")
            ax.legend(fontsize=7)
        if chosen is not None:
            ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
        if np.all(xs > 0) and xs.max() / xs.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
