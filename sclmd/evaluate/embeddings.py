"""How good is a speech-face embedding space: retrieval and linear probes.

- Retrieval: every speech clip queries a gallery holding one face embedding per speaker;
  recall@k is the share of clips whose own speaker's face ranks in the top k.
- Probes: can gender (logistic regression) and age (ridge regression) be read linearly
  off the embeddings?  Each probe reports its trivial baseline beside it, so a number is
  never read without knowing what "no information" scores.

Everything is deterministic: no random folds, no random initialisation, ties resolved
by a fixed rule.  Nothing here needs scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

MIN_LABELLED_ROWS = 4
CV_FOLDS = 5
# Ordered from strongest to weakest regularisation: on equal CV scores the first
# (simplest) model wins.
LOGISTIC_C_GRID = (0.01, 0.1, 1.0, 10.0)
RIDGE_LAMBDA_GRID = (10.0, 1.0, 0.1, 0.01, 0.001)
# The intercept is left (almost) free; the tiny penalty keeps Newton's Hessian
# invertible when a CV training fold holds a single class.
INTERCEPT_PENALTY = 1e-6
GENDER_CODES = {"f": 0.0, "female": 0.0, "m": 1.0, "male": 1.0}
UNKNOWN_GENDER = {"", "?", "unknown", "u"}


# --- inputs --------------------------------------------------------------------------


def _as_matrix(values: Any, name: str) -> np.ndarray:
    """A finite float64 [rows, dims] array from numpy or torch input."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, dims], got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return matrix


