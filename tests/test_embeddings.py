"""Retrieval recall and the gender/age linear probes of the embedding evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sclmd.evaluate.embeddings import (
    INTERCEPT_PENALTY,
    _fit_logistic,
    _fold_ids,
    probe_age,
    probe_gender,
    retrieval_ranks,
    retrieval_recall,
    similarity_matrix,
)

# --- retrieval ------------------------------------------------------------------------


def test_perfect_embeddings_retrieve_every_face() -> None:
    rng = np.random.default_rng(0)
    faces = rng.normal(size=(20, 16))
    speakers = np.repeat(np.arange(20), 3)
    # Unnormalised on purpose: only the direction may matter.
    speech = faces[speakers] * rng.uniform(0.1, 10.0, size=(60, 1))
    result = retrieval_recall(speech, speakers, faces, np.arange(20))
    assert result["recall@1"] == 1.0 and result["recall@5"] == 1.0 and result["recall@10"] == 1.0
    assert result["chance@1"] == pytest.approx(1 / 20)
    assert result["chance@5"] == pytest.approx(5 / 20)
    assert result["chance@10"] == pytest.approx(10 / 20)
    assert result["n_queries"] == 60 and result["n_gallery"] == 20


def test_random_embeddings_score_chance() -> None:
    rng = np.random.default_rng(1)
    recalls = {k: [] for k in (1, 5, 10)}
    for _ in range(200):
        faces = rng.normal(size=(20, 8))
        speakers = rng.integers(0, 20, size=40)
        result = retrieval_recall(rng.normal(size=(40, 8)), speakers, faces, np.arange(20))
        for k in recalls:
            recalls[k].append(result[f"recall@{k}"])
    # 8000 queries: the standard error is below 0.006 for every k.
    for k, values in recalls.items():
        assert np.mean(values) == pytest.approx(k / 20, abs=0.02)


def test_hand_checked_ranks_and_recall() -> None:
    faces = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    face_speaker = np.array(["ann", "bob", "cid"])
    speech = np.array(
        [
            [10.0, 1.0],  # ann: closest to ann's face             -> rank 1
            [1.0, 0.5],  # bob: ann 0.89 > bob 0.45 > cid         -> rank 2
            [0.0, -1.0],  # cid: cid 0 ties ann 0, bob -1          -> rank 2 (ties count against)
            [-1.0, 0.0],  # ann: ann's face is the least similar   -> rank 3
        ]
    )
    speech_speaker = np.array(["ann", "bob", "cid", "ann"])
    assert retrieval_ranks(speech, speech_speaker, faces, face_speaker).tolist() == [1, 2, 2, 3]
    result = retrieval_recall(speech, speech_speaker, faces, face_speaker, ks=(1, 2, 3, 10))
    assert result["recall@1"] == 0.25
    assert result["recall@2"] == 0.75
    assert result["recall@3"] == 1.0 and result["recall@10"] == 1.0
    assert result["chance@2"] == pytest.approx(2 / 3) and result["chance@10"] == 1.0


def test_ties_count_against_the_query_whatever_the_gallery_order() -> None:
    collapsed = np.ones((6, 4))
    recall = retrieval_recall(collapsed[:5], np.arange(5), collapsed[:5], np.arange(5), ks=(1,))
    assert recall["recall@1"] == 0.0  # not 1/5 by luck of gallery order

    rng = np.random.default_rng(2)
    faces = rng.normal(size=(10, 6)).round(0)  # coarse values: many exact ties
    speech = rng.normal(size=(30, 6)).round(0)
    speakers = rng.integers(0, 10, size=30)
    order = rng.permutation(10)
    ranks = retrieval_ranks(speech, speakers, faces, np.arange(10))
    shuffled = retrieval_ranks(speech, speakers, faces[order], np.arange(10)[order])
    assert ranks.tolist() == shuffled.tolist()


def test_retrieval_rejects_bad_galleries() -> None:
    faces = np.eye(3)
    with pytest.raises(ValueError, match="exactly one face per speaker"):
        retrieval_recall(np.eye(3), [0, 1, 2], faces, [0, 1, 1])
    with pytest.raises(ValueError, match="no face in the gallery"):
        retrieval_recall(np.eye(3), [0, 1, 7], faces, [0, 1, 2])
    with pytest.raises(ValueError, match="dims"):
        retrieval_recall(np.ones((3, 4)), [0, 1, 2], faces, [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall(np.full((3, 3), np.nan), [0, 1, 2], faces, [0, 1, 2])


def test_similarity_matrix_is_cosine() -> None:
    speech = np.array([[3.0, 0.0], [1.0, 1.0]])
    faces = np.array([[1.0, 0.0], [0.0, 2.0]])
    expected = np.array([[1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    np.testing.assert_allclose(similarity_matrix(speech, faces), expected)
    with pytest.raises(ValueError, match="same shape"):
        similarity_matrix(speech, np.eye(3))


# --- probes ---------------------------------------------------------------------------


def attribute_data(rng: np.random.Generator, rows: int, signal: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features with gender on dim 0 and age on dim 1 (scaled by `signal`), plus noise."""
    gender = rng.integers(0, 2, size=rows)
    age = rng.uniform(18, 80, size=rows)
    features = rng.normal(size=(rows, 12))
    features[:, 0] += signal * 4.0 * (2 * gender - 1)
    features[:, 1] += signal * (age - 49.0) / 3.0
    return features, gender, age


