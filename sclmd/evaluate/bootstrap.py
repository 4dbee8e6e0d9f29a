"""Percentile bootstrap intervals over test clips, resampled by speaker (a cluster bootstrap).

A test split holds several clips per speaker (2 on the embedded default), and a speaker's
clips are not independent: the same voice, faces of one person.  So a resample draws
*speakers* with replacement (as many as there are) and takes all of each drawn speaker's
clips; a clip's weight in a resample is how often its speaker was drawn.  Every metric and
every method is resampled with the same draws (same seed), so differences between methods
on the same clips are paired: `paired_difference` is SCLDM's per-clip value minus a
baseline's, resampled together.

- per-clip means (L1, L2, cos, accuracies, age MAE, retrieval hits, diversity, best-of-K):
  `mean_ci`, weights x values, vectorised: 1000 resamples cost milliseconds;
- any other statistic of the resampled rows (the Fréchet distance): `statistic_draws`
  with the first `max_resamples` draws, one call per draw; `bias_corrected` shifts its
  percentile interval by the bootstrap's estimate of the statistic's bias (the Fréchet
  distance of a resample, which repeats rows, is biased upward).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np

LEVEL = 0.95


class ClusterBootstrap:
    """`resamples` draws of the clusters (speakers) of N clips, fixed by `seed`."""

    def __init__(self, clusters, resamples: int = 1000, seed: int = 0, level: float = LEVEL):
        names, self.cluster_of_clip = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        self.n_clusters = len(names)
        self.resamples = int(resamples)
        self.level = level
        rng = np.random.default_rng(seed)
        drawn = rng.integers(0, max(self.n_clusters, 1), size=(self.resamples, self.n_clusters))
        counts = np.zeros((self.resamples, self.n_clusters), dtype=np.int64)
        np.add.at(counts, (np.arange(self.resamples)[:, None], drawn), 1)
        self.weights = counts[:, self.cluster_of_clip].astype(np.float64)  # [B, N]: clip weights per resample

    @property
    def n_clips(self) -> int:
        return len(self.cluster_of_clip)

    def percentiles(self, draws) -> list[float]:
        """The percentile interval of bootstrap draws (NaN draws ignored; [NaN, NaN] if none is finite)."""
        draws = np.asarray(draws, dtype=np.float64)
        draws = draws[np.isfinite(draws)]
        if len(draws) == 0 or self.n_clusters < 2:
            return [float("nan"), float("nan")]
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail])
        return [float(low), float(high)]

    def bias_corrected(self, draws, point: float, floor: float | None = None) -> list[float]:
        """The percentile interval shifted by the bootstrap's estimate of the statistic's bias
        (mean of the draws - the point value).  For the Fréchet distance: a resample repeats rows,
        which narrows their spread, so its draws sit above the point value, often all of them."""
        draws = np.asarray(draws, dtype=np.float64)
        finite = draws[np.isfinite(draws)]
        low, high = self.percentiles(finite)
        if not (len(finite) and np.isfinite(point) and np.isfinite(low)):
            return [low, high]
        bias = float(finite.mean()) - float(point)
        low, high = low - bias, high - bias
        if floor is not None:
            low, high = max(low, floor), max(high, floor)
        return [low, high]

    def mean_draws(self, values) -> np.ndarray:
        """The mean of `values` [N] (NaN rows left out, e.g. unlabelled clips) in every resample: [B]."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (self.n_clips,):
            raise ValueError(f"values must be one per clip ({self.n_clips}), got shape {v.shape}")
        known = np.isfinite(v)
        total = self.weights @ np.where(known, v, 0.0)
        count = self.weights @ known.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)

    def mean_ci(self, values) -> list[float]:
        return self.percentiles(self.mean_draws(values))

    def paired_difference(self, a, b) -> dict:
        """Mean of the per-clip difference a - b and its interval (the same clips in both)."""
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        point = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
        return {"diff": point, "ci": self.mean_ci(d)}

    def rows(self, draw: int) -> np.ndarray:
        """The clip indices of one resample (a clip repeated as often as its speaker was drawn)."""
        return np.repeat(np.arange(self.n_clips), self.weights[draw].astype(np.int64))

    def statistic_draws(self, statistic: Callable[[np.ndarray], float], max_resamples: int | None = None) -> np.ndarray:
        """statistic(rows) for the first `max_resamples` resamples (all when None)."""
        count = self.resamples if max_resamples is None else min(self.resamples, int(max_resamples))
        out = np.full(count, np.nan)
        with _one_blas_thread():  # small matrices: threads only spin (40x slower on a busy 2-core host)
            for b in range(count):
                try:
                    out[b] = statistic(self.rows(b))
                except ValueError:  # e.g. a resample with a single row
                    pass
        return out


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a declared dependency (it comes with scikit-learn): then as it is
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def nan_mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