def _as_ids(values: Any, name: str, rows: int) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    ids = np.asarray(values)
    if ids.ndim != 1 or len(ids) != rows:
        raise ValueError(f"{name} must be 1-D with {rows} entries, got shape {ids.shape}")
    return ids


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; an all-zero row stays zero (similarity 0 to everything)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _cosine(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return _unit_rows(queries) @ _unit_rows(gallery).T


# --- retrieval -----------------------------------------------------------------------


def similarity_matrix(speech_by_speaker: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Cosine similarity [S, S]: row i = speaker i's speech, column j = speaker j's face.

    The diagonal holds the true pairs.
    """
    speech = _as_matrix(speech_by_speaker, "speech_by_speaker")
    gallery = _as_matrix(faces, "faces")
    if speech.shape != gallery.shape:
        raise ValueError(f"speech_by_speaker {speech.shape} and faces {gallery.shape} must have the same shape")
    return _cosine(speech, gallery)


def retrieval_ranks(
    speech: np.ndarray, speech_speaker: np.ndarray, faces: np.ndarray, face_speaker: np.ndarray
) -> np.ndarray:
    """1-based rank of each query's true face among the gallery (cosine similarity).

    Ties count against the query: a face scoring exactly as high as the true one ranks
    before it.  So a collapsed embedding (all similarities equal) ranks every true face
    last instead of scoring by gallery order, and the result never depends on order.
    """
    queries = _as_matrix(speech, "speech")
    gallery = _as_matrix(faces, "faces")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"speech has {queries.shape[1]} dims but faces have {gallery.shape[1]}")
    if len(gallery) == 0:
        raise ValueError("the face gallery is empty")
    query_ids = _as_ids(speech_speaker, "speech_speaker", len(queries))
    gallery_ids = _as_ids(face_speaker, "face_speaker", len(gallery))
    gallery_index = {speaker: i for i, speaker in enumerate(gallery_ids.tolist())}
    if len(gallery_index) != len(gallery_ids):
        raise ValueError("face_speaker must hold exactly one face per speaker (found duplicate ids)")
    missing = sorted({s for s in query_ids.tolist() if s not in gallery_index}, key=str)
    if missing:
        raise ValueError(f"{len(missing)} query speaker(s) have no face in the gallery, e.g. {missing[:5]}")

    true_index = np.array([gallery_index[s] for s in query_ids.tolist()], dtype=np.int64)
    similarity = _cosine(queries, gallery)
    true_similarity = similarity[np.arange(len(queries)), true_index]
    # Count every face at least as similar as the true one, the true face included.
    return np.sum(similarity >= true_similarity[:, None], axis=1)


def retrieval_recall(
    speech: np.ndarray,
    speech_speaker: np.ndarray,
    faces: np.ndarray,
    face_speaker: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Speech -> face retrieval recall@k over a gallery of one face per speaker.

    Returns "recall@k" and "chance@k" (= min(k, S) / S, the expected recall of a random
    ranking) for each k, plus "n_queries" and "n_gallery".  Ties are resolved as in
    `retrieval_ranks`: against the query.
    """
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    ranks = retrieval_ranks(speech, speech_speaker, faces, face_speaker)
    n_gallery = len(np.asarray(face_speaker))
    result: dict[str, float] = {}
    for k in ks:
        result[f"recall@{k}"] = float(np.mean(ranks <= k)) if len(ranks) else float("nan")
    for k in ks:
        result[f"chance@{k}"] = min(k, n_gallery) / n_gallery
    result["n_queries"] = len(ranks)
    result["n_gallery"] = n_gallery
    return result


# --- probes: shared machinery ---------------------------------------------------------


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale with the training rows' statistics only; constant features become zeros."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return [(m - mean) / std for m in (train, *others)]


def _fold_ids(strata: np.ndarray, groups: np.ndarray | None, n_folds: int) -> np.ndarray:
    """Deterministic stratified fold of each row.

    Units (rows, or whole groups when given, so one speaker never sits on both sides of
    a fold) are dealt round-robin within each stratum, in order of first appearance.
    """
    units = groups if groups is not None else np.arange(len(strata))
    _, first_row, row_unit = np.unique(units, return_index=True, return_inverse=True)
    unit_strata = strata[first_row]
    unit_fold = np.empty(len(first_row), dtype=np.int64)
    dealt = 0
    for stratum in np.unique(unit_strata):
        members = np.flatnonzero(unit_strata == stratum)
        members = members[np.argsort(first_row[members], kind="stable")]
        unit_fold[members] = (dealt + np.arange(len(members))) % n_folds
        dealt += len(members)
    return unit_fold[row_unit.reshape(-1)]


def _labelled(x: Any, labels: np.ndarray, groups: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Features, labels and groups of the rows whose label is known."""
    features = _as_matrix(x, f"{name}_x")
    if len(labels) != len(features):
        raise ValueError(f"{name}_x has {len(features)} rows but {len(labels)} labels")
    known = ~np.isnan(labels)
    group_ids = None if groups is None else _as_ids(groups, "train_groups", len(features))[known]
    return features[known], labels[known], group_ids


def _too_few(train_rows: int, test_rows: int) -> str | None:
    if train_rows < MIN_LABELLED_ROWS or test_rows < MIN_LABELLED_ROWS:
        return f"too few labelled rows: {train_rows} train, {test_rows} test (need {MIN_LABELLED_ROWS} each)"
    return None


def _cv_folds(strata: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    units = len(np.unique(groups)) if groups is not None else len(strata)
    return _fold_ids(strata, groups, min(CV_FOLDS, units))


def _select(
    grid: Sequence[float], folds: np.ndarray, validation_loss: Callable[[float, np.ndarray, np.ndarray], float]
) -> float:
    """The grid value with the lowest mean validation loss; the first wins ties."""
    losses = [
        np.mean([validation_loss(value, folds != fold, folds == fold) for fold in np.unique(folds)]) for value in grid
    ]
    return float(grid[int(np.argmin(losses))])


# --- gender probe ---------------------------------------------------------------------


def _gender_labels(values: Any) -> np.ndarray:
    """0/1 (or 'f'/'m', any case) -> 0.0/1.0; unknown (None, NaN, '?', '') -> NaN."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    codes = []
    for value in np.asarray(values, dtype=object).reshape(-1).tolist():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            codes.append(np.nan)
        elif isinstance(value, str):
            key = value.strip().lower()
            if key in UNKNOWN_GENDER:
                codes.append(np.nan)
            elif key in GENDER_CODES:
                codes.append(GENDER_CODES[key])
            else:
                raise ValueError(f"unknown gender label {value!r} (expected 0/1 or 'f'/'m')")
        elif value in (0, 1):
            codes.append(float(value))
        else:
            raise ValueError(f"unknown gender label {value!r} (expected 0/1 or 'f'/'m')")
    return np.asarray(codes, dtype=np.float64)


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float, max_iter: int = 100) -> np.ndarray:
    """Weights (intercept last) minimising sum(log-loss) + |w|^2 / (2C), by damped Newton.

    The objective is strictly convex, so Newton with a backtracking line search reaches
    the unique optimum from zero in a few steps, the same every time.
    """
    if x.shape[1] > x.shape[0]:
        # More dims than rows: the optimal weights lie in the span of the rows (the loss
        # only sees x @ w, the penalty removes any orthogonal part), so fit in that basis.
        _, _, row_basis = np.linalg.svd(x, full_matrices=False)
        reduced = _fit_logistic(x @ row_basis.T, y, c, max_iter)
        return np.concatenate([row_basis.T @ reduced[:-1], reduced[-1:]])
    design = _with_intercept(x)
    penalty = np.full(design.shape[1], 1.0 / c)
    penalty[-1] = INTERCEPT_PENALTY

    def objective(w: np.ndarray) -> float:
        z = design @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * w * w))

    weights = np.zeros(design.shape[1])
    current = objective(weights)
    for _ in range(max_iter):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (p - y) + penalty * weights
        if np.max(np.abs(gradient)) < 1e-8 * max(1, len(y)):
            break
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        decrease = float(gradient @ step)
        size = 1.0
        while size > 1e-10:
            candidate = objective(weights - size * step)
            if candidate <= current - 1e-4 * size * decrease:
                break
            size *= 0.5
        else:
            break  # no further progress possible in float64
        weights = weights - size * step
        current = candidate
    return weights


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _logistic_loss(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = _with_intercept(x) @ weights
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def probe_gender(
    train_x: np.ndarray,
    train_y: Any,
    test_x: np.ndarray,
    test_y: Any,
    *,
    train_groups: Any = None,
) -> dict[str, Any]:
    """Linear gender probe: L2 logistic regression on standardised features.

    C is picked among `LOGISTIC_C_GRID` by stratified k-fold validation log-loss on the
    train rows only; pass `train_groups` (e.g. speaker ids) so that one speaker's clips
    never fall on both sides of a fold.  Labels are 0/1 or 'f'/'m'; unknown ones are
    dropped.  The majority baseline predicts the train majority (on an exact tie, the
    class coded 0, i.e. 'f').

    Returns {"gender_accuracy", "gender_majority_baseline", "gender_c"}; when the data
    cannot support a probe the values are NaN and "skipped" says why.
    """
    train, train_labels, groups = _labelled(train_x, _gender_labels(train_y), train_groups, "train")
    test, test_labels, _ = _labelled(test_x, _gender_labels(test_y), None, "test")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_x has {train.shape[1]} dims but test_x has {test.shape[1]}")
    skipped = _too_few(len(train_labels), len(test_labels))
    if skipped is None and len(np.unique(train_labels)) < 2:
        skipped = "the train rows hold a single gender"
    if skipped is None and groups is not None and len(np.unique(groups)) < 2:
        skipped = "train_groups holds a single group: no fold can be held out"
    if skipped is not None:
        nan = float("nan")
        return {"gender_accuracy": nan, "gender_majority_baseline": nan, "gender_c": nan, "skipped": skipped}

    folds = _cv_folds(train_labels, groups)

    def validation_loss(c: float, fit_rows: np.ndarray, held_rows: np.ndarray) -> float:
        fit_x, held_x = _standardise(train[fit_rows], train[held_rows])
        weights = _fit_logistic(fit_x, train_labels[fit_rows], c)
        return _logistic_loss(weights, held_x, train_labels[held_rows])

    c = _select(LOGISTIC_C_GRID, folds, validation_loss)
    train_std, test_std = _standardise(train, test)
    weights = _fit_logistic(train_std, train_labels, c)
    predicted = (_with_intercept(test_std) @ weights > 0).astype(np.float64)
    majority = float(np.mean(train_labels) > 0.5)
    return {
        "gender_accuracy": float(np.mean(predicted == test_labels)),
        "gender_majority_baseline": float(np.mean(test_labels == majority)),
        "gender_c": c,
    }


# --- age probe ------------------------------------------------------------------------


def _numeric_labels(values: Any) -> np.ndarray:
    """Floats with NaN for unknown (None, NaN, pd.NA)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)


def _fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge: min mean((y - xw - b)^2) + penalty * |w|^2.

    `x` is standardised on these very rows, so its columns have mean zero and the
    unpenalised intercept b is simply the mean of y.
    """
    offset = float(y.mean())
    gram = x.T @ x + penalty * len(y) * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ (y - offset))
    return weights, offset


