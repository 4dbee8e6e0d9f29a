"""The voice check: labelled folders read strictly, real-speech agreement computed, `sclmd check-voices` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sclmd.errors import SclmdError
from sclmd.evaluate.real_voices import SHIPPED, Voices, judge_voices, load_voices, read_labels
from tests.conftest import REPO, sclmd_cli
from tests.media import voice_like, write_wav


def folder(tmp_path, labels: str, files=("a.wav", "b.wav")):
    for name in files:
        write_wav(tmp_path / name, voice_like(2.0, 16000), 16000)
    (tmp_path / "labels.csv").write_text(labels)
    return tmp_path


def test_shipped_real_voices_are_labelled_with_provenance():
    voices = read_labels(REPO / SHIPPED)
    assert len(voices) == 9 and sorted({v.gender for v in voices}) == ["f", "m"]
    assert all(v.path.suffix == ".flac" and v.path.is_file() for v in voices)
    readme = (REPO / SHIPPED / "README.md").read_text()
    assert "Debian" in readme and "never for training" in readme


@pytest.mark.parametrize(
    "labels, message",
    [
        (None, "labels.csv: not found"),
        ("", "labels.csv: empty"),
        ("name,sex\na.wav,f\n", "no column 'file' or 'gender'"),
        ("file,gender\na.wav,f\nb.wav,x\n", "line 3: gender 'x' for 'b.wav' is not f or m"),
        ("file,gender\na.wav,f\nmissing.wav,m\n", "line 3: file 'missing.wav' does not exist"),
        ("file,gender\n../a.wav,f\n", "line 2: file '../a.wav' is outside"),
        ("file,gender\na.wav,f\na.wav,m\n", "line 3: file 'a.wav' is listed twice (also on line 2)"),
        ("file,gender,age\na.wav,f,old\n", "line 2: age 'old' for 'a.wav' is not a number"),
        ("file,gender\na.wav,f,extra\n", "line 2: 3 fields, but the header has 2"),
        ("file,gender\n", "no voices listed"),
    ],
)
def test_labels_mistakes_are_errors_naming_the_line(tmp_path, labels, message):
    root = tmp_path / "voices"
    root.mkdir()
    write_wav(tmp_path / "a.wav", voice_like(1.0, 16000), 16000)  # outside the folder
    folder(root, labels or "")
    if labels is None:
        (root / "labels.csv").unlink()
    with pytest.raises(SclmdError) as e:
        read_labels(root)
    assert message in str(e.value)


def test_labels_accept_case_blank_lines_and_optional_age(tmp_path):
    voices = read_labels(folder(tmp_path, "File,Gender,Age,notes\na.wav, M ,34,x\n\nb.wav,f,,y\n"))
    assert [(v.file, v.gender, v.age, v.line) for v in voices] == [("a.wav", "m", 34.0, 2), ("b.wav", "f", None, 4)]


def test_an_unusable_voice_is_a_counted_skip(tmp_path):
    root = folder(tmp_path, "file,gender\na.wav,f\nsilent.wav,m\nbroken.wav,m\n", files=("a.wav",))
    write_wav(root / "silent.wav", np.zeros(32000), 16000)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file")
    voices = load_voices(root, 16000, 3.0)
    assert [v.file for v in voices.voices] == ["a.wav"] and voices.waves.shape == (1, 48000)
    assert sorted(v.file for v, _ in voices.skipped) == ["broken.wav", "silent.wav"]


def test_agreement_is_the_mean_over_voices_of_faces_judged_the_labelled_gender(tmp_path):
    from sclmd.evaluate.judges import JudgeConfig, Judges

    torch.manual_seed(0)
    judges = Judges(JudgeConfig(image_size=16, width=4, feature_dim=8, n_identities=3, age_mean=40, age_std=10))
    root = folder(tmp_path, "file,gender,age\na.wav,f,30\nb.wav,m,\n")
    voices = Voices(read_labels(root), torch.zeros(2, 10))
    faces = torch.rand(2, 5, 3, 16, 16) * 2 - 1
    result = judge_voices(faces, voices, judges)
    male = judges(faces.reshape(10, 3, 16, 16)).male_probability.reshape(2, 5) > 0.5
    expected = [float((~male[0]).mean()), float(male[1].mean())]
    assert [v["agreement"] for v in result["voices"]] == pytest.approx(expected)
    assert result["gender_agreement"] == pytest.approx(np.mean(expected))
    assert result["voices"][0]["share_judged_male"] == pytest.approx(float(male[0].mean()))
    low, high = result["gender_agreement_ci"]
    assert min(expected) - 1e-9 <= low <= result["gender_agreement"] <= high <= max(expected) + 1e-9
    assert result["n_voices"] == 2 and result["samples_per_voice"] == 5 and result["age_mae"] is not None


@pytest.mark.slow
def test_check_voices_cli_on_the_shipped_set_and_on_a_bad_folder(ran_pipeline, tmp_path):
    root = ran_pipeline[0]
    out = sclmd_cli(
        root,
        "check-voices",
        "real_voices",
        "--samples",
        "2",
        "--json",
        str(tmp_path / "r.json"),
        "--grid",
        str(tmp_path / "grid.png"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_voices"] == 9 and len(result["voices"]) == 9 and result["samples_per_voice"] == 2
    assert {"gender_agreement", "gender_agreement_ci", "n_voices", "voices"} <= set(result)
    assert "gender_agreement" in out.stdout and "czech_dita_F.flac" in out.stdout
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_check_voices_cli_names_the_bad_row_before_loading_a_model(tmp_path):
    from typer.testing import CliRunner

    from sclmd.cli import app

    bad = tmp_path / "bad"
    shutil.copytree(REPO / SHIPPED, bad)
    (bad / "labels.csv").write_text("file,gender\nczech_dita_F.flac,female\n")
    out = CliRunner().invoke(app, ["check-voices", str(bad), "--checkpoint", str(tmp_path / "no-model")])
    assert out.exit_code == 2 and "line 2: gender 'female'" in out.output
    assert "Traceback" not in out.output and "no-model" not in out.output
