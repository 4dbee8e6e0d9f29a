"""Metrics on generated faces: the Fréchet distance against hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sclmd.evaluate.metrics import frechet_distance


def test_identical_sets_are_at_zero_and_shifted_sets_at_the_squared_shift() -> None:
    real = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0, 0, 0, 0, 0, 0, 4.0])  # same covariance: only |mu_a - mu_b|^2 = 25 is left
    assert frechet_distance(real + shift, real) == pytest.approx(25.0, rel=1e-6)


def test_collapsed_samples_are_far_from_diverse_real_ones() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(1000, 4))  # unit Gaussian
    collapsed = 0.1 * rng.normal(size=(1000, 4))  # right mean, a tenth of the spread
    # Closed form for isotropic Gaussians: d * (1 - s)^2 = 4 * 0.81; sampling noise on top.
    assert frechet_distance(collapsed, real) == pytest.approx(4 * 0.9**2, rel=0.1)
    assert frechet_distance(collapsed, real) > frechet_distance(rng.normal(size=(1000, 4)), real)


def test_torch_input_and_argument_order() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 5)), 2.0 * rng.normal(size=(300, 5)) + 1.0
    assert frechet_distance(torch.from_numpy(a), b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


@pytest.mark.parametrize(
    ("generated", "real", "message"),
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), "3 dims but real has 4"),
        (np.zeros((1, 3)), np.zeros((10, 3)), "at least two rows"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "NaN"),
        (np.zeros(10), np.zeros((10, 1)), "2-D"),
    ],
)
def test_bad_features_are_rejected(generated, real, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frechet_distance(generated, real)


# --- per-clip values and their bootstrap intervals ---------------------------------------------------


def test_cluster_bootstrap_resamples_whole_speakers_with_a_fixed_seed() -> None:
    from sclmd.evaluate.bootstrap import ClusterBootstrap

    speakers = np.repeat([f"s{i}" for i in range(50)], 2)
    boot = ClusterBootstrap(speakers, resamples=500, seed=3)
    assert boot.weights.shape == (500, 100)
    assert np.all(boot.weights.sum(axis=1) == 100)  # 50 speakers drawn, 2 clips each
    assert np.array_equal(boot.weights[:, 0::2], boot.weights[:, 1::2])  # a speaker's clips go together
    assert np.array_equal(ClusterBootstrap(speakers, 500, seed=3).weights, boot.weights)
    assert np.array_equal(np.sort(boot.rows(0)), np.sort(boot.rows(0)))
    assert len(boot.rows(0)) == 100

    values = np.random.default_rng(0).normal(10.0, 2.0, size=100)
    low, high = boot.mean_ci(values)
    assert low < values.mean() < high
    # clips of a speaker are independent here, so the width is about the textbook 2 x 1.96 x sd / sqrt(n)
    assert (high - low) == pytest.approx(2 * 1.96 * 2.0 / 10, rel=0.35)
    assert boot.mean_ci(np.full(100, 7.0)) == [7.0, 7.0]
    # unlabelled clips (NaN) are left out of each resample's mean
    labelled = np.where(np.arange(100) % 4 == 0, np.nan, values)
    assert boot.mean_ci(labelled)[0] < np.nanmean(labelled) < boot.mean_ci(labelled)[1]
    paired = boot.paired_difference(values + 1.5, values)
    assert paired["diff"] == pytest.approx(1.5) and paired["ci"] == pytest.approx([1.5, 1.5])
    one_speaker = ClusterBootstrap(["a", "a"], resamples=10)
    assert all(np.isnan(one_speaker.mean_ci([1.0, 2.0])))  # no spread to draw from


def test_clustered_clips_widen_the_interval() -> None:
    from sclmd.evaluate.bootstrap import ClusterBootstrap

    rng = np.random.default_rng(1)
    per_speaker = np.repeat(rng.normal(size=40), 4) + 0.1 * rng.normal(size=160)  # 4 near-copies per speaker
    by_clip = ClusterBootstrap(np.arange(160), 1000, seed=0).mean_ci(per_speaker)
    by_speaker = ClusterBootstrap(np.repeat(np.arange(40), 4), 1000, seed=0).mean_ci(per_speaker)
    assert (by_speaker[1] - by_speaker[0]) > 1.6 * (by_clip[1] - by_clip[0])


def test_frechet_interval_from_capped_row_resamples() -> None:
    from sclmd.evaluate.bootstrap import ClusterBootstrap

    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 4))
    generated = rng.normal(size=(100, 4)) + np.array([2.0, 0, 0, 0])
    boot = ClusterBootstrap(np.arange(100), resamples=1000, seed=0)
    draws = boot.statistic_draws(lambda rows: frechet_distance(generated[rows], real), max_resamples=50)
    assert draws.shape == (50,) and np.isfinite(draws).all()
    point = frechet_distance(generated, real)
    assert np.mean(draws > point) > 0.5  # a resample repeats rows: its Fréchet distance is biased upward
    low, high = boot.bias_corrected(draws, point, floor=0.0)
    assert low < point < high and 2.5 < low and high < 6.5
    assert boot.bias_corrected(draws - 10, point - 10, floor=0.0)[0] == 0.0


def test_per_clip_values_average_to_the_metrics() -> None:
    from sclmd.evaluate.judges import Verdicts, judge_accuracy, judge_accuracy_per_clip
    from sclmd.evaluate.metrics import (
        best_of_k_cos,
        best_of_k_per_clip,
        diversity,
        diversity_per_clip,
        feature_distances,
        feature_distances_per_clip,
        speaker_retrieval,
        speaker_retrieval_per_clip,
    )

    rng = np.random.default_rng(3)
    true = rng.normal(size=(30, 8))
    samples = true[:, None] + rng.normal(size=(30, 3, 8))
    per_clip = feature_distances_per_clip(samples[:, 0], true)
    assert {k: float(v.mean()) for k, v in per_clip.items()} == pytest.approx(feature_distances(samples[:, 0], true))
    best = best_of_k_per_clip(samples, true)
    assert best["cos"].mean() == pytest.approx(best_of_k_cos(samples, true)["mean"])
    assert np.all(best["l1"] <= np.abs(_unit(samples[:, 0]) - _unit(true)).sum(axis=1) + 1e-12)
    assert np.all(best["cos"] <= per_clip["cos"] + 1e-9)
    assert diversity_per_clip(samples).mean() == pytest.approx(diversity(samples))
    speakers = np.repeat([f"s{i}" for i in range(15)], 2)
    hits = speaker_retrieval_per_clip(samples[:, 0], speakers, true, speakers, leave_one_out=True)
    whole = speaker_retrieval(samples[:, 0], speakers, true, speakers, leave_one_out=True)
    assert np.nanmean(hits["retrieval_r1"]) == pytest.approx(whole["retrieval_r1"])
    assert set(np.unique(hits["retrieval_r5"])) <= {0.0, 1.0}
    verdicts = Verdicts(rng.uniform(size=30), rng.uniform(20, 70, size=30), true)
    genders = np.where(np.arange(30) % 5 == 0, "?", np.where(np.arange(30) % 2 == 0, "m", "f"))
    ages = np.where(np.arange(30) % 7 == 0, np.nan, rng.uniform(20, 70, size=30))
    accuracy = judge_accuracy_per_clip(verdicts, genders, ages, 5.0)
    assert np.isnan(accuracy["gender_acc"][0]) and np.isnan(accuracy["age_mae"][0])
    assert {k: float(np.nanmean(v)) for k, v in accuracy.items()} == pytest.approx(
        judge_accuracy(verdicts, genders, ages, 5.0)
    )


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_evaluate_rows_carry_intervals_and_targets_read_paired_differences() -> None:
    """The evaluate stage's pieces on random features: every metric has its interval, SCLDM's
    paired differences against the baselines decide the interval-aware targets, the report shows both."""
    import pandas as pd

    from sclmd.evaluate.bootstrap import ClusterBootstrap
    from sclmd.evaluate.judges import Verdicts
    from sclmd.evaluate.report import eval_report
    from sclmd.stages.evaluate import (
        METHOD_NAMES,
        PAPER_TABLE_2,
        PER_CLIP,
        comparisons,
        evaluate_method,
        method_metrics,
        targets,
    )

    rng = np.random.default_rng(4)
    n, k, d = 80, 3, 16
    speakers = np.repeat([f"s{i}" for i in range(n // 2)], 2)
    rows = pd.DataFrame(
        {"speaker_id": speakers, "gender": np.where(np.arange(n) % 4 < 2, "m", "f"), "age": rng.uniform(20, 70, size=n)}
    )
    male = (rows["gender"] == "m").to_numpy().astype(float)
    true_features = _unit(rng.normal(size=(n, d)))
    truth = Verdicts(male, rows["age"].to_numpy(), true_features)
    close = _unit(true_features[:, None] + 0.6 * rng.normal(size=(n, k, d)))  # SCLDM: noisy copies of the truth
    close[:, 1:] = _unit(true_features[:, None] + 0.3 * rng.normal(size=(n, k - 1, d)))  # better later samples
    far = _unit(rng.normal(size=(n, d)))  # a baseline that ignores the voice
    boot = ClusterBootstrap(speakers, resamples=300, seed=0)
    results = {
        "scldm": evaluate_method(
            Verdicts(male, rows["age"].to_numpy() + 3, close[:, 0]),
            truth,
            close,
            rows,
            true_features,
            speakers,
            bootstrap=boot,
            frechet_resamples=30,
        ),
        "speech2face": evaluate_method(
            Verdicts(1 - male, rows["age"].to_numpy() + 20, far),
            truth,
            far[:, None],
            rows,
            true_features,
            speakers,
            bootstrap=boot,
            frechet_resamples=30,
        ),
    }
    scldm = results["scldm"].metrics
    for key in (*PER_CLIP, "frechet"):
        low, high = scldm[f"{key}_ci"]
        assert low <= scldm[key] <= high, key
    assert scldm["gender_acc"] == 1.0 and scldm["gender_acc_ci"] == [1.0, 1.0]
    assert results["speech2face"].metrics["diversity_ci"] == [0.0, 0.0]
    assert method_metrics(truth, truth, true_features[:, None], rows, true_features, speakers, real_faces=True)[
        "cos"
    ] == pytest.approx(0.0, abs=1e-6)  # the old call, no intervals
    compared = comparisons(results, boot)
    assert compared["speech2face"]["best_of_k_cos"]["ci"][1] < 0 and compared["speech2face"]["cos"]["ci"][1] < 0
    methods = {name: r.metrics for name, r in results.items()}
    methods["scldm"].update(two_sample_acc=0.7, two_sample_acc_ci=[0.65, 0.75])
    references = {
        "real": {"gender_acc": 0.98},
        "reconstruction": {"two_sample_acc": 0.8, "gender_acc": 0.95, "age_acc": 0.4, "cos": 11.0},
    }
    met = targets(methods, references, compared)
    assert met["cos_best_of_k_ahead_of_baselines"] and met["l1_single_level_with_baselines"]
    assert met["two_sample_acc_at_most_0.8"] and met["gender_acc_within_0.03_of_judges"]
    assert not met["reconstruction_two_sample_acc_at_most_0.75"] and met["reconstruction_cos_at_most_12"]
    assert "gender_acc_at_least_0.98" not in met and "age_acc_at_least_0.85" not in met
    # SCLDM behind beyond the interval: not level
    behind = targets(
        methods,
        references,
        {"speech2face": comparisons({"scldm": results["speech2face"], "x": results["scldm"]}, boot)["x"]},
    )
    assert not behind["cos_single_level_with_baselines"] and not behind["cos_best_of_k_ahead_of_baselines"]
    metrics = {
        "split": "test",
        "n_clips": n,
        "n_speakers": n // 2,
        "judges": {"source": "test judges"},
        "sampling": {"sampler": "dpm", "steps": 20, "guidance": 1.0, "prior_weight": 0.01, "samples_per_clip": k},
        "bootstrap": {"resamples": 300, "frechet_resamples": 30, "seed": 0},
        "two_sample": {"folds": 2, "epochs": 40},
        "methods": methods,
        "references": {"real": methods["scldm"], "reconstruction": methods["speech2face"]},
        "comparisons": compared,
        "targets": met,
    }
    report = eval_report(metrics, METHOD_NAMES, PAPER_TABLE_2)
    low, high = scldm["cos_ci"]
    assert f"{scldm['cos']:.2f} [{low:.2f}, {high:.2f}]" in report
    assert "| Speech2Face-style | cos (best-of-K) |" in report and "| ahead |" in report
    assert "SCLDM best-of-3 cos ahead of every baseline beyond the interval | yes |" in report
    assert "300 resamples, seed 0" in report
