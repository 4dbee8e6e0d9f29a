"""The pieces of "Operate" that need no server: gates, params overrides, request checks, names, device choice.

The servers themselves are exercised end to end in test_operate.py.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from sclmd.errors import SclmdError
from tests.conftest import REPO


def test_gates_compare_each_rule_and_fail_on_a_missing_metric():
    from sclmd.registry.versions import Gate, Promotion

    assert Gate("cos", "lower", 1.0, 2.0).passed and not Gate("cos", "lower", 2.0, 2.0).passed
    assert Gate("g", "not_lower", 0.5, 0.5).passed and not Gate("g", "not_lower", 0.4, 0.5).passed
    assert Gate("g", "higher", 0.6, 0.5).passed and Gate("g", "not_higher", 0.5, 0.5).passed
    missing = Gate("cos", "lower", None, 2.0)
    assert not missing.passed and missing.verdict == "missing"
    first = Promotion("sclmd", "1", None, [Gate("cos", "lower", 1.0, None)])
    assert first.passed and "first champion" in first.table()
    refused = Promotion("sclmd", "2", "1", [Gate("cos", "lower", 3.0, 2.0), Gate("g", "not_lower", 1.0, 0.5)])
    assert not refused.passed
    assert "| cos | lower | 3 | 2 | FAIL (point) |" in refused.table() and "refused" in refused.summary()


def test_gates_count_a_difference_only_beyond_the_intervals():
    from sclmd.registry.versions import Gate, Promotion

    # cos (lower is better): champion 64.75 [63.0, 66.5]
    champion, champion_ci = 64.75, (63.0, 66.5)
    clear = Gate("cos", "lower", 60.0, champion, (58.5, 61.5), champion_ci)  # whole interval below the champion's
    assert clear.passed and clear.uses_interval and clear.verdict == "pass"
    noise = Gate("cos", "lower", 64.2, champion, (62.4, 66.0), champion_ci)  # lower, but the intervals overlap
    assert not noise.passed and noise.within_noise and noise.verdict == "FAIL (within noise)"
    touching = Gate("cos", "lower", 61.5, champion, (60.0, 63.0), champion_ci)  # upper bound = champion's lower
    assert not touching.passed
    # not_lower (gender accuracy): fails only when the challenger is lower beyond the noise
    assert Gate("g", "not_lower", 0.85, 0.86, (0.80, 0.90), (0.81, 0.91)).passed  # a bit lower: noise
    beyond = Gate("g", "not_lower", 0.70, 0.86, (0.64, 0.76), (0.81, 0.91))
    assert not beyond.passed and beyond.verdict == "FAIL"
    # higher / not_higher mirror lower / not_lower; each "not" rule is its strict rule's complement
    assert Gate("r", "higher", 0.30, 0.10, (0.22, 0.38), (0.05, 0.15)).passed
    assert not Gate("r", "higher", 0.12, 0.10, (0.07, 0.17), (0.05, 0.15)).passed
    assert not Gate("r", "not_higher", 0.30, 0.10, (0.22, 0.38), (0.05, 0.15)).passed
    for c, c_ci in ((60.0, (58.5, 61.5)), (64.2, (62.4, 66.0)), (70.0, (68.0, 72.0)), (64.75, (63.0, 66.5))):
        for strict, loose in (("lower", "not_lower"), ("higher", "not_higher")):
            assert (
                Gate("cos", strict, c, champion, c_ci, champion_ci).passed
                != Gate("cos", loose, c, champion, c_ci, champion_ci).passed
            )
    # the table shows the intervals, the message the rule
    refused = Promotion("sclmd", "2", "1", [noise])
    assert "| cos | lower | 64.2 [62.4, 66] | 64.75 [63, 66.5] | FAIL (within noise) |" in refused.table()
    assert "refused" in refused.summary() and "whole interval lies below the champion's" in refused.summary()
    assert refused.to_dict()["gates"][0]["basis"] == "interval"


def test_gates_without_intervals_fall_back_to_the_point_values_and_say_so():
    from sclmd.registry.versions import Gate, Promotion

    old_champion = Gate("cos", "lower", 64.2, 64.75, (62.4, 66.0), None)  # champion registered before intervals
    assert not old_champion.uses_interval and old_champion.passed  # point: 64.2 < 64.75
    assert old_champion.verdict == "pass (point)" and old_champion.basis == "point (no interval on the champion)"
    assert not Gate("cos", "lower", 65.0, 64.75).passed
    assert Gate("cos", "lower", 64.2, 64.75, (float("nan"), float("nan")), (63.0, 66.5)).passed  # NaN bounds: none
    promoted = Promotion("sclmd", "2", "1", [old_champion], promoted=True)
    assert "cos: compared by point value only, old rule" in promoted.summary()
    refused = Promotion("sclmd", "2", "1", [Gate("cos", "lower", 65.0, 64.75)])
    assert (
        "compared by point value only" in refused.summary()
        and "no interval on the challenger and champion" in refused.summary()
    )


def test_apply_overrides_keeps_comments_and_writes_nothing_when_invalid(tmp_path):
    from sclmd.config import apply_overrides, load_params

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = apply_overrides(path, {"ldm.max_steps": 7, "ldm.guidance_check": "[1.0, 3.0]"})
    assert params.ldm.max_steps == 7 and params.ldm.guidance_check == [1.0, 3.0]
    text = path.read_text()
    assert "# the speech-conditioned latent diffusion model" in text and load_params(path).ldm.max_steps == 7
    for bad, words in [
        ({"ldm.max_stepz": 3}, "unknown key 'ldm.max_stepz'"),
        ({"ldm.max_steps": -1}, "ldm.max_steps"),
        ({"nosection.x": 1}, "'nosection' is not a section"),
    ]:
        with pytest.raises(SclmdError, match=words.replace(".", r"\.")):
            apply_overrides(path, bad)
        assert path.read_text() == text  # untouched


def test_request_params_and_audio_values_are_checked_row_by_row(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    from sclmd.registry import pyfunc

    assert pyfunc.sampling_options({"samples": 2, "seed": 5, "steps": 0, "guidance": -1.0}) == {
        "seed": 5,
        "samples": 2,
        "steps": None,
        "guidance": None,
        "prior_weight": None,
    }
    for bad in ({"samples": 0}, {"samples": 17}, {"colour": 1}, {"seed": "x"}):
        with pytest.raises(MlflowException) as err:
            pyfunc.sampling_options(bad)
        assert err.value.get_http_status_code() == 400
    assert pyfunc._audio_bytes(base64.b64encode(b"RIFF").decode(), 0) == b"RIFF"
    with pytest.raises(MlflowException, match="row 3: 'audio' is neither bytes nor valid base64"):
        pyfunc._audio_bytes("@@@", 3)
    with pytest.raises(MlflowException, match="row 0: 'audio' is empty"):
        pyfunc._audio_bytes(b"", 0)
    inside = tmp_path / "voices" / "a.wav"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    monkeypatch.setenv(pyfunc.AUDIO_ROOT_ENV, str(tmp_path / "voices"))
    assert pyfunc._audio_path("a.wav", 0) == inside.resolve()
    with pytest.raises(MlflowException, match="outside SCLMD_AUDIO_ROOT"):
        pyfunc._audio_path("../../etc/passwd", 1)


def test_mlflow_metric_names_are_one_per_quantity():
    from sclmd.stages import logged_metrics, metric_name

    assert metric_name("methods.scldm.gender_acc") == "methods.scldm.gender_accuracy"
    assert metric_name("trained.gender_accuracy") == "trained.gender_accuracy"
    assert metric_name("trained.recall@1") == "trained.recall_1" == metric_name("trained.retrieval_r1")
    assert metric_name("generated_frechet") == "frechet"
    assert logged_metrics({"test": {"age_acc": 0.5, "flag": True, "name": "x"}}) == {"test.age_accuracy": 0.5}


def test_uncached_outputs_are_read_from_dvc_yaml():
    from flows.pipeline import uncached_outputs

    paths = uncached_outputs(REPO)
    assert "reports/eval/metrics.json" in paths and "reports/ldm/plots" in paths
    assert "models/ldm" not in paths and "data/prepared" not in paths


def test_device_choice(monkeypatch):
    import torch

    from sclmd.stages import apply_device_choice

    monkeypatch.setenv("SCLMD_DEVICE", "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    apply_device_choice()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("SCLMD_DEVICE", "tpu")
    with pytest.raises(SclmdError, match="expected auto, cpu or cuda"):
        apply_device_choice()
    if not torch.cuda.is_available():
        monkeypatch.setenv("SCLMD_DEVICE", "cuda")
        with pytest.raises(SclmdError, match="CUDA is not available on this host"):
            apply_device_choice()


def test_infra_refuses_a_busy_port_and_down_without_up_is_harmless(tmp_path):
    import socket

    from sclmd import infra

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SclmdError, match=f"port {port} on 127.0.0.1 is in use; choose another with --mlflow-port"):
            infra.up(tmp_path, prefect_port=free_port, mlflow_port=port, echo=lambda *_: None)
    assert not (tmp_path / ".infra" / "services.json").exists()
    said = []
    infra.down(tmp_path, echo=said.append)
    assert "nothing running" in said[0]
    with pytest.raises(SclmdError, match="sclmd infra up"):
        infra.saved_env(tmp_path)


def test_prefect_yaml_declares_the_deployments():
    import yaml

    from sclmd.infra import deployment_names

    assert deployment_names(REPO) == [
        "sclmd-pipeline/local",
        "sclmd-pipeline/gpu",
        "sclmd-promote/local",
        "sclmd-talker/local",
        "sclmd-release/local",
        "sclmd-release/gpu",
    ]
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    gpu = next(d for d in config["deployments"] if d["work_pool"]["name"] == "gpu")
    assert gpu["work_pool"]["job_variables"]["env"]["SCLMD_DEVICE"] == "cuda"
    assert gpu["work_pool"]["job_variables"]["env"]["SCLMD_PROCESSES"] == "1"  # a job variable a run overrides
    assert Path(REPO / "deploy/kubernetes.prefect.yaml").exists()


def test_promote_and_rollback_on_the_sqlite_registry(tmp_path):
    """The same decisions against MLflow's default store (integer versions there, strings over REST)."""
    import mlflow

    from sclmd.registry.versions import promote, rollback

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    for cos in (50.0, 40.0, 45.0):
        (tmp_path / "src").mkdir(exist_ok=True)
        version = client.create_model_version("m", str(tmp_path / "src"), tags={"metric.cos": str(cos)})
        client.set_registered_model_alias("m", "challenger", version.version)
        result = promote(client, "m", {"cos": "lower"})
        assert result.promoted == (cos != 45.0), result.table()
    assert client.get_model_version_by_alias("m", "champion").version == 2  # 45 did not beat 40
    # versions with intervals: 38 [35, 41] is lower than 40 but within 40's noise; 30 [28, 32] is not
    client.set_model_version_tag("m", "2", "metric.cos_ci_low", "38")
    client.set_model_version_tag("m", "2", "metric.cos_ci_high", "42")
    for cos, low, high, promoted in ((38.0, 35.0, 41.0, False), (30.0, 28.0, 32.0, True)):
        version = client.create_model_version(
            "m",
            str(tmp_path / "src"),
            tags={"metric.cos": str(cos), "metric.cos_ci_low": str(low), "metric.cos_ci_high": str(high)},
        )
        client.set_registered_model_alias("m", "challenger", version.version)
        result = promote(client, "m", {"cos": "lower"})
        assert result.promoted == promoted and result.gates[0].uses_interval, result.table()
    assert client.get_model_version_by_alias("m", "champion").version == 5
    rollback(client, "m")
    client.set_registered_model_alias("m", "challenger", 3)
    with pytest.raises(SclmdError, match="--reason"):
        promote(client, "m", {"cos": "lower"}, force=True)
    forced = promote(client, "m", {"cos": "lower"}, force=True, reason="demo")
    assert forced.promoted and client.get_model_version("m", 3).tags["sclmd.forced_reason"] == "demo"
    assert rollback(client, "m") == ("3", "2") and rollback(client, "m") == ("2", "1")
    with pytest.raises(SclmdError, match="first champion"):
        rollback(client, "m")
    with pytest.raises(SclmdError, match="no registered model 'nope'"):
        promote(client, "nope", {})


