"""End to end: `sclmd pipeline` -> Prefect flow -> `dvc repro` per stage -> MLflow runs.

Runs in a throwaway git + DVC project with tiny params, against the session's real
Prefect API server and the default MLflow store (sqlite:///mlflow.db in the project).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import TINY, copy_project, deep_merge, sclmd_cli, write_params

pytestmark = pytest.mark.slow


def sclmd(root, *args):
    return sclmd_cli(root, *args)


def runs(root):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sclmd")
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def project(ran_pipeline, tmp_path_factory):
    """A copy of the session's pipeline run: these tests change it."""
    return copy_project(ran_pipeline[0], tmp_path_factory.mktemp("e2e-copy") / "project")


def test_pipeline_runs_all_stages_and_logs_to_mlflow(ran_pipeline, project):
    out = ran_pipeline[1]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (
        "synth=ran, prepare=ran, validate=ran, judges=ran, pretrain=ran, prior=ran, train_ldm=ran, baselines=ran, "
        "evaluate=ran, user_study=ran"
    ) in out.stdout + out.stderr
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {
        "synth",
        "prepare",
        "validate",
        "pretrain",
        "prior",
        "train_ldm",
        "judges",
        "baselines",
        "evaluate",
        "user_study",
    }
    evaluation = json.loads((project / "reports/eval/metrics.json").read_text())
    assert set(evaluation["methods"]) == {"scldm", "speech2face", "ar_spm", "wav2pix", "wen"}
    # every run reports real speech: the shipped real-speaker voices, every method, and the speech probe
    real = evaluation["real_voices"]
    assert real["n_voices"] == 9 and set(real["methods"]) == {"scldm", "speech2face", "ar_spm", "wav2pix", "wen"}
    assert real["methods"]["scldm"]["samples_per_voice"] == 2 and real["methods"]["ar_spm"]["samples_per_voice"] == 1
    assert 0 <= real["methods"]["scldm"]["gender_agreement"] <= 1
    assert "real_voice_gender_agreement_at_least_0.9" in evaluation["targets"]
    assert "Real speakers' voices" in (project / "reports/eval/report.md").read_text()
    assert (project / "reports/eval/plots/real_voices.png").stat().st_size > 1000
    pretrained = json.loads((project / "reports/pretrain/metrics.json").read_text())
    assert (
        pretrained["trained"]["real_voices_n"] == 9 and 0 <= pretrained["trained"]["real_voices_gender_accuracy"] <= 1
    )
    assert (project / "reports/eval/report.md").exists() and (project / "reports/user_study/page/index.html").exists()
    assert json.loads((project / "reports/data_contract.json").read_text())["success"] is True
    assert (project / "reports/synth/contact_sheet.png").stat().st_size > 1000

    client, all_runs = runs(project)
    parents = [r for r in all_runs if r.data.tags.get("sclmd.stage") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == [
        "baselines",
        "evaluate",
        "judges",
        "prepare",
        "pretrain",
        "prior",
        "register",
        "synth",
        "train_ldm",
        "user_study",
        "validate",
    ]
    # the run registered the model (the project's own sqlite registry): version 1, @challenger
    version = client.get_model_version_by_alias("sclmd", "challenger")
    assert str(version.version) == "1" and float(version.tags["metric.gender_accuracy"]) >= 0
    assert parent.data.tags["sclmd.registered_version"] == "1"
    # the parent holds every stage's params (prefixed) and the evaluation's metrics: runs compare on it
    assert parent.data.params["ldm.max_steps"] == "4" and parent.data.params["synth.n_speakers"] == "12"
    assert "methods.scldm.gender_accuracy" in parent.data.metrics
    judges = next(c for c in children if c.info.run_name == "judges")
    assert "test.gender_accuracy" in judges.data.metrics and "test.recall_1" in judges.data.metrics
    children = [c for c in children if c.info.run_name != "register"]
    for child in children:
        tags = child.data.tags
        assert tags["sclmd.stage"] == child.info.run_name
        assert len(tags["sclmd.params_hash"]) == 16
        assert tags["sclmd.git_commit"] != "unknown"
        assert child.info.status == "FINISHED"
    synth = next(c for c in children if c.info.run_name == "synth")
    assert synth.data.params["synth.n_speakers"] == "12"
    assert synth.data.metrics["n_speakers"] == 12
    artifacts = [a.path for a in client.list_artifacts(synth.info.run_id, "reports/synth")]
    assert "reports/synth/contact_sheet.png" in artifacts
    ldm = next(c for c in children if c.info.run_name == "train_ldm")
    assert "train/loss" in ldm.data.metrics and "val_loss" in ldm.data.metrics
    samples = [a.path for a in client.list_artifacts(ldm.info.run_id, "samples")]
    assert "samples/samples_step-0000002.png" in samples
    prep = next(c for c in children if c.info.run_name == "prepare")
    assert prep.data.metrics["clips"] == 24
    # timings are in MLflow, not in the DVC metrics files (identical params -> identical files)
    assert "seconds" in prep.data.metrics and "elapsed_s" in synth.data.metrics
    assert "seconds" not in json.loads((project / "reports/prepare/metrics.json").read_text())
    assert "elapsed_s" not in json.loads((project / "reports/synth/metrics.json").read_text())


def test_second_run_skips_unchanged_stages(project):
    out = sclmd(project, "pipeline")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        "synth=skipped, prepare=skipped, validate=skipped, judges=skipped, pretrain=skipped, prior=skipped, "
        "train_ldm=skipped, baselines=skipped, evaluate=skipped, user_study=skipped"
    ) in out.stdout + out.stderr


def test_changed_param_reruns_only_downstream_and_contract_failure_stops(project):
    write_params(project, deep_merge(TINY, {"validate": {"min_rms_dbfs": 0.0}}))
    out = sclmd(project, "pipeline")
    assert out.returncode == 2
    err = out.stderr
    assert "stage 'validate' failed" in err and "audible clips" in err
    assert "Traceback" not in err.split("stage 'validate' failed")[1]
    report = json.loads((project / "reports/data_contract.json").read_text())
    assert report["success"] is False and report["failures"][0]["why"] == "audible clips"
    client, all_runs = runs(project)
    last_parent = [r for r in all_runs if r.data.tags.get("sclmd.stage") == "pipeline"][-1]
    assert last_parent.info.status == "FAILED"
    assert last_parent.data.tags["sclmd.failed_stage"] == "validate"
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == last_parent.info.run_id]
    # synth and prepare were unchanged (skipped, no run); validate ran once: no retry of a user error
    assert [r.info.run_name for r in children] == ["validate"]


def test_ablations_refuse_a_project_with_stale_stages(project):
    from flows.ablations import sclmd_ablations, stale_stages
    from sclmd.errors import SclmdError

    # the previous test changed validate's params and left the pipeline failed: DVC sees it stale
    assert "validate" in stale_stages(project)
    with pytest.raises(SclmdError, match="out of date .* Run `make run` first"):
        sclmd_ablations(root=str(project))
