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


# --- generated vs true faces ---------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def feature_distances(generated: Any, true: Any) -> dict[str, float]:
    """Mean L1, L2 and cosine distance between the judge features of each generated face and
    the true face of the same clip (features unit-normalised first; cosine distance reported
    as (1 - cos) x 100, the paper's scale)."""
    g, t = _unit(_as_matrix(generated, "generated")), _unit(_as_matrix(true, "true"))
    if g.shape != t.shape:
        raise ValueError(f"generated {g.shape} and true {t.shape} features must pair up row by row")
    return {
        "l1": float(np.abs(g - t).sum(axis=1).mean()),
        "l2": float(np.linalg.norm(g - t, axis=1).mean()),
        "cos": float((np.clip(1 - (g * t).sum(axis=1), 0, 2) * 100).mean()),  # clip: round-off below 0
    }


def best_of_k_cos(samples: Any, true: Any) -> dict[str, float]:
    """The paper's Figure 6 number: per clip, the smallest (1 - cos) x 100 among its K samples
    [N, K, D] against the true face [N, D]; mean and std over clips."""
    s = np.asarray(samples.detach().cpu().numpy() if hasattr(samples, "detach") else samples, dtype=np.float64)
    t = _unit(_as_matrix(true, "true"))
    if s.ndim != 3 or s.shape[0] != len(t) or s.shape[2] != t.shape[1]:
        raise ValueError(f"samples must be [N, K, D] matching true {t.shape}, got {s.shape}")
    s = s / np.maximum(np.linalg.norm(s, axis=2, keepdims=True), 1e-12)
    best = ((1 - np.einsum("nkd,nd->nk", s, t)) * 100).min(axis=1)
    return {"mean": float(best.mean()), "std": float(best.std())}


def diversity(samples: Any) -> float:
    """Mean pairwise (1 - cos) x 100 between the K samples of each clip [N, K, D]; 0 when K = 1
    or when every sample is the same (a deterministic method)."""
    s = np.asarray(samples.detach().cpu().numpy() if hasattr(samples, "detach") else samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must be [N, K, D], got {s.shape}")
    k = s.shape[1]
    if k < 2:
        return 0.0
    s = s / np.maximum(np.linalg.norm(s, axis=2, keepdims=True), 1e-12)
    sim = np.einsum("nkd,njd->nkj", s, s)
    off = ~np.eye(k, dtype=bool)
    return float(((1 - sim[:, off]) * 100).mean())


def speaker_retrieval(queries: Any, query_speakers, gallery: Any, gallery_speakers, ks=(1, 5),
                      leave_one_out: bool = False) -> dict[str, float]:
    """Find each query's speaker among the gallery's: the gallery holds the mean (unit) feature
    of each speaker's faces; recall@k = share of queries whose speaker ranks in the top k.
    `leave_one_out` (queries = gallery) leaves a query's own face out of its speaker's mean;
    speakers then need a second face, and queries without one are not counted."""
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
    out = {}
    for k in ks:
        out[f"retrieval_r{k}"] = float(np.mean(rank[valid] < k)) if valid.any() else float("nan")
    out["retrieval_speakers"] = len(names)
    return out