def test_a_first_challenger_is_gated_against_the_shipped_release_model(tmp_path):
    """No champion yet: the challenger must beat the release model's evaluation (weights/scldm-voxsynth)."""
    import mlflow

    from sclmd.models.shipped import write_checksums
    from sclmd.registry.versions import promote, release_reference

    release = tmp_path / "weights/scldm-voxsynth"
    release.mkdir(parents=True)
    (tmp_path / "params.yaml").write_text("{}")
    assert release_reference(tmp_path) is None  # nothing shipped: the first champion needs no comparison
    (release / "evaluation.json").write_text(json.dumps({"methods": {"scldm": {"cos": 40.0, "cos_ci": [38.0, 42.0]}}}))
    write_checksums(release)
    reference = release_reference(tmp_path)
    assert reference[0].startswith("the shipped release model") and reference[1]["cos_ci_low"] == 38.0

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    (tmp_path / "src").mkdir()
    for cos, low, high, promoted in ((39.0, 37.0, 41.0, False), (30.0, 28.0, 32.0, True)):
        version = client.create_model_version(
            "m",
            str(tmp_path / "src"),
            tags={"metric.cos": str(cos), "metric.cos_ci_low": str(low), "metric.cos_ci_high": str(high)},
        )
        client.set_registered_model_alias("m", "challenger", version.version)
        result = promote(client, "m", {"cos": "lower"}, reference=reference)
        assert result.promoted == promoted, result.table()
        assert "shipped release model" in result.table()
    assert "gated against the shipped release model" in result.summary()
    assert client.get_model_version_by_alias("m", "champion").version == 2
