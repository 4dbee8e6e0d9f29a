"""Metrics on generated faces, computed on the features of whichever judge is given.

- Feature similarity (paper Tables 2-3): L1, L2 and cosine distance between the judge
  features of the generated and the true face of each clip.
- Realism: the Fréchet distance between the feature distributions of generated and real
  faces (FID's formula; the features need not be Inception's).
- Retrieval of the true speaker from a face, diversity across samples, best-of-K cosine.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sclmd.evaluate.embeddings import _as_matrix


def frechet_distance(generated: Any, real: Any) -> float:
    """Fréchet distance between Gaussians fit to two sets of features.

    |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2)).  0 for identical sets; it grows
    as the generated features move away from, or collapse inside, the real ones.  With
    fewer rows than dims the covariances are singular: the formula still holds, but the
    number is then only comparable between sets of the same size.
    """
    import scipy.linalg

    a, b = _as_matrix(generated, "generated"), _as_matrix(real, "real")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"generated has {a.shape[1]} dims but real has {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least two rows on each side, got {len(a)} generated and {len(b)} real")
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # singular covariances (fewer rows than dims) are expected; see above
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(root):  # round-off leaves tiny imaginary parts on a product of PSD matrices
        root = root.real
    value = float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))
    return max(value, 0.0)  # round-off can take identical sets a hair below zero


def frechet_against(real: Any):
    """`frechet_distance(generated, real)` as a function of `generated`, for many generated sets
    against one real set (the bootstrap): the real side's mean, covariance and covariance square
    root are computed once, and tr((S_g S_r)^(1/2)) = sum of sqrt(eigenvalues of
    S_r^(1/2) S_g S_r^(1/2)), a symmetric eigenproblem, instead of a general matrix sqrtm."""
    b = _as_matrix(real, "real")
    if len(b) < 2:
        raise ValueError(f"need at least two rows on each side, got {len(b)} real")
    mean_b = b.mean(axis=0)
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_b)
    root_b = (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    def distance(generated: Any) -> float:
        a = _as_matrix(generated, "generated")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"generated has {a.shape[1]} dims but real has {b.shape[1]}")
        if len(a) < 2:
            raise ValueError(f"need at least two rows on each side, got {len(a)} generated and {len(b)} real")
        mean_gap = a.mean(axis=0) - mean_b
        cov_a = np.atleast_2d(np.cov(a, rowvar=False))
        inner = root_b @ cov_a @ root_b
        trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
        value = float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)
        return max(value, 0.0)

    return distance


# --- generated vs true faces ---------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def feature_distances_per_clip(generated: Any, true: Any) -> dict[str, np.ndarray]:
    """Per clip: L1, L2 and cosine distance between the judge features of the generated and the
    true face of the same clip (features unit-normalised first; cosine distance as
    (1 - cos) x 100, the paper's scale).  Arrays [N]."""
    g, t = _unit(_as_matrix(generated, "generated")), _unit(_as_matrix(true, "true"))
    if g.shape != t.shape:
        raise ValueError(f"generated {g.shape} and true {t.shape} features must pair up row by row")
    return {
        "l1": np.abs(g - t).sum(axis=1),
        "l2": np.linalg.norm(g - t, axis=1),
        "cos": np.clip(1 - (g * t).sum(axis=1), 0, 2) * 100,  # clip: round-off below 0
    }


def feature_distances(generated: Any, true: Any) -> dict[str, float]:
    """Mean L1, L2 and cosine distance between the judge features of each generated face and
    the true face of the same clip (features unit-normalised first; cosine distance reported
    as (1 - cos) x 100, the paper's scale)."""
    return {k: float(v.mean()) for k, v in feature_distances_per_clip(generated, true).items()}


def _samples(samples: Any, true: np.ndarray) -> np.ndarray:
    s = np.asarray(samples.detach().cpu().numpy() if hasattr(samples, "detach") else samples, dtype=np.float64)
    if s.ndim != 3 or s.shape[0] != len(true) or s.shape[2] != true.shape[1]:
        raise ValueError(f"samples must be [N, K, D] matching true {true.shape}, got {s.shape}")
    return s / np.maximum(np.linalg.norm(s, axis=2, keepdims=True), 1e-12)


def best_of_k_per_clip(samples: Any, true: Any) -> dict[str, np.ndarray]:
    """Per clip, the best of its K samples [N, K, D] against the true face [N, D] on each of
    L1, L2 and (1 - cos) x 100 (each distance picks its own best sample; L2 and cos always
    pick the same one, features being unit length).  Arrays [N]."""
    t = _unit(_as_matrix(true, "true"))
    s = _samples(samples, t)
    gap = s - t[:, None]
    return {
        "l1": np.abs(gap).sum(axis=2).min(axis=1),
        "l2": np.linalg.norm(gap, axis=2).min(axis=1),
        "cos": ((1 - np.einsum("nkd,nd->nk", s, t)) * 100).min(axis=1),
    }


def best_of_k_cos(samples: Any, true: Any) -> dict[str, float]:
    """The paper's Figure 6 number: per clip, the smallest (1 - cos) x 100 among its K samples
    [N, K, D] against the true face [N, D]; mean and std over clips."""
    best = best_of_k_per_clip(samples, true)["cos"]
    return {"mean": float(best.mean()), "std": float(best.std())}


def diversity_per_clip(samples: Any) -> np.ndarray:
    """Per clip, the mean pairwise (1 - cos) x 100 between its K samples [N, K, D]; 0 when K = 1
    or when every sample is the same (a deterministic method).  Array [N]."""
    s = np.asarray(samples.detach().cpu().numpy() if hasattr(samples, "detach") else samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must be [N, K, D], got {s.shape}")
    k = s.shape[1]
    if k < 2:
        return np.zeros(len(s))
    s = s / np.maximum(np.linalg.norm(s, axis=2, keepdims=True), 1e-12)
    sim = np.einsum("nkd,njd->nkj", s, s)
    off = ~np.eye(k, dtype=bool)
    return ((1 - sim[:, off]) * 100).mean(axis=1)


def diversity(samples: Any) -> float:
    """Mean pairwise (1 - cos) x 100 between the K samples of each clip [N, K, D]; 0 when K = 1
    or when every sample is the same (a deterministic method)."""
    per_clip = diversity_per_clip(samples)
    return float(per_clip.mean()) if len(per_clip) else 0.0


def speaker_retrieval(
    queries: Any, query_speakers, gallery: Any, gallery_speakers, ks=(1, 5), leave_one_out: bool = False
) -> dict[str, float]:
    """Find each query's speaker among the gallery's: the gallery holds the mean (unit) feature
    of each speaker's faces; recall@k = share of queries whose speaker ranks in the top k.
    `leave_one_out` (queries = gallery) leaves a query's own face out of its speaker's mean;
    speakers then need a second face, and queries without one are not counted."""
    hits = speaker_retrieval_per_clip(queries, query_speakers, gallery, gallery_speakers, ks, leave_one_out)
    out: dict[str, float] = {}
    for k in ks:
        h = hits[f"retrieval_r{k}"]
        out[f"retrieval_r{k}"] = float(np.nanmean(h)) if np.isfinite(h).any() else float("nan")
    out["retrieval_speakers"] = len(np.unique(np.asarray(gallery_speakers).astype(str)))
    return out


def speaker_retrieval_per_clip(
    queries: Any, query_speakers, gallery: Any, gallery_speakers, ks=(1, 5), leave_one_out: bool = False
) -> dict[str, np.ndarray]:
    """`speaker_retrieval` per query: 1.0 when the query's speaker ranks in the top k, 0.0 when
    not, NaN for a query that is not counted (its speaker is not in the gallery, or has no
    other face with `leave_one_out`).  Arrays [N] per k."""
    q = _unit(_as_matrix(queries, "queries"))
    g = _unit(_as_matrix(gallery, "gallery"))
    q_spk = np.asarray(query_speakers).astype(str)
    g_spk = np.asarray(gallery_speakers).astype(str)
    names, inverse = np.unique(g_spk, return_inverse=True)
    sums = np.zeros((len(names), g.shape[1]))
    np.add.at(sums, inverse, g)
    counts = np.bincount(inverse, minlength=len(names)).astype(float)
    target = np.searchsorted(names, q_spk)
    valid = (target < len(names)) & (names[np.minimum(target, len(names) - 1)] == q_spk)
    target = np.minimum(target, len(names) - 1)
    own_sum = sums[target]
    own_count = counts[target]
    if leave_one_out:
        own_sum = own_sum - q
        own_count = own_count - 1
        valid &= own_count > 0
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    scores = q @ means.T
    own = np.einsum("qd,qd->q", q, own_sum / np.maximum(np.linalg.norm(own_sum, axis=1, keepdims=True), 1e-12))
    scores[np.arange(len(q)), target] = own
    # rank = how many other speakers score at least as high (ties count against the query)
    rank = (scores >= own[:, None]).sum(axis=1) - 1
    return {f"retrieval_r{k}": np.where(valid, (rank < k).astype(np.float64), np.nan) for k in ks}


def chosen_rows(n: int, max_clips: int) -> np.ndarray:
    """All rows, or `max_clips` spread evenly over the split (deterministic)."""
    if not max_clips or max_clips >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_clips).round().astype(np.int64))