def probe_age(
    train_x: np.ndarray,
    train_age: Any,
    test_x: np.ndarray,
    test_age: Any,
    *,
    train_groups: Any = None,
) -> dict[str, Any]:
    """Linear age probe: ridge regression on standardised features, in closed form.

    The penalty (per row, so it does not depend on the train size) is picked among
    `RIDGE_LAMBDA_GRID` by k-fold validation MAE on the train rows only; pass
    `train_groups` (e.g. speaker ids) to keep one speaker's clips in one fold.  Unknown
    ages are dropped.

    Returns {"age_mae", "age_mae_mean_baseline", "age_lambda"}; when the data cannot
    support a probe the values are NaN and "skipped" says why.
    """
    train, train_labels, groups = _labelled(train_x, _numeric_labels(train_age), train_groups, "train")
    test, test_labels, _ = _labelled(test_x, _numeric_labels(test_age), None, "test")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_x has {train.shape[1]} dims but test_x has {test.shape[1]}")
    skipped = _too_few(len(train_labels), len(test_labels))
    if skipped is None and groups is not None and len(np.unique(groups)) < 2:
        skipped = "train_groups holds a single group: no fold can be held out"
    if skipped is not None:
        nan = float("nan")
        return {"age_mae": nan, "age_mae_mean_baseline": nan, "age_lambda": nan, "skipped": skipped}

    folds = _cv_folds(np.zeros(len(train_labels)), groups)

    def validation_loss(penalty: float, fit_rows: np.ndarray, held_rows: np.ndarray) -> float:
        fit_x, held_x = _standardise(train[fit_rows], train[held_rows])
        weights, offset = _fit_ridge(fit_x, train_labels[fit_rows], penalty)
        return float(np.mean(np.abs(held_x @ weights + offset - train_labels[held_rows])))

    penalty = _select(RIDGE_LAMBDA_GRID, folds, validation_loss)
    train_std, test_std = _standardise(train, test)
    weights, offset = _fit_ridge(train_std, train_labels, penalty)
    return {
        "age_mae": float(np.mean(np.abs(test_std @ weights + offset - test_labels))),
        "age_mae_mean_baseline": float(np.mean(np.abs(train_labels.mean() - test_labels))),
        "age_lambda": penalty,
    }
