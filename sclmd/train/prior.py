"""Fitting the statistical face prior: a gender-balanced mean of face latents, and how it converges.

The sample is drawn once, in a fixed random order per gender, and interleaved
(f, m, f, m, ...) so that every prefix of it is itself gender-balanced: the prior of
the first N faces is then p_N, and the doubling ladder N = n0, 2 n0, 4 n0, ... of the
paper's Table 1 reads off prefixes of one encoded batch instead of re-encoding.
"""

from __future__ import annotations

import numpy as np
import torch

from sclmd.data.store import PackedClips
from sclmd.errors import SclmdError
from sclmd.models.prior import FacePrior


def balanced_order(genders: np.ndarray, requested: int, seed: int) -> np.ndarray:
    """Row positions of up to `requested` faces, alternating f/m, each gender shuffled.

    Capped at twice the smaller gender's count, so the sample stays balanced; rows of
    unknown gender are never drawn.
    """
    rng = np.random.default_rng([seed, 0x9121])
    female = rng.permutation(np.flatnonzero(genders == "f"))
    male = rng.permutation(np.flatnonzero(genders == "m"))
    per_gender = min(len(female), len(male), requested // 2)
    if per_gender == 0:
        raise SclmdError(
            f"the face prior needs faces of both genders in the training split; found {len(female)} female and "
            f"{len(male)} male (and prior.n_faces={requested}). Check the manifest's gender column."
        )
    order = np.empty(2 * per_gender, dtype=np.int64)
    order[0::2], order[1::2] = female[:per_gender], male[:per_gender]
    return order


@torch.no_grad()
def encode_faces(face_encoder, dataset: PackedClips, rows: np.ndarray, batch_size: int) -> torch.Tensor:
    """Face latents z [N, C, h, w] of the given rows, frozen encoder in eval mode."""
    from tqdm import tqdm

    face_encoder.eval()
    out = []
    for start in tqdm(range(0, len(rows), batch_size), desc="prior: encoding faces", unit="batch", leave=False):
        batch = dataset.faces_float(rows[start : start + batch_size])
        z, _ = face_encoder(batch)
        out.append(z)
    return torch.cat(out)


def doubling_ladder(available: int, start: int) -> list[int]:
    """start, 2*start, 4*start, ... below `available`, then `available` itself (even counts only)."""
    ladder, n = [], max(2, start - start % 2)
    while n < available:
        ladder.append(n)
        n *= 2
    ladder.append(available)
    return ladder


def convergence(latents: torch.Tensor, ladder: list[int]) -> list[dict]:
    """Distance between successive priors p_{N1} -> p_{N2} (paper Table 1).

    `l2` is the Euclidean distance between the two mean latents; `relative` divides it by
    the norm of the larger-N prior, so the number reads the same whatever the latent's scale.
    """
    cumulative = latents.double().flatten(1).cumsum(0)
    prior = {n: cumulative[n - 1] / n for n in ladder}
    rows = []
    for small, large in zip(ladder, ladder[1:]):
        distance = float(torch.linalg.vector_norm(prior[large] - prior[small]))
        rows.append(
            {
                "n1": small,
                "n2": large,
                "l2": distance,
                "relative": distance / max(float(torch.linalg.vector_norm(prior[large])), 1e-12),
            }
        )
    return rows


def fit_prior(
    face_encoder, dataset: PackedClips, requested: int, seed: int, batch_size: int, ladder_start: int
) -> tuple[FacePrior, list[dict]]:
    genders = dataset.rows["gender"].astype(str).str.lower().str[:1].to_numpy()
    order = balanced_order(genders, requested, seed)
    latents = encode_faces(face_encoder, dataset, order, batch_size)
    ladder = doubling_ladder(len(order), ladder_start)
    prior = FacePrior(
        latents.mean(0).float(),
        n_faces=len(order),
        n_female=len(order) // 2,
        n_male=len(order) // 2,
        requested=requested,
    )
    return prior, convergence(latents, ladder)
