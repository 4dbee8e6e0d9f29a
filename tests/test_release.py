"""The release flow (`sclmd release`): the first stage trained in its own workspace, killed and resumed,
shipped with checksums and a model card; `pretrain.face_init` starting from it; clear errors for a
missing, altered or misfitting weights folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sclmd.errors import SclmdError
from tests.conftest import REPO, deep_merge, make_project, wait_for

TINY_RELEASE = {
    "first_stage": {
        "train_speakers": 16,
        "faces_per_speaker": 2,
        "val_speakers": 4,
        "test_speakers": 4,
        "batch_size": 4,
        "max_steps": 20,
        "warmup_steps": 2,
        "evaluate_every": 10,
        "evaluate_faces": 8,
        "checkpoint_every": 5,
        "log_every": 5,
        "adversarial_start": 5,
        "perceptual": "dssim",
        "decoder_width": 1.0,
    }
}


def release_project(root: Path, overrides: dict | None = None) -> Path:
    make_project(root)
    (root / "release.yaml").write_text(yaml.safe_dump(deep_merge(TINY_RELEASE, overrides or {})))
    return root


def release(root: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "sclmd", "release", "--part", "first-stage", *args]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    if not wait:  # its own process group: the kill reaches the stage's process too
        return subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A tiny project after one uninterrupted `sclmd release --part first-stage`."""
    root = release_project(tmp_path_factory.mktemp("release") / "straight")
    code, out = release(root)
    assert code == 0, out[-4000:]
    return root


def test_release_ships_the_first_stage_with_checksums_and_a_model_card(released):
    from sclmd.models.shipped import load_face_autoencoder
    from sclmd.train.checkpoints import file_sha256

    shipped = released / "weights/face-autoencoder"
    assert sorted(p.name for p in shipped.iterdir()) == [
        "README.md",
        "checksums.json",
        "config.json",
        "curves.png",
        "model.safetensors",
        "quality_vs_hours.png",
        "reconstructions.png",
    ]
    sums = json.loads((shipped / "checksums.json").read_text())
    assert sums == {name: file_sha256(shipped / name) for name in sums}
    card = (shipped / "README.md").read_text()
    config = json.loads((shipped / "config.json").read_text())
    metrics = config["metrics"]
    for needle in (
        "sclmd release --part first-stage",
        metrics["data_sha256"]["train"],
        sums["model.safetensors"],
        f"{metrics['test']['c2st']:.3f}",
        "cores",
        "## Reproduce",
    ):
        assert needle in card
    assert metrics["steps"] == 20 and metrics["chosen_step"] in (10, 20)  # chosen among the evaluations
    assert 0.0 <= metrics["test"]["c2st"] <= 1.0 and len(metrics["test"]["c2st_ci"]) == 2
    face, encoder, decoder = load_face_autoencoder(shipped)
    assert face.decoder_width == 1.0 and "to_latent.weight" in encoder and decoder
    # the val curve, one point per evaluation, kept for the hours-against-quality plot
    history = json.loads((released / "release/reports/first_stage/history.json").read_text())
    assert [step for step, _ in history["val_c2st"]] == [10, 20]
    assert history["seconds"][-1][1] > 0


