"""The spine: CLI entry points, dvc.yaml <-> stage modules, atomic outputs, tracking."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir, atomic_file
from sclmd.stages import ALL_STAGES, stage_module
from tests.conftest import REPO


def test_dvc_yaml_declares_what_each_stage_module_reads_and_writes():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(dvc) == list(ALL_STAGES)
    for name, spec in dvc.items():
        module = stage_module(name)
        assert spec["cmd"] == f"sclmd stage {name}"
        assert spec["params"] == list(module.PARAM_SECTIONS)
        declared = {next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("metrics", [])}
        for artifact in module.ARTIFACTS:
            path = str(artifact)
            assert path in declared or any(path.startswith(d + "/") for d in declared), (name, path)
        assert f"sclmd/stages/{name}.py" in spec["deps"]


@pytest.mark.parametrize("args", [["--help"], ["stage", "--help"], ["validate", "--help"], ["pipeline", "--help"]])
def test_entry_points_answer_help(args):
    out = subprocess.run([sys.executable, "-m", "sclmd", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_unknown_stage_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    out = subprocess.run(
        [sys.executable, "-m", "sclmd", "stage", "trian"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "unknown stage 'trian'" in out.stderr and "prepare" in out.stderr
    with pytest.raises(SclmdError):
        stage_module("trian")


def test_atomic_dir_keeps_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-way")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b.txt"]


def test_atomic_file_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_packed_store_refuses_paths_outside_its_root(prepared_copy):
    import pandas as pd

    from sclmd.data.store import PackedClips

    frame = pd.read_parquet(prepared_copy / "manifest.parquet")
    frame.loc[frame["split"] == "train", "face_file"] = "../../../etc/passwd"
    frame.to_parquet(prepared_copy / "manifest.parquet", index=False)
    with pytest.raises(SclmdError, match="outside the data root"):
        PackedClips(prepared_copy, "train")


def test_stage_run_tags_and_parent(tmp_path, monkeypatch):
    import mlflow

    from sclmd.tracking import PARENT_ENV, pipeline_run, stage_run

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pipeline_run(tmp_path, {"a": 1}) as parent:
        import os

        assert os.environ[PARENT_ENV] == parent.info.run_id
        with stage_run("synth", tmp_path, {"synth": {"seed": 3}}) as child:
            pass
    assert PARENT_ENV not in __import__("os").environ
    run = mlflow.MlflowClient(uri).get_run(child.info.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["sclmd.stage"] == "synth"
    assert run.data.params == {"synth.seed": "3"}
    assert run.data.tags["sclmd.git_commit"] == "unknown"  # tmp_path is no git repo


def test_ui_serves_mlflow_on_loopback(tmp_path):
    """`sclmd ui` (what `make ui` runs) starts a real MLflow server on 127.0.0.1."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sclmd", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.time() < deadline, "MLflow UI did not come up in 120 s"
                time.sleep(0.5)
        if shutil.which("ss"):
            listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
            bound = [ln for ln in listening.splitlines() if f":{port} " in ln]
            assert bound and all("127.0.0.1" in ln for ln in bound), bound
        assert (tmp_path / "mlflow.db").exists()  # the default store at the project root
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
