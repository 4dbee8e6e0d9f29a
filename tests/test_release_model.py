"""The release SCLDM's last steps on the session's tiny pipeline run: the baselines again with another seed
(the real stages, in a folder sharing everything else), reports/release/, the model shipped to
weights/scldm-voxsynth/, then drawn from by `sclmd generate` with no champion, and gating `sclmd promote`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import copy_project, sclmd_cli
from tests.media import voice_like, write_wav

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def released(ran_pipeline, tmp_path_factory):
    from sclmd.release import seed_workspace, ship_scldm, write_release_report

    root = copy_project(ran_pipeline[0], tmp_path_factory.mktemp("release_model") / "project")
    folder = seed_workspace(root, 1)  # the pipeline's own folder stands for the release workspace
    for stage in ("baselines", "evaluate"):
        out = subprocess.run(
            [sys.executable, "-m", "sclmd", "stage", stage], cwd=folder, capture_output=True, text=True, timeout=900
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = write_release_report(root, root / "reports/release", {1: folder})
    ship_scldm(root, root, summary, hours=0.1)
    return root, summary


def test_the_release_report_has_the_baselines_over_seeds_and_the_verdicts_per_seed(released):
    root, summary = released
    seeds = summary["baseline_seeds"]
    assert seeds["seeds"] == [0, 1]
    # seed 1 really retrained: its baselines' weights differ from seed 0's
    speech2face = seeds["baselines"]["speech2face"]["cos"]["per_seed"]
    assert set(speech2face) == {"0", "1"}
    seed1 = root / "seeds/baselines1/models/baselines"
    assert (seed1 / "speech2face.safetensors").read_bytes() != (
        root / "models/baselines/speech2face.safetensors"
    ).read_bytes()
    for name in ("speech2face", "ar_spm", "wav2pix", "wen"):
        verdicts = seeds["verdicts"][name]
        assert set(verdicts["best_of_k_cos"]) == {"0", "1"}
        assert all(v["verdict"] in ("ahead", "level", "behind") for v in verdicts["cos"].values())
    report = (root / "reports/release/report.md").read_text()
    assert "Table 2 (AVSpeech)" in report and "The baselines over their seeds" in report and "| AR-SPM | 1 |" in report
    assert {p.name for p in (root / "reports/release").iterdir()} >= {"report.md", "metrics.json", "comparison.png"}
    # the release targets, each measured (the tiny run meets few of them; what matters is that each is read)
    assert "## Targets" in report and "## Real speakers' voices" in report
    targets = summary["targets"]
    assert targets["c2st"]["value"] == summary["scldm"]["two_sample_acc"]
    assert targets["real_voices"]["value"] is not None and isinstance(targets["ahead_of_every_seed"]["met"], bool)


def test_the_shipped_release_model_draws_faces_with_no_champion_and_gates_promote(released, tmp_path):
    from sclmd.models.shipped import verify_folder

    root, _ = released
    shipped = root / "weights/scldm-voxsynth"
    verify_folder(shipped, ("sclmd.json", "evaluation.json", "judges/judges.json"), "the release model")
    card = (shipped / "README.md").read_text()
    assert "sclmd release --part scldm" in card and "## Files" in card and "judges/judges.json" in card
    assert "## Targets" in card and "gender agreement nan" not in card  # the real-voice number read, not lost
    wav = write_wav(tmp_path / "voice.wav", voice_like(3.0, 16000), 16000)
    out = sclmd_cli(root, "generate", str(wav), "-o", str(tmp_path / "faces"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "model: weights/scldm-voxsynth (the shipped release model" in out.stdout
    assert (tmp_path / "faces/voice.png").stat().st_size > 0
    # the pipeline's challenger is the very model shipped: level on every gate, so it is not promoted over it
    out = sclmd_cli(root, "promote")
    assert out.returncode == 1 and "shipped release model" in out.stdout + out.stderr, out.stdout[-2000:]
    metrics = json.loads((shipped / "evaluation.json").read_text())
    assert "scldm" in metrics["methods"]