def test_probes_read_attributes_off_informative_features() -> None:
    rng = np.random.default_rng(3)
    train_x, train_gender, train_age = attribute_data(rng, 200, signal=1.0)
    test_x, test_gender, test_age = attribute_data(rng, 150, signal=1.0)
    gender = probe_gender(train_x, train_gender, test_x, test_gender)
    assert gender["gender_accuracy"] >= 0.97
    assert 0.35 < gender["gender_majority_baseline"] < 0.65
    age = probe_age(train_x, train_age, test_x, test_age)
    assert age["age_mae"] < 0.3 * age["age_mae_mean_baseline"]
    assert "skipped" not in gender and "skipped" not in age


def test_probes_on_noise_stay_near_their_baselines() -> None:
    rng = np.random.default_rng(4)
    train_x, train_gender, train_age = attribute_data(rng, 200, signal=0.0)
    test_x, test_gender, test_age = attribute_data(rng, 400, signal=0.0)
    gender = probe_gender(train_x, train_gender, test_x, test_gender)
    assert abs(gender["gender_accuracy"] - 0.5) < 0.1
    age = probe_age(train_x, train_age, test_x, test_age)
    assert age["age_mae"] == pytest.approx(age["age_mae_mean_baseline"], rel=0.1)


def test_unknown_labels_are_dropped() -> None:
    rng = np.random.default_rng(5)
    train_x, train_gender, train_age = attribute_data(rng, 40, signal=1.0)
    test_x, test_gender, test_age = attribute_data(rng, 20, signal=1.0)
    clean_gender = probe_gender(train_x, train_gender, test_x, test_gender)
    clean_age = probe_age(train_x, train_age, test_x, test_age)

    # Same rows as letters, with unlabelled rows mixed in (their features are garbage).
    letters = ["m" if g else "F" for g in train_gender]
    noisy_x = np.vstack([train_x, rng.normal(scale=100.0, size=(3, 12))])
    noisy_gender = letters + [None, float("nan"), "?"]
    noisy_age = list(train_age) + [None, float("nan"), np.nan]
    noisy_test_x = np.vstack([test_x, np.zeros((1, 12))])
    assert probe_gender(noisy_x, noisy_gender, noisy_test_x, [*test_gender, None]) == clean_gender
    assert probe_age(noisy_x, noisy_age, noisy_test_x, [*test_age, None]) == clean_age


def test_degenerate_inputs_are_skipped_not_raised() -> None:
    x = np.arange(24.0).reshape(8, 3)
    few = probe_gender(x, [0, 1, 0, None, None, None, None, None], x, [0, 1, 0, 1, 0, 1, 0, 1])
    assert math.isnan(few["gender_accuracy"]) and math.isnan(few["gender_majority_baseline"])
    assert "too few" in few["skipped"]
    one_class = probe_gender(x, ["f"] * 8, x, ["f", "m"] * 4)
    assert math.isnan(one_class["gender_accuracy"]) and "single gender" in one_class["skipped"]
    no_test_ages = probe_age(x, np.arange(8.0), x, [np.nan] * 8)
    assert math.isnan(no_test_ages["age_mae"]) and math.isnan(no_test_ages["age_mae_mean_baseline"])
    assert "too few" in no_test_ages["skipped"]
    with pytest.raises(ValueError, match="gender label"):
        probe_gender(x, ["f", "m", "x", "f", "m", "f", "m", "f"], x, [0] * 8)


def test_probes_are_deterministic() -> None:
    rng = np.random.default_rng(6)
    train_x, train_gender, train_age = attribute_data(rng, 60, signal=0.5)
    test_x, test_gender, test_age = attribute_data(rng, 30, signal=0.5)
    runs = [
        (probe_gender(train_x, train_gender, test_x, test_gender), probe_age(train_x, train_age, test_x, test_age))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_more_dims_than_rows_fit_the_full_space_optimum() -> None:
    rng = np.random.default_rng(7)
    train_x, train_gender, _ = attribute_data(rng, 30, signal=1.0)
    test_x, test_gender, _ = attribute_data(rng, 40, signal=1.0)
    wide = np.hstack([train_x, rng.normal(size=(30, 100))])
    wide_test = np.hstack([test_x, rng.normal(size=(40, 100))])
    result = probe_gender(wide, train_gender, wide_test, test_gender)
    assert result["gender_accuracy"] > result["gender_majority_baseline"]

    # The fit in the rows' span must be stationary for the full 112-dim objective.
    c, labels = 1.0, train_gender.astype(float)
    weights = _fit_logistic(wide, labels, c)
    design = np.hstack([wide, np.ones((30, 1))])
    penalty = np.append(np.full(112, 1.0 / c), INTERCEPT_PENALTY)
    probabilities = 1.0 / (1.0 + np.exp(-(design @ weights)))
    gradient = design.T @ (probabilities - labels) + penalty * weights
    assert np.max(np.abs(gradient)) < 1e-6


def test_folds_keep_each_speaker_whole_and_balance_classes() -> None:
    groups = np.repeat(np.arange(10), 3)  # 10 speakers, 3 clips each
    gender = np.repeat(np.arange(10) % 2, 3).astype(float)
    folds = _fold_ids(gender, groups, 5)
    for speaker in range(10):
        assert len(set(folds[groups == speaker].tolist())) == 1
    for fold in range(5):
        assert sorted(gender[folds == fold].tolist()) == [0.0] * 3 + [1.0] * 3

    rng = np.random.default_rng(8)
    train_x, train_gender, train_age = attribute_data(rng, 30, signal=1.0)
    grouped = probe_age(train_x, train_age, train_x, train_age, train_groups=groups)
    assert grouped["age_mae"] < grouped["age_mae_mean_baseline"]
    assert (
        "single group"
        in probe_gender(train_x, train_gender, train_x, train_gender, train_groups=np.zeros(30))["skipped"]
    )