def test_release_logs_its_curves_to_mlflow_and_skips_a_finished_stage(released):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{released / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sclmd").experiment_id])
    names = {r.info.run_name: r for r in runs}
    assert {"release", "first_stage"} <= set(names)
    curve = client.get_metric_history(names["first_stage"].info.run_id, "first_stage/val_c2st")
    assert [m.step for m in curve] == [10, 20]
    artifacts = [a.path for a in client.list_artifacts(names["first_stage"].info.run_id, "first_stage/progress")]
    assert len(artifacts) == 2  # a val grid per evaluation
    from flows.release import stage_seconds

    seconds = stage_seconds(released / "release", "first_stage")  # the card's hours add these up
    assert 0 < seconds < 900

    code, out = release(released)
    assert code == 0, out[-3000:]
    assert "first_stage=skipped" in out


@pytest.mark.slow
def test_killed_release_resumes_to_the_same_weights(released, tmp_path):
    killed = release_project(tmp_path / "killed")
    proc = release(killed, wait=False)
    wait_for(killed / "release/checkpoints/first_stage/step-0000005", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "weights").exists()

    code, out = release(killed)
    assert code == 0, out[-3000:]
    assert "resuming from" in out
    for rel in ("release/models/first_stage/model.safetensors", "weights/face-autoencoder/model.safetensors"):
        assert (killed / rel).read_bytes() == (released / rel).read_bytes(), rel


def test_bad_overrides_are_refused_before_anything_runs(tmp_path):
    root = release_project(tmp_path / "bad", {"first_stage": {"max_step": 3}})
    code, out = release(root)
    assert code == 2 and "release.yaml" in out and "max_step" in out and "Traceback" not in out
    assert not (root / "release").exists()
    (root / "release.yaml").unlink()
    code, out = release(root)
    assert code == 2 and "release.yaml" in out and "missing" in out


def pretrain_params(face_init: str | None, **extra):
    from sclmd.config import PretrainParams

    return PretrainParams(face_init=face_init, size="small", decoder_width=1.0, autoencoder_steps=0, **extra)


def test_face_init_starts_the_latent_blocks_and_decoder_from_the_first_stage(released):
    from sclmd.config import DataParams
    from sclmd.models.shipped import load_face_autoencoder
    from sclmd.train.pretrain import build_model

    _, encoder, decoder = load_face_autoencoder(released / "weights/face-autoencoder")
    model = build_model(pretrain_params("weights/face-autoencoder"), DataParams(), released)
    assert torch.equal(model.face_encoder.to_latent.weight, encoder["to_latent.weight"])
    assert torch.equal(model.face_encoder.conv1_1.weight, encoder["conv1_1.weight"])
    assert all(torch.equal(v, decoder[k]) for k, v in model.face_decoder.state_dict().items())
    # the embedding branch is pre-training's own (the first stage never trained it)
    scratch = build_model(pretrain_params(None), DataParams(), released)
    assert torch.equal(model.face_encoder.conv5_3.weight, scratch.face_encoder.conv5_3.weight)
    assert not torch.equal(model.face_decoder.last_layer, scratch.face_decoder.last_layer)


def test_a_missing_altered_or_misfitting_first_stage_is_refused_clearly(released, tmp_path):
    import shutil

    from sclmd.config import DataParams
    from sclmd.train.pretrain import build_model

    with pytest.raises(SclmdError, match=r"not found.*git checkout -- .*sclmd release"):
        build_model(pretrain_params("nowhere/face-autoencoder"), DataParams(), tmp_path)
    copy = tmp_path / "weights/face-autoencoder"
    shutil.copytree(released / "weights/face-autoencoder", copy)
    with pytest.raises(SclmdError, match="decoder_width: the first stage has 1.0, params give 3.0"):
        build_model(pretrain_params(str(copy)).model_copy(update={"decoder_width": 3.0}), DataParams(), tmp_path)
    with open(copy / "model.safetensors", "r+b") as f:  # one flipped byte deep in the weights
        f.seek(-9, 2)
        byte = f.read(1)
        f.seek(-9, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SclmdError, match="does not match its sha256"):
        build_model(pretrain_params(str(copy)), DataParams(), tmp_path)
    (copy / "model.safetensors").unlink()
    with pytest.raises(SclmdError, match="model.safetensors, checksums.json missing|model.safetensors missing"):
        build_model(pretrain_params(str(copy)), DataParams(), tmp_path)


def test_pretrain_keeps_a_frozen_first_stage_as_shipped(released, tiny_project, tmp_path):
    """The joint phase trains the speech encoder and the face embedding; z and the decoder stay shipped."""
    import shutil

    from sclmd.config import DataParams
    from sclmd.models.shipped import load_face_autoencoder
    from sclmd.train.checkpoints import CheckpointStore
    from sclmd.train.pretrain import build_model, train

    params = pretrain_params(
        str(released / "weights/face-autoencoder"),
        batch_size=4,
        max_steps=3,
        checkpoint_every=10,
        log_every=1,
        perceptual="dssim",
    )
    shutil.copytree(tiny_project / "data/prepared", tmp_path / "prepared")
    start = build_model(params, DataParams(), tmp_path)
    result = train(params, DataParams(), tmp_path / "prepared", CheckpointStore(tmp_path / "ck", "k"))
    _, encoder, decoder = load_face_autoencoder(released / "weights/face-autoencoder")
    trained = result.model
    assert all(torch.equal(v, decoder[k]) for k, v in trained.face_decoder.state_dict().items())
    for key in ("to_latent.weight", "conv1_1.weight", "norm2_2.running_mean", "latent_norm.running_var"):
        assert torch.equal(trained.face_encoder.state_dict()[key], encoder[key]), key
    assert not torch.equal(trained.face_encoder.conv5_3.weight, start.face_encoder.conv5_3.weight)
    assert "loss_mae" not in result.history and "loss_contrastive" in result.history

    # the autoencoder phase is for training one from scratch: a frozen first stage skips it
    again = train(
        params.model_copy(update={"autoencoder_steps": 2, "adversarial_weight": 0.5}),
        DataParams(),
        tmp_path / "prepared",
        CheckpointStore(tmp_path / "ck2", "k"),
    )
    assert again.steps == 3 and "loss_adversarial" not in again.history
    assert all(torch.equal(v, decoder[k]) for k, v in again.model.face_decoder.state_dict().items())


def test_release_yaml_is_valid_and_keeps_make_runs_first_stage_consistent():
    from sclmd.release import release_params

    merged = release_params(REPO)
    assert merged["first_stage"]["max_steps"] >= 10_000  # the release trains long: hours, not minutes
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if params["pretrain"].get("face_init"):  # make run's start must fit the shipped first stage
        shipped = json.loads((REPO / params["pretrain"]["face_init"] / "config.json").read_text())["face_config"]
        assert shipped["decoder_width"] == params["pretrain"]["decoder_width"]
        assert shipped["latent_channels"] == params["pretrain"]["latent_channels"]


def test_commands_choose_the_champion_else_the_shipped_release_model_else_the_workspace(tmp_path):
    """The order `generate`, `check-voices`, `demo` and `talk` share (the champion case: tests/test_operate.py)."""
    from sclmd.model_choice import choose_model
    from sclmd.models.shipped import write_checksums

    root = make_project(tmp_path / "p")
    release = tmp_path / "weights/scldm-voxsynth"
    with pytest.raises(SclmdError, match="no model to use.*git checkout -- weights/scldm-voxsynth.*make run"):
        choose_model(root, release=release)
    (root / "models/ldm").mkdir(parents=True)
    (root / "models/ldm/sclmd.json").write_text("{}")
    assert choose_model(root, release=release).checkpoint == root / "models/ldm"
    (release / "judges").mkdir(parents=True)
    (release / "sclmd.json").write_text("{}")
    (release / "judges/judges.json").write_text("{}")
    write_checksums(release)
    chosen = choose_model(root, release=release)
    assert chosen.checkpoint == release and "shipped release model" in chosen.says
    assert chosen.judges == release / "judges"
    assert choose_model(root, Path("mine"), release=release).checkpoint == Path("mine")
    assert choose_model(root, model="models:/x@y", release=release).model_uri == "models:/x@y"
    (release / "judges/judges.json").write_text('{"altered": 1}')
    with pytest.raises(SclmdError, match="judges/judges.json: does not match its sha256"):
        choose_model(root, release=release)


def test_talk_chooses_the_named_talker_else_the_workspace_else_the_shipped_release_talker(tmp_path):
    """`sclmd talk`'s order: --talker; models/talker (`make talker`); weights/dae-talker (checked); else an error."""
    from sclmd.model_choice import choose_talker
    from sclmd.models.shipped import write_checksums

    root = make_project(tmp_path / "p")
    release = tmp_path / "weights/dae-talker"
    with pytest.raises(SclmdError, match="no talker to use.*make talker.*git checkout -- weights/dae-talker"):
        choose_talker(root, release=release)
    (release / "pretrain").mkdir(parents=True)
    for name in ("talker.json", "model.safetensors", "pretrain/model.safetensors"):
        (release / name).write_text(name)
    write_checksums(release)
    chosen = choose_talker(root, release=release)
    assert chosen.folder == release and "shipped release talker" in chosen.says
    (release / "pretrain/model.safetensors").write_text("truncated")
    with pytest.raises(SclmdError, match="pretrain/model.safetensors: does not match its sha256"):
        choose_talker(root, release=release)
    (release / "model.safetensors").unlink()
    with pytest.raises(SclmdError, match="incomplete: model.safetensors missing"):
        choose_talker(root, release=release)
    (root / "models/talker").mkdir(parents=True)
    (root / "models/talker/talker.json").write_text("{}")
    assert choose_talker(root, release=release).folder == root / "models/talker"  # a local `make talker` first
    assert choose_talker(root, Path("mine"), release=release).folder == Path("mine")


def test_release_targets_read_each_measurement_against_its_level():
    from sclmd.release import release_targets

    summary = {
        "scldm": {"two_sample_acc": 0.74, "gender_acc": 0.95, "retrieval_r1": 0.09},
        "references": {
            "real": {"gender_acc": 0.96, "age_acc": 0.40},
            "reconstruction": {"gender_acc": 0.93, "age_acc": 0.41},
        },
        "first_stage": {"test": {"c2st": 0.66}},
        "real_voices": {"methods": {"scldm": {"gender_agreement": 0.9}}},
        "baseline_seeds": {"verdicts": {"wen": {"ahead_with_every_seed": True}, "ar_spm": {}}},
    }
    t = release_targets(summary)
    assert t["c2st"]["met"] and not t["first_stage_c2st"]["met"]  # <= 0.75; 0.66 > 0.65
    assert t["gender_gap"]["met"] and abs(t["gender_gap"]["value"] + 0.01) < 1e-9  # within 0.02 of the judges
    assert not t["retrieval_r1"]["met"] and t["real_voices"]["met"]  # 0.09 < 0.10; 0.90 >= 0.90
    assert not t["ahead_of_every_seed"]["met"]  # one baseline without the verdict
    # the first stage's reconstructions: the worse of the gender and age gaps to the real faces' reading
    assert not t["first_stage_gender_age"]["met"] and abs(t["first_stage_gender_age"]["value"] + 0.03) < 1e-9
    summary["real_voices"] = {"skipped": "no voices"}
    assert release_targets(summary)["real_voices"] == {"value": None, "met": False}
    assert "oracle" not in t["retrieval_r1"]  # no attribute oracle (not VoxSynth): nothing said about reach

    # VoxSynth's attribute oracle bounds what a voice can tell: a level it misses is out of reach on the data
    summary["references"]["attribute_oracle"] = {
        "gender_acc": 0.99,
        "retrieval_r1": 0.01,
        "retrieval_r1_ci": [0.0, 0.03],
        "cos": 58.0,
    }
    summary["baseline_seeds"]["baselines"] = {"speech2face": {"cos": {"mean": 56.0}}, "wen": {"cos": {"mean": 66.0}}}
    t = release_targets(summary)
    assert t["retrieval_r1"]["reachable"] is False and t["retrieval_r1"]["oracle"] == 0.01
    assert t["gender_gap"]["reachable"] is True and abs(t["gender_gap"]["oracle"] - 0.03) < 1e-9
    assert t["ahead_of_every_seed"]["reachable"] is False  # the oracle's single sample 58 trails the regression's 56
    assert "reachable" not in t["c2st"]
    from sclmd.release import _target_lines

    text = "\n".join(_target_lines(t))
    assert "out of reach on this data" in text and "the attribute oracle" in text


def test_release_report_reads_the_first_stage_it_started_from_when_it_trained_none(tmp_path):
    """`--part scldm` alone: the first-stage target is read from face_init's model card, the workspace's own
    first-stage run wins when there is one."""
    from sclmd.release import first_stage_metrics

    work = tmp_path / "release"
    (work / "reports/first_stage").mkdir(parents=True)
    shipped = tmp_path / "shipped-ae"
    shipped.mkdir()
    (shipped / "config.json").write_text(json.dumps({"metrics": {"test": {"c2st": 0.57}}}))
    (work / "params.yaml").write_text(yaml.safe_dump({"pretrain": {"face_init": str(shipped)}}))
    assert first_stage_metrics(work) == {"test": {"c2st": 0.57}}
    (work / "reports/first_stage/metrics.json").write_text(json.dumps({"test": {"c2st": 0.61}}))
    assert first_stage_metrics(work)["test"]["c2st"] == 0.61
    (work / "params.yaml").write_text(yaml.safe_dump({"pretrain": {"face_init": None}}))
    (work / "reports/first_stage/metrics.json").unlink()
    assert first_stage_metrics(work) is None  # face_init null: no shipped first stage to read


def test_a_release_card_names_its_code_commit_whatever_the_release_wrote(tmp_path):
    """The card's commit is dirty for changed code, not for the weights and reports the release itself writes."""
    import subprocess

    from sclmd.release import RELEASE_OUTPUTS
    from sclmd.tracking import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights/card.md").write_text("old")
    (tmp_path / "code.py").write_text("x = 1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (tmp_path / "weights/card.md").write_text("new")
    assert not git_commit(tmp_path, RELEASE_OUTPUTS).endswith("-dirty")
    assert git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2")
    assert git_commit(tmp_path, RELEASE_OUTPUTS).endswith("-dirty")
