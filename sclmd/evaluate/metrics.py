"""Metrics on generated faces, computed on the features of whichever judge is given.

- Realism: the Fréchet distance between the feature distributions of generated and real
  faces (FID's formula; the features need not be Inception's).
"""

from __future__ import annotations

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
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(root):  # round-off leaves tiny imaginary parts on a product of PSD matrices
        root = root.real
    value = float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))
    return max(value, 0.0)  # round-off can take identical sets a hair below zero
