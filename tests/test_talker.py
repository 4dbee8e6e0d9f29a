"""The talking face end to end: `sclmd talker` (flow sclmd-talker) after the session's pipeline, then `sclmd talk`."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import yaml

from sclmd.cli import EXIT_USER_ERROR
from tests.conftest import TINY, copy_project, deep_merge, sclmd_cli, write_params

TINY_TALKER = {
    "talker_video": {"seconds": 1.2, "train_speakers": 4, "val_speakers": 2, "test_speakers": 2, "workers": 2},
    "talker": {
        "init": None,  # from scratch: the shipped talker's architecture is not the tiny one
        "unet_channels": [16, 32],
        "conformer_layers": 1,
        "ddim_steps": 2,
        "dae_steps": 4,
        "dae_batch_size": 4,
        "speech2latent_steps": 3,
        "speech2latent_batch_size": 2,
        "regressor_steps": 3,
        "regressor_batch_size": 2,
        "warmup_steps": 1,
        "checkpoint_every": 2,
    },
    "evaluate_talker": {
        "probe_steps": 3,
        "probe_batch_size": 8,
        "bootstrap_resamples": 20,
        "strip_frames": 4,
        "noise_codes": 8,
        "inversion_row": True,  # the release's rows (make talker skips the inversion ablation)
    },
}


# --- end to end: after the session's pipeline, `sclmd talker` then `sclmd talk` ------------------


@pytest.fixture(scope="module")
def talker_project(ran_pipeline, tmp_path_factory):
    root, out = ran_pipeline
    assert out.returncode == 0, out.stderr[-3000:]
    project = copy_project(root, tmp_path_factory.mktemp("talker") / "project")
    write_params(project, deep_merge(TINY, TINY_TALKER))
    result = sclmd_cli(project, "talker")
    return project, result


def test_talker_flow_trains_and_evaluates(talker_project):
    project, result = talker_project
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with (project / "data/talker/videos/manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    from sclmd.data.video import video_info

    info = video_info(project / "data/talker/videos" / rows[0]["video"])
    assert info["frames"] == 30 and info["fps"] == 25 and info["audio_rate"] == 16000
    tracks = np.load(project / "data/talker/videos" / rows[0]["tracks"])
    assert {"opening", "rounding", "blink", "yaw", "pitch", "roll", "phone"} <= set(tracks.files)
    assert len(tracks["opening"]) == 30
    metrics = json.loads((project / "reports/talker/metrics.json").read_text())
    assert set(metrics["methods"]) == {
        "real",
        "real_autoencoder",
        "dae_photo",
        "dae_first_frame",
        "dae_photo_inversion",
        "dae_scldm",
        "regression",
        "still",
    }
    assert metrics["methods"]["still"]["lipsync"] == 0.0
    assert metrics["methods"]["still"]["identity_drift"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["methods"]["still"]["distance_to_face"] == pytest.approx(0.0, abs=1e-5)  # it is the face given
    assert set(metrics["noise_minus_inverted_code_lipsync"]) == {"diff", "ci"}
    # The DAE rows are the mean over the noise codes, never one chosen code; the others are one draw.
    assert metrics["noise_codes"] == 8
    row = metrics["methods"]["dae_photo"]
    assert row["draws"] == 8 and len(row["lipsync_by_code"]) == 8
    assert row["lipsync"] == pytest.approx(np.mean(list(row["lipsync_per_clip"].values())), abs=2e-3)
    assert row["lipsync"] == pytest.approx(np.mean(row["lipsync_by_code"]), abs=2e-3)
    assert metrics["methods"]["regression"]["draws"] == metrics["methods"]["dae_first_frame"]["draws"] == 1
    pose = metrics["pose"]
    assert pose["sampled_std_deg"]["yaw"] > 0  # the head samples a drift where speech predicts none
    assert pose["sampled_std_ratio"]["yaw"] == pytest.approx(
        pose["sampled_std_deg"]["yaw"] / pose["true_std_deg"]["yaw"], rel=0.01
    )
    assert set(metrics["lipsync_by_beard"]) >= {"dae_photo", "regression", "real_autoencoder"}
    assert isinstance(metrics["bearded_clips"], list)
    train = json.loads((project / "reports/talker_train/metrics.json").read_text())
    assert set(train["pose_drift"]) == {"std_deg", "sigma_frames"}
    # speech2latent's val error beside the still face's, and the share of the motion it explains
    assert train["val_speech2latent_mse_still_face"] > 0
    assert train["val_speech2latent_explained"] == pytest.approx(
        1 - train["val_speech2latent_mse"] / train["val_speech2latent_mse_still_face"], abs=2e-3
    )
    for row in metrics["methods"].values():
        assert -1.0 <= row["lipsync"] <= 1.0 and row["between_speakers"] >= 0
    sample = video_info(project / "reports/talker/sample.mp4")
    assert sample["frames"] == 30 and sample["width"] == 5 * 128 and sample["audio_rate"] == 16000
    for png in (
        "reports/talker/frame_strip.png",
        "reports/talker/frame_strip_bearded.png",
        "reports/talker/metrics.png",
        "reports/talker_video/frames.png",
        "reports/talker_train/losses.png",
        "reports/talker_train/val_reconstructions.png",
    ):
        assert (project / png).stat().st_size > 5000, png
    assert (project / "models/talker/pretrain/model.safetensors").exists()  # the folder talks on its own
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = [r for r in runs if r.data.tags.get("sclmd.stage") == "talker"]
    assert parent and "lipsync_dae" not in parent[0].data.metrics
    children = {
        r.data.tags.get("sclmd.stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id
    }
    assert {"synth_video", "train_talker", "evaluate_talker"} <= children
    again = sclmd_cli(project, "talker")  # nothing changed: DVC skips every stage
    assert again.returncode == 0 and (again.stdout + again.stderr).count("didn't change, skipping") == 3, again.stderr[
        -2000:
    ]


def test_talk_from_a_voice_file_alone(talker_project, tmp_path):
    project, result = talker_project
    assert result.returncode == 0
    from sclmd.data.video import read_frames, video_info

    voice = next((project / "data/raw/voxsynth/wav").rglob("*.wav"))
    out = sclmd_cli(project, "talk", str(voice), "-o", str(tmp_path / "talk.mp4"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "face: SCLDM" in out.stdout
    info = video_info(tmp_path / "talk.mp4")
    assert info["frames"] == 150 and info["audio_rate"] == 16000  # the whole 6 s voice at 25 fps
    assert info["width"] == info["height"] == 256  # 64 px frames shown 4x
    face = next((project / "data/raw/voxsynth/faces").rglob("*.png"))
    (tmp_path / "pose.csv").write_text("yaw,pitch,roll\n" + "10,0,0\n" * 150)
    out = sclmd_cli(
        project,
        "talk",
        str(voice),
        "--face",
        str(face),
        "--pose",
        str(tmp_path / "pose.csv"),
        "-o",
        str(tmp_path / "posed.mp4"),
        "--scale",
        "1",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pose.csv" in out.stdout
    assert read_frames(tmp_path / "posed.mp4").shape == (150, 64, 64, 3)
    bad = sclmd_cli(project, "talk", str(face), "-o", str(tmp_path / "bad.mp4"))  # an image given as the voice
    assert bad.returncode == EXIT_USER_ERROR and "not readable as audio" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.mp4").exists()
    missing = sclmd_cli(project, "talk", str(voice), "-o", str(tmp_path / "x.mp4"), "--talker", str(tmp_path / "none"))
    assert missing.returncode == EXIT_USER_ERROR and "Run `make talker`" in missing.stderr


def test_the_release_talker_ships_with_its_card_and_talks_where_nothing_was_trained(talker_project, tmp_path):
    """The release flow's last steps (part `talker`) on the session's tiny talker: reports/release/talker/, the
    folder shipped with checksums and a card, then `sclmd talk` using it, and refusing it once altered."""
    project, result = talker_project
    assert result.returncode == 0
    from sclmd.models.shipped import verify_folder
    from sclmd.release import TALKER_TARGET_NAMES, ship_talker, talker_targets, write_talker_report

    work = copy_project(project, tmp_path / "work")  # the talker's project stands for the release workspace
    metrics = write_talker_report(work, work / "reports/release/talker")
    assert {p.name for p in (work / "reports/release/talker").iterdir()} >= {
        "report.md",
        "metrics.json",
        "frame_strip.png",
        "frame_strip_bearded.png",
        "sample.mp4",
        "train_metrics.json",
    }
    targets = talker_targets(metrics)
    assert set(targets) == set(TALKER_TARGET_NAMES)
    assert all(t["value"] is not None and isinstance(t["met"], bool) for t in targets.values())
    shipped = ship_talker(work, work, metrics, hours=0.1)
    assert shipped == work / "weights/dae-talker"
    verify_folder(shipped, ("talker.json", "model.safetensors", "pretrain/model.safetensors"), "the talker")
    card = (shipped / "README.md").read_text()
    sums = json.loads((shipped / "checksums.json").read_text())
    assert "sclmd release --part talker" in card and all(digest in card for digest in sums.values())
    assert "wall time" in card and "## Targets" in card
    shutil.rmtree(work / "models/talker")  # nothing trained here: the shipped talker is the one used
    voice = next((work / "data/raw/voxsynth/wav").rglob("*.wav"))
    face = next((work / "data/raw/voxsynth/faces").rglob("*.png"))
    args = ("talk", str(voice), "--face", str(face), "--scale", "1", "-o")
    out = sclmd_cli(work, *args, str(tmp_path / "shipped.mp4"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "talker: weights/dae-talker (the shipped release talker" in out.stdout
    (shipped / "model.safetensors").write_bytes(b"truncated")
    bad = sclmd_cli(work, *args, str(tmp_path / "bad.mp4"))
    assert bad.returncode == EXIT_USER_ERROR and "does not match its sha256" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad.mp4").exists()


def test_talker_ablations_measure_the_val_speakers_and_retrain_variants(talker_project):
    project, result = talker_project
    assert result.returncode == 0
    rows = [
        "dae",
        "dae_noise_seed1",
        "dae_mean_over_8_noise_seeds",
        "regression",
        "autoencoder",
        "oracle",
        "talker_seed1",
    ]
    out = sclmd_cli(project, "talker-ablations", *[a for r in rows[:-1] for a in ("--only", r)], "--retrain", rows[-1])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    metrics = json.loads((project / "reports/talker_ablations/metrics.json").read_text())
    with (project / "data/talker/videos/manifest.csv").open() as f:
        split_of = {r["speaker_id"]: r["split"] for r in csv.DictReader(f)}
    assert metrics["split"] == "val" and len(metrics["speakers"]) == 2
    assert {split_of[s] for s in metrics["speakers"]} == {"val"}  # never a test speaker: these rows choose
    assert set(metrics["rows"]) == {*rows, "talker_seed1:regression"}
    for row in metrics["rows"].values():
        assert list(row["per_clip"]) == metrics["speakers"]
        assert all(-1.0 <= v <= 1.0 for v in row["per_clip"].values())
        assert row["lipsync"] == pytest.approx(np.mean(list(row["per_clip"].values())), abs=1e-3)
    over_seeds = metrics["rows"]["dae_mean_over_8_noise_seeds"]
    assert len(over_seeds["lipsync_per_draw"]) == 8  # seeds 0-7, of which seeds 0 and 1 are rows of their own
    assert over_seeds["lipsync_per_draw"][0] == pytest.approx(metrics["rows"]["dae"]["lipsync"], abs=1e-3)
    assert over_seeds["lipsync_per_draw"][1] == pytest.approx(metrics["rows"]["dae_noise_seed1"]["lipsync"], abs=1e-3)
    assert metrics["paired"]["dae - regression"]["of"] == 2
    # the retrained variant is its own model, trained with its override by the train_talker stage
    variant = project / "talker_ablations/talker_seed1"
    assert yaml.safe_load((variant / "params.yaml").read_text())["talker"]["seed"] == 1
    assert (variant / "models/talker/model.safetensors").exists()
    assert metrics["models"]["talker_seed1"] != metrics["models"]["shipped"]
    assert metrics["train_seconds"]["talker_seed1"] > 0
    assert "| talker_seed1:regression |" in (project / "reports/talker_ablations/report.md").read_text()
    assert (project / "reports/talker_ablations/lipsync.png").stat().st_size > 5000
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`sclmd.stage` = 'talker_ablations'"
    )
    assert runs and "dae.lipsync" in runs[0].data.metrics
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "reports/talker_ablations")}
    assert "reports/talker_ablations/lipsync.png" in logged
    bad = sclmd_cli(project, "talker-ablations", "--only", "nope", "--retrain", "dae")  # dae is not retrained
    assert bad.returncode == EXIT_USER_ERROR and "unknown talker ablation(s) nope, dae" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_talker_refuses_to_run_before_the_pipeline(tmp_path):
    from tests.conftest import make_project

    project = make_project(tmp_path / "empty", dvc=True)
    out = sclmd_cli(project, "talker")
    assert out.returncode == EXIT_USER_ERROR and "Run `make run` first" in out.stderr and "Traceback" not in out.stderr
    shutil.rmtree(project)
