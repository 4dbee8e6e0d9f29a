"""Shared fixtures: real tools, isolated per test session, tiny generated data.

- MLflow: a SQLite store in a temp folder (tests that check the default store unset it).
- Prefect: one real local API server for the whole session (prefect_test_harness),
  exported as PREFECT_API_URL so that stage subprocesses report to it too.
- Data: a tiny VoxSynth set and its prepared folder, built once by the real stages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import sclmd  # noqa: F401  (sets the telemetry-off environment first)

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "synth": {"n_speakers": 12, "utterances_per_speaker": 2, "faces_per_speaker": 2, "sample_wavs": 2},
    "prepare": {"shard_size": 8, "workers": 2},
    "pretrain": {
        "batch_size": 4,
        "max_steps": 4,
        "autoencoder_steps": 2,
        "autoencoder_batch_size": 4,
        "checkpoint_every": 2,
        "log_every": 1,
        "eval_batch_size": 16,
    },
    "prior": {"ladder_start": 2},
    "ldm": {
        "batch_size": 4,
        "max_steps": 4,
        "checkpoint_every": 2,
        "sample_every": 2,
        "log_every": 1,
        "sample_speakers": 2,
        "samples_per_speaker": 2,
        "sample_steps": 3,
        "warmup_steps": 1,
    },
    "judges": {"epochs": 1, "width": 4, "feature_dim": 8, "batch_size": 8},
    "baselines": {
        "steps": 5,
        "hidden": 16,
        "batch_size": 8,
        "checkpoint_every": 2,
        "wav2pix": {"steps": 3, "batch_size": 4},
        "wen": {"embed_steps": 2, "steps": 3, "batch_size": 4},
    },
    "evaluate": {"samples": 2, "grid_clips": 2, "real_voice_samples": 2},
    "user_study": {"n_clips": 3},
}


# The modules whose tests use the session's pipeline run (`ran_pipeline`, ~3 minutes): under
# pytest-xdist (`make test` runs two workers) they all go to one worker, so that it runs once.
RAN_PIPELINE_MODULES = (
    "tests/test_demo.py",
    "tests/test_operate.py",
    "tests/test_pipeline.py",
    "tests/test_real_voices.py",
    "tests/test_release_model.py",
    "tests/test_talker.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's load-by-scope scheduler: a module's tests run on one worker, in order (some build on
    the one before), and the `ran_pipeline` modules count as one.  (xdist's own `--dist loadgroup`
    marks do not reach its scheduler under pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SharedPipelineScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "ran_pipeline" if module in RAN_PIPELINE_MODULES else module

    return SharedPipelineScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def isolated_tools(tmp_path_factory):
    home = tmp_path_factory.mktemp("tools")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        yield
    os.environ.pop("PREFECT_API_URL", None)


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_params(root: Path, overrides: dict) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = deep_merge(params, overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def make_project(root: Path, overrides: dict | None = None, *, dvc: bool = False) -> Path:
    """A throwaway copy of the project: params, dvc.yaml and the code DVC hashes."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, deep_merge(TINY, overrides or {}))
    if dvc:
        shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
        for folder in ("sclmd", "flows", "real_voices", "weights/face-autoencoder", "weights/dae-talker"):  # dvc deps
            if (REPO / folder).is_dir():
                shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
        run = lambda *cmd: subprocess.run(cmd, cwd=root, check=True, capture_output=True)  # noqa: E731
        run("git", "init", "-q")
        run("git", "config", "user.email", "test@sclmd.invalid")
        run("git", "config", "user.name", "sclmd tests")
        run("dvc", "init", "-q")
        run("git", "add", "-A")
        run("git", "commit", "-qm", "fixture project")
    return root


def sclmd_cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m sclmd ARGS` in `root`, with the project's default MLflow store (sqlite in root)."""
    import sys

    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    base["PATH"] = os.path.dirname(sys.executable) + os.pathsep + base["PATH"]
    return subprocess.run(
        [sys.executable, "-m", "sclmd", *args],
        cwd=root,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def ran_pipeline(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny git + DVC project after one full `sclmd pipeline` (all stages, registration): (folder, output).

    Run once per session; tests that change a project work on a copy (`copy_project`).
    """
    root = make_project(tmp_path_factory.mktemp("e2e") / "pristine", dvc=True)
    return root, sclmd_cli(root, "pipeline")


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A project folder with tiny VoxSynth generated and prepared by the real stages."""
    from sclmd.config import load_params
    from sclmd.stages import prepare, synth

    root = make_project(tmp_path_factory.mktemp("tiny") / "project")
    params = load_params(root / "params.yaml")
    synth.run(params, root)
    prepare.run(params, root)
    return root


@pytest.fixture
def prepared_copy(tiny_project, tmp_path) -> Path:
    """A private copy of the tiny prepared folder, for tests that break it."""
    dst = tmp_path / "prepared"
    shutil.copytree(tiny_project / "data/prepared", dst)
    return dst


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Block until `path` exists, while `proc` still runs (its output in the failure if it stops first)."""
    import time

    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
