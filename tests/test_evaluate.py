"""Evaluation: judges, baselines, face metrics, the user study, and the stages end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from sclmd.errors import SclmdError
from sclmd.evaluate.judges import Judges, Verdicts, degrade, judge_accuracy, train_judges
from sclmd.evaluate.metrics import best_of_k_cos, diversity, feature_distances, speaker_retrieval
from sclmd.evaluate.user_study import build_study, read_key, tally
from sclmd.models.baselines import (
    ARSPM,
    BaselineConfig,
    Speech2FaceRegressor,
    load_baselines,
    save_baselines,
    tri_item_loss,
)

# --- face metrics --------------------------------------------------------------------------------


def test_feature_distances_by_hand() -> None:
    true = np.array([[1.0, 0.0], [0.0, 1.0]])
    generated = np.array([[1.0, 0.0], [1.0, 0.0]])  # first clip exact, second orthogonal
    d = feature_distances(generated * 3.0, true)  # scale does not matter: features are unit-normalised
    assert d["cos"] == pytest.approx(50.0)  # (0 + 100) / 2
    assert d["l1"] == pytest.approx(1.0)  # (0 + 2) / 2
    assert d["l2"] == pytest.approx(np.sqrt(2) / 2)
    with pytest.raises(ValueError, match="pair up"):
        feature_distances(generated, true[:1])


def test_best_of_k_and_diversity() -> None:
    true = np.array([[1.0, 0.0], [0.0, 1.0]])
    samples = np.array(
        [
            [[0.0, 1.0], [1.0, 0.0]],  # clip 1: second sample is exact
            [[1.0, 0.0], [1.0, 0.0]],
        ]
    )  # clip 2: both orthogonal, identical
    best = best_of_k_cos(samples, true)
    assert best["mean"] == pytest.approx(50.0) and best["std"] == pytest.approx(50.0)
    # clip 1: its two samples are orthogonal (100); clip 2: identical (0)
    assert diversity(samples) == pytest.approx(50.0)
    assert diversity(samples[:, :1]) == 0.0


def test_speaker_retrieval_finds_speakers_and_leaves_own_face_out() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    speakers = np.repeat([f"s{i}" for i in range(6)], 2)
    faces = centres[np.repeat(np.arange(6), 2)] + 0.05 * rng.normal(size=(12, 16))
    exact = speaker_retrieval(faces, speakers, faces, speakers, leave_one_out=True)
    assert exact["retrieval_r1"] == 1.0 and exact["retrieval_speakers"] == 6
    wrong = speaker_retrieval(faces, np.roll(speakers, 2), faces, speakers)  # every query labelled as another speaker
    assert wrong["retrieval_r1"] == 0.0
    noise = speaker_retrieval(rng.normal(size=(600, 16)), rng.choice(speakers, 600), faces, speakers)
    assert 0.08 < noise["retrieval_r1"] < 0.26 and noise["retrieval_r5"] > 0.7  # chance: 1/6 and 5/6


# --- judges ---------------------------------------------------------------------------------------


def striped_faces(n: int, seed: int):
    """Faces whose 'gender' is a bright top half and whose age is the brightness of the bottom half."""
    g = torch.Generator().manual_seed(seed)
    male = (torch.arange(n) % 2).float()
    age = 20 + 60 * torch.rand(n, generator=g)
    faces = 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    faces[:, :, :16] += (male * 1.2 - 0.6)[:, None, None, None]
    faces[:, :, 16:] += ((age - 50) / 40)[:, None, None, None]
    speakers = [f"s{i // 2}" for i in range(n)]
    return faces.clamp(-1, 1), ["m" if m else "f" for m in male.tolist()], age.numpy(), speakers


def test_judges_learn_real_signals_and_round_trip(tmp_path) -> None:
    faces, genders, ages, speakers = striped_faces(128, 0)
    kwargs = dict(
        image_size=32, width=8, feature_dim=16, epochs=8, batch_size=32, lr=3e-3, max_blur=1.0, colour=0.0, seed=0
    )
    result = train_judges(faces, genders, ages, speakers, **kwargs)
    test_faces, test_genders, test_ages, _ = striped_faces(64, 1)
    verdicts = result.judges(test_faces)
    accuracy = judge_accuracy(verdicts, test_genders, test_ages, 5.0)
    assert accuracy["gender_acc"] >= 0.95
    assert accuracy["age_mae"] < 12  # predicting the mean gives ~15
    assert verdicts.features.shape == (64, 16)
    assert np.allclose(np.linalg.norm(verdicts.features, axis=1), 1.0, atol=1e-5)
    # deterministic for a seed
    again = train_judges(faces, genders, ages, speakers, **kwargs).judges(test_faces)
    assert np.array_equal(again.male_probability, verdicts.male_probability)
    result.judges.save_pretrained(tmp_path / "judges")
    loaded = Judges.from_pretrained(tmp_path / "judges")(test_faces)
    assert np.allclose(loaded.age, verdicts.age)


def test_judges_refuse_one_gender_and_bad_folders(tmp_path) -> None:
    faces, _, ages, speakers = striped_faces(8, 0)
    with pytest.raises(SclmdError, match="both genders"):
        train_judges(
            faces,
            ["f"] * 8,
            ages,
            speakers,
            image_size=32,
            width=4,
            feature_dim=8,
            epochs=1,
            batch_size=4,
            lr=1e-3,
            max_blur=0,
            colour=0,
            seed=0,
        )
    with pytest.raises(SclmdError, match="no judges .*sclmd stage judges"):
        Judges.from_pretrained(tmp_path)


def test_degrade_blurs_flips_and_keeps_the_range() -> None:
    x = torch.zeros(4, 3, 16, 16)
    x[:, :, 8, 8] = 1.0  # a single bright pixel
    out = degrade(x, torch.Generator().manual_seed(0), max_blur=2.0, colour=0.0)
    assert out.shape == x.shape and out.abs().max() <= 1.0
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), atol=1e-4)  # blur keeps the mass
    assert (out > 0).sum() > (x > 0).sum()  # and spreads it


def test_judge_accuracy_skips_unknown_labels() -> None:
    verdicts = Verdicts(np.array([0.9, 0.1, 0.8]), np.array([30.0, 50.0, 70.0]), np.zeros((3, 2)))
    out = judge_accuracy(verdicts, ["m", "?", "f"], [33.0, np.nan, 80.0], 5.0)
    # gender: row 0 right, row 1 unknown (left out), row 2 wrong; age: 30 vs 33 within 5 years,
    # the NaN row left out, 70 vs 80 outside
    assert out["gender_acc"] == 0.5 and out["age_acc"] == 0.5 and out["age_mae"] == 6.5
    assert judge_accuracy(verdicts, ["m", "f", "f"], [33.0, 50.0, 80.0], 5.0)["age_acc"] == pytest.approx(2 / 3)


# --- baselines ------------------------------------------------------------------------------------


def test_ar_spm_starts_at_the_prior_and_tri_item_loss_by_hand(tmp_path) -> None:
    cfg = BaselineConfig(embed_dim=8, latent_shape=(2, 2, 2), hidden=16, latent_scale=0.5)
    prior = torch.arange(8.0).view(2, 2, 2)
    ar = ARSPM(cfg, prior)
    speech = torch.randn(5, 8)
    assert torch.equal(ar(speech), prior.expand(5, -1, -1, -1))  # zero residual at init
    target = torch.ones(1, 8)
    predicted = -torch.ones(1, 8)
    # L2 = 4, L1 = 2, 1 - cos = 2
    assert tri_item_loss(predicted, target, 1.0, 0.0, 0.0) == pytest.approx(4.0)
    assert tri_item_loss(predicted, target, 0.0, 1.0, 0.0) == pytest.approx(2.0)
    assert tri_item_loss(predicted, target, 0.5, 0.5, 1.0) == pytest.approx(5.0)
    s2f = Speech2FaceRegressor(cfg)
    save_baselines(tmp_path / "b", {"speech2face": s2f, "ar_spm": ar}, cfg, {})
    loaded = load_baselines(tmp_path / "b")
    assert torch.allclose(loaded["speech2face"](speech), s2f.eval()(speech))
    assert torch.equal(loaded["ar_spm"].prior, prior)
    with pytest.raises(SclmdError, match="sclmd stage baselines"):
        load_baselines(tmp_path / "missing")


# --- user study -------------------------------------------------------------------------------------


def study(n_clips=4, seed=0):
    rng = np.random.default_rng(0)
    faces = {
        name: rng.integers(0, 255, size=(6, 8, 8, 3), dtype=np.uint8)
        for name in ("true", "scldm", "speech2face", "ar_spm")
    }
    return build_study(faces, [f"c{i}" for i in range(6)], ["scldm", "speech2face", "ar_spm"], n_clips, seed)


def test_study_page_is_self_contained_and_key_is_apart() -> None:
    page, key = study()
    assert page.count('class="item"') == 4 and len(key["items"]) == 4
    # nothing fetched from anywhere: every src is inline, no URLs to other hosts
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]+)"', page))
    # anonymised: no method name appears in the page
    assert not any(name in page for name in ("scldm", "speech2face", "ar_spm"))
    assert key["study_id"] in page
    # shuffled: the methods are not always in the same slots
    assert len({tuple(item["options"].values()) for item in key["items"]}) > 1
    assert study()[1] == key  # same seed, same study


def answers(key, picks, evaluator="ann"):
    """Answers picking, per clip, the letter showing `picks[criterion]` (a method)."""
    entries = []
    for item in key["items"]:
        by_method = {m: letter for letter, m in item["options"].items()}
        entries.append({"item": item["item"], **{c: by_method[m] for c, m in picks.items()}})
    return {
        "format": "sclmd-user-study-answers/1",
        "study_id": key["study_id"],
        "evaluator": evaluator,
        "answers": entries,
    }


def test_tally_means_and_stds_over_evaluators(tmp_path) -> None:
    _, key = study()
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(answers(key, {"realism": "scldm", "identity": "scldm"}, "ann")))
    b.write_text(json.dumps(answers(key, {"realism": "ar_spm", "identity": "scldm"}, "bob")))
    result = tally([a, b], key)
    assert result.evaluators == ["ann", "bob"]
    assert result.preference["identity"]["scldm"] == (1.0, 0.0)
    assert result.preference["realism"]["scldm"] == (0.5, 0.5)
    assert result.preference["realism"]["speech2face"] == (0.0, 0.0)
    assert "scldm" in result.table()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "something else"}), "not an sclmd user-study answers file"),
        ("FOREIGN", "answers to another study"),
        ("BADCHOICE", "realism must be one of A, B, C"),
        ("BADITEM", "'item' must be a clip number 1..4"),
    ],
)
def test_tally_rejects_malformed_and_foreign_answers(tmp_path, content, message) -> None:
    _, key = study()
    good = answers(key, {"realism": "scldm", "identity": "scldm"})
    if content == "FOREIGN":
        content = json.dumps({**good, "study_id": "0123456789abcdef"})
    elif content == "BADCHOICE":
        good["answers"][1]["realism"] = "Z"
        content = json.dumps(good)
    elif content == "BADITEM":
        good["answers"][0]["item"] = 99
        content = json.dumps(good)
    path = tmp_path / "answers.json"
    path.write_text(content)
    with pytest.raises(SclmdError, match=re.escape(message)):
        tally([path], key)
    assert str(path) in str(pytest.raises(SclmdError, tally, [path], key).value)


# --- the stages, end to end on the tiny project ------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated_project(tiny_project, tmp_path_factory):
    import shutil

    from sclmd.stages import run_stage
    from tests.conftest import make_project

    root = make_project(tmp_path_factory.mktemp("eval") / "project")
    shutil.copytree(tiny_project / "data/prepared", root / "data/prepared")
    shutil.copytree(tiny_project / "data/raw/voxsynth", root / "data/raw/voxsynth")  # the attribute oracle's
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name in ("judges", "pretrain", "prior", "train_ldm", "baselines", "evaluate", "user_study"):
            run_stage(name, root)
    finally:
        os.chdir(cwd)
    return root


def test_evaluate_writes_the_metrics_report_and_plots(evaluated_project):
    root = evaluated_project
    metrics = json.loads((root / "reports/eval/metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_clips"] >= 2
    assert set(metrics["methods"]) == {"scldm", "speech2face", "ar_spm", "wav2pix", "wen"}
    assert metrics["judges"]["source"].startswith("trained")
    for name, row in metrics["methods"].items():
        for key in ("l1", "l2", "cos", "gender_acc", "age_acc", "frechet", "retrieval_r1", "retrieval_r5"):
            assert key in row, (name, key)
        assert 0 <= row["cos"] <= 200 and 0 <= row["retrieval_r1"] <= row["retrieval_r5"] <= 1
    assert metrics["methods"]["speech2face"]["diversity"] == 0.0  # deterministic baseline
    assert metrics["references"]["real"]["cos"] == pytest.approx(0.0, abs=1e-4)
    # VoxSynth: the attribute oracle, faces of strangers with the speaker's gender, age and size, judged as a row
    oracle = metrics["references"]["attribute_oracle"]
    assert 0 <= oracle["gender_acc"] <= 1 and oracle["diversity"] > 0 and "reference_notes" not in metrics
    # every metric of every row carries its bootstrap interval; every row its two-sample accuracy
    for name, row in {**metrics["methods"], **metrics["references"]}.items():
        for key in (
            "l1",
            "l2",
            "cos",
            "gender_acc",
            "age_acc",
            "age_mae",
            "retrieval_r1",
            "retrieval_r5",
            "diversity",
            "best_of_k_cos",
            "frechet",
            "two_sample_acc",
        ):
            assert len(row[f"{key}_ci"]) == 2, (name, key)
        assert np.isnan(row["two_sample_acc"]) or 0 <= row["two_sample_acc"] <= 1
    assert metrics["bootstrap"]["unit"] == "speaker" and metrics["two_sample"]["folds"] == 2
    assert set(metrics["targets"]) == {
        "age_acc_at_least_0.3",
        "retrieval_r1_at_least_0.08",
        "two_sample_acc_at_most_0.8",
        "gender_acc_within_0.03_of_judges",
        "reconstruction_two_sample_acc_at_most_0.75",
        "reconstruction_gender_acc_at_least_0.9",
        "reconstruction_age_acc_at_least_0.35",
        "reconstruction_cos_at_most_12",
        *(
            f"{key}_{what}"
            for key in ("cos", "l1", "l2")
            for what in ("best_of_k_ahead_of_baselines", "single_level_with_baselines")
        ),
        "frechet_ahead_of_baselines",
    }
    assert set(metrics["comparisons"]) == {"speech2face", "ar_spm", "wav2pix", "wen"}
    highs = [c["best_of_k_cos"]["ci"][1] for c in metrics["comparisons"].values()]
    assert metrics["targets"]["cos_best_of_k_ahead_of_baselines"] == all(h < 0 for h in highs)
    report = (root / "reports/eval/report.md").read_text()
    assert "| SCLDM (ours) |" in report and "What differs from the paper" in report
    # the paper's Tables 2 and 3, each of its rows with ours beside it, failed GAN runs marked as such
    assert "Paper Table 2 (AVSpeech)" in report and "Paper Table 3 (VoxCeleb)" in report
    assert "| Wen et al., paper | 59.82 | 2.410 | 42.54 | 97.4 | 72.5 |" in report
    assert "| SCLDM, paper | 35.01 |" in report and "| AR-SPM, ours (not in the paper's table)" in report
    assert "The paper's finding, tested here" in report
    baselines = json.loads((root / "reports/baselines/metrics.json").read_text())
    for gan in ("wav2pix", "wen"):
        status = baselines[gan]["status"]
        assert status in ("ok", "collapsed", "diverged") and metrics["methods"][gan]["training_status"] == status
        if status != "ok":  # a tiny run may well collapse: the report must say so rather than pass it off
            assert f"training {status}" in report and f"**{status.upper()}**" in report
    assert {"gan_val_faces.png", "wav2pix_losses.png", "wen_losses.png"} <= {
        p.name for p in (root / "reports/baselines/plots").iterdir()
    }
    assert sorted(p.name for p in (root / "reports/eval/plots").iterdir()) == ["comparison.png", "methods.png"]
    judges = json.loads((root / "reports/judges/metrics.json").read_text())
    assert judges["trained_here"] is True and 0 <= judges["test"]["gender_acc"] <= 1


def test_user_study_page_and_tally_cli(evaluated_project, tmp_path):
    root = evaluated_project
    page = (root / "reports/user_study/page/index.html").read_text()
    key = read_key(root / "reports/user_study/answer_key.json")
    assert len(key["items"]) == min(3, json.loads((root / "reports/eval/metrics.json").read_text())["n_clips"])
    assert key["study_id"] in page and "answer_key" not in page
    path = tmp_path / "answers-ann.json"
    path.write_text(json.dumps(answers(key, {"realism": "speech2face", "identity": "scldm"})))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sclmd",
            "user-study",
            "tally",
            str(path),
            "--key",
            str(root / "reports/user_study/answer_key.json"),
            "--out",
            str(tmp_path / "tally"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "tally/tally.json").read_text())
    assert result["preference"]["identity"]["scldm"]["mean"] == 1.0
    assert (tmp_path / "tally/tally.png").stat().st_size > 0
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sclmd",
            "user-study",
            "tally",
            str(bad),
            "--key",
            str(root / "reports/user_study/answer_key.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "bad.json: not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_ablations_flow_runs_every_variant_and_writes_the_reports(evaluated_project):
    from flows.ablations import sclmd_ablations

    root = evaluated_project
    summary = sclmd_ablations(root=str(root))
    assert set(summary["variants"]) == {"base", "cp", "pn", "full", "scratch", "pw0.001", "pw0.1", "pw1"}
    assert [row["prior_weight"] for row in summary["sweep"]] == [0.0, 0.001, 0.01, 0.1, 1.0]
    assert [row["variant"] for row in summary["sweep"]] == ["cp", "pw0.001", "full", "pw0.1", "pw1"]
    # "full" is the project's own evaluated model, not retrained
    full = json.loads((root / "reports/eval/metrics.json").read_text())["methods"]["scldm"]
    assert summary["table4"]["full"] == full
    work = root / "ablations"
    # no-CP pre-training ran once (in base) and was shared with pn; cp reused the project's
    assert (work / "base/models/pretrain").is_dir() and not (work / "base/models/pretrain").is_symlink()
    assert (work / "pn/models/pretrain").resolve() == (work / "base/models/pretrain").resolve()
    assert (work / "cp/models/pretrain").resolve() == (root / "models/pretrain").resolve()
    import yaml

    assert yaml.safe_load((work / "pn/params.yaml").read_text())["pretrain"]["contrastive_weight"] == 0.0
    assert yaml.safe_load((work / "pw0.1/params.yaml").read_text())["ldm"]["prior_weight"] == 0.1
    assert yaml.safe_load((work / "scratch/params.yaml").read_text())["pretrain"]["face_init"] is None
    assert set(summary["first_stage"]) == {"full", "scratch"}
    # variants skip the guidance check and sample at the scale the project's model chose on val
    chosen = json.loads((root / "reports/ldm/metrics.json").read_text())["guidance"]
    assert yaml.safe_load((work / "pn/params.yaml").read_text())["ldm"]["guidance"] == chosen
    out = root / "reports/ablations"
    assert sorted(p.name for p in out.iterdir()) == ["ablations.png", "metrics.json", "report.md", "sweep.png"]
    report = (out / "report.md").read_text()
    assert "| +CP |" in report and "| 0.1 |" in report and "contrastive_weight: 0" in report
    assert "## The shipped first stage" in report and "face_init: null" in report
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("sclmd").experiment_id

    def stages_of(variant: str) -> set[str]:
        return {r.info.run_name for r in client.search_runs([experiment], f"tags.`sclmd.variant` = '{variant}'")}

    assert stages_of("base") == {"pretrain", "prior", "baselines", "train_ldm", "evaluate"}
    assert stages_of("pn") == {"train_ldm", "evaluate"}  # pre-training, prior and baselines shared with base
    logged = client.search_runs([experiment], "attributes.run_name = 'ablations'")[0]
    assert "pw0.1.cos" in logged.data.metrics
    assert {a.path for a in client.list_artifacts(logged.info.run_id, "reports/ablations")} >= {
        "reports/ablations/sweep.png",
        "reports/ablations/ablations.png",
        "reports/ablations/report.md",
    }


def test_ablations_refuse_unknown_variants_and_unevaluated_projects(evaluated_project, tmp_path):
    from flows.ablations import sclmd_ablations

    with pytest.raises(SclmdError, match="unknown variant"):
        sclmd_ablations(only=["nope"], root=str(evaluated_project))
    (tmp_path / "params.yaml").write_text((evaluated_project / "params.yaml").read_text())
    with pytest.raises(SclmdError, match="make run"):
        sclmd_ablations(root=str(tmp_path))


def test_judges_stage_takes_pretrained_judges_and_names_them(evaluated_project, tmp_path):
    import shutil

    from sclmd.config import load_params
    from sclmd.stages import judges as judges_stage
    from tests.conftest import make_project

    root = make_project(tmp_path / "project", {"judges": {"pretrained": str(evaluated_project / "models/judges")}})
    shutil.copytree(evaluated_project / "data/prepared", root / "data/prepared")
    metrics = judges_stage.run(load_params(root / "params.yaml"), root)
    assert metrics["trained_here"] is False
    assert metrics["source"] == json.loads((evaluated_project / "models/judges/judges.json").read_text())["source"]
    assert (root / "models/judges/identity.safetensors").read_bytes() == (
        evaluated_project / "models/judges/identity.safetensors"
    ).read_bytes()
    broken = make_project(tmp_path / "broken", {"judges": {"pretrained": str(tmp_path / "nowhere")}})
    with pytest.raises(SclmdError, match="nowhere: no judges"):
        judges_stage.run(load_params(broken / "params.yaml"), broken)


def test_judge_cli_with_a_runs_trained_judges_reads_a_drawn_face(evaluated_project, tmp_path):
    """`sclmd judge --judges models/judges`: the whole picture judged as a face, as generated faces are."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from sclmd.data.store import PackedClips

    face = PackedClips(evaluated_project / "data/prepared", "test").__getitems__([0]).face[0].numpy()
    Image.fromarray(np.asarray(face)).save(tmp_path / "drawn.png")
    out = tmp_path / "verdicts.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sclmd",
            "judge",
            str(tmp_path / "drawn.png"),
            "--judges",
            str(evaluated_project / "models/judges"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    verdict = json.loads(out.read_text())["images"][0]["faces"][0]
    assert verdict["gender"] in ("female", "male") and 0 <= verdict["age"] <= 120
    assert "drawn.png: " in run.stdout


def test_generate_draws_with_every_baseline_through_the_method_switch(evaluated_project, tmp_path):
    import soundfile as sf
    from PIL import Image

    from sclmd.generate import generate_files

    root = evaluated_project
    t = np.arange(16000 * 3) / 16000
    sf.write(tmp_path / "voice.wav", 0.3 * np.sin(2 * np.pi * 160 * t), 16000)
    drawn = {}
    for method in ("speech2face", "ar_spm", "wav2pix", "wen"):
        (outcome,) = generate_files(
            [tmp_path / "voice.wav"],
            tmp_path / method,
            root / "models/ldm",
            method=method,
            baselines=root / "models/baselines",
            progress=False,
        )
        assert outcome.error is None and outcome.outputs == [tmp_path / method / "voice.png"]
        with Image.open(outcome.outputs[0]) as image:
            assert image.size == (64, 64)
            drawn[method] = np.asarray(image)
    assert not np.array_equal(drawn["wav2pix"], drawn["wen"])  # two different models drew them

    def generate(*args):
        return subprocess.run(
            [sys.executable, "-m", "sclmd", "generate", str(tmp_path / "voice.wav"), *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
        )

    out = generate("-o", str(tmp_path / "cli"), "--method", "wen", "--seed", "5")  # no seed in a GAN: same face
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cli/voice.png").read_bytes() == (tmp_path / "wen/voice.png").read_bytes()
    bad = generate("-o", str(tmp_path / "bad"), "--method", "pix2pix")
    assert bad.returncode != 0 and "--method 'pix2pix' is not one of: scldm, speech2face" in bad.stderr
    assert "Traceback" not in bad.stderr
    with pytest.raises(SclmdError, match="draws one face per voice"):
        generate_files(
            [tmp_path / "voice.wav"],
            tmp_path / "many",
            root / "models/ldm",
            method="wen",
            samples=3,
            baselines=root / "models/baselines",
        )
