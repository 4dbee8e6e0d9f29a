"""Operate it, as the README's "Operate" section does, against real local servers started here.

`sclmd infra up` starts a Prefect server, a process worker and an MLflow server for a tiny
throwaway project; the deployment `sclmd-pipeline/local` runs the pipeline to Completed
(registering a model version), a second run with `set_params` becomes a DVC experiment
and a second version; promotion is refused and passed by the gates, forced with a reason,
rolled back; the champion generates faces through `sclmd generate --model` and through
`mlflow models serve`; `dvc push` / `dvc pull` round-trip through the default remote; and
`sclmd infra down` leaves nothing running.  The tests run in file order and share state.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from sclmd.stages import STAGE_ORDER
from tests.conftest import REPO, copy_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This session's environment minus the test harness's Prefect and MLflow, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PATH"] = str(BIN) + os.pathsep + env["PATH"]
    return {**env, **(extra or {})}


class Ops:
    def __init__(self, root: Path):
        self.root = root
        self.env: dict[str, str] = {}

    def run(self, *cmd: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            list(cmd),
            cwd=self.root,
            env=clean_env(self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert out.returncode == 0, (
                f"{' '.join(cmd)} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out

    def sclmd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "sclmd", *args, **kw)

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.env["MLFLOW_TRACKING_URI"])

    def set_gates(self, gates: dict[str, str]) -> None:
        params = yaml.safe_load((self.root / "params.yaml").read_text())
        params["registry"]["gates"] = gates
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def ops(ran_pipeline, tmp_path_factory):
    # A copy of the session's tiny project after `sclmd pipeline` (test_pipeline checks that run):
    # the first deployment run finds its stages up to date; the set_params run re-trains for real.
    root = copy_project(ran_pipeline[0], tmp_path_factory.mktemp("ops") / "project")
    shutil.copy2(REPO / "prefect.yaml", root / "prefect.yaml")
    shutil.copy2(REPO / ".dvc" / "config", root / ".dvc" / "config")  # the default remote, as committed
    (root / ".gitignore").write_text("/.infra/\nmlruns/\nmlflow.db\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "deployments"], cwd=root, check=True)
    o = Ops(root)
    o.ports = (free_port(), free_port())
    up = o.sclmd("infra", "up", "--prefect-port", str(o.ports[0]), "--mlflow-port", str(o.ports[1]), check=False)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        env_lines = o.sclmd("infra", "env").stdout.split()
        o.env = dict(line.split("=", 1) for line in env_lines if "=" in line)
        yield o
    finally:
        o.sclmd("infra", "down", check=False)


def test_infra_up_starts_servers_worker_and_deployments(ops):
    assert ops.env == {
        "PREFECT_API_URL": f"http://127.0.0.1:{ops.ports[0]}/api",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ops.ports[1]}",
    }
    status = ops.sclmd("infra", "status").stdout
    for name in ("prefect-server", "mlflow-server", "prefect-worker"):
        assert f"{name}" in status and "running" in status.split(name)[1].splitlines()[0]
    deployments = ops.run(str(BIN / "prefect"), "deployment", "ls").stdout
    for name in (
        "sclmd-pipeline/local",
        "sclmd-pipeline/gpu",
        "sclmd-promote/local",
        "sclmd-talker/local",
        "sclmd-release/local",
        "sclmd-release/gpu",
    ):
        assert name.split("/")[1] in deployments and name.split("/")[0] in deployments
    again = ops.sclmd("infra", "up", "--prefect-port", str(ops.ports[0]), "--mlflow-port", str(ops.ports[1]))
    assert "already running" in again.stdout


def test_local_deployment_runs_the_pipeline_to_completed_and_registers(ops):
    out = ops.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        "sclmd-pipeline/local",
        "--watch",
        "--watch-timeout",
        "900",
        timeout=960,
    )
    assert "Completed" in out.stdout + out.stderr
    client = ops.client()
    challenger = client.get_model_version_by_alias("sclmd", "challenger")
    assert challenger.version == "1"
    tags = challenger.tags
    assert tags["sclmd.data_version"].startswith("data/prepared@") and tags["sclmd.git_commit"] != "unknown"
    for metric in ("metric.cos", "metric.gender_accuracy", "metric.frechet", "metric.recall_1"):
        assert float(tags[metric]) == float(tags[metric])  # present and a number
    # the pipeline's parent run: every stage's params, prefixed; the evaluation's metrics
    exp = client.get_experiment_by_name("sclmd")
    parent = client.search_runs([exp.experiment_id], "tags.`sclmd.stage` = 'pipeline'")[0]
    assert parent.data.params["ldm.max_steps"] == "4" and parent.data.params["pretrain.batch_size"] == "4"
    assert "methods.scldm.gender_accuracy" in parent.data.metrics
    assert parent.data.tags["sclmd.registered_version"] == "1"
    assert parent.data.tags["sclmd.stage_status.train_ldm"] == "skipped"  # the copy was up to date


def test_first_promotion_makes_the_first_champion(ops):
    out = ops.sclmd("promote")
    assert "first champion" in out.stdout and "promoted: sclmd@champion none -> version 1" in out.stdout
    assert ops.client().get_model_version_by_alias("sclmd", "champion").version == "1"


def test_check_voices_and_the_demo_use_the_champion(ops, tmp_path, monkeypatch):
    from sclmd.model_choice import choose_model

    out = ops.sclmd(
        "check-voices",
        "real_voices",
        "--samples",
        "1",  # no --model: the champion, and it says so
        "--json",
        str(tmp_path / "voices.json"),
    )
    assert "gender_agreement" in out.stdout
    assert "model: models:/sclmd@champion (the registry's champion)" in out.stdout
    assert json.loads((tmp_path / "voices.json").read_text())["n_voices"] == 9
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ops.env["MLFLOW_TRACKING_URI"])
    assert choose_model(ops.root).model_uri == "models:/sclmd@champion"


def test_deployment_with_set_params_is_a_dvc_experiment_and_a_new_version(ops):
    params_before = (ops.root / "params.yaml").read_text()
    out = ops.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        "sclmd-pipeline/local",
        "--watch",
        "--param",
        'set_params={"ldm.seed": 1}',
        "--param",
        "experiment=ldm-seed1",
        timeout=960,
    )
    assert "Completed" in out.stdout + out.stderr
    assert (ops.root / "params.yaml").read_text() == params_before  # the workspace is back
    exps = json.loads(ops.run(str(BIN / "dvc"), "exp", "show", "--json").stdout)
    names = [e.get("name") for entry in exps for e in (entry.get("experiments") or [])]
    assert "ldm-seed1" in names
    status = ops.run(str(BIN / "dvc"), "status", "--json", *STAGE_ORDER).stdout  # the talker never ran here
    assert json.loads(status or "{}") == {}  # outputs restored to match dvc.lock
    client = ops.client()
    exp = client.get_experiment_by_name("sclmd")
    parent = client.search_runs([exp.experiment_id], "tags.`sclmd.dvc_experiment` = 'ldm-seed1'")[0]
    assert parent.data.params["ldm.seed"] == "1" and parent.data.tags["sclmd.stage_status.train_ldm"] == "ran"
    evaluate = client.search_runs([exp.experiment_id], "tags.`sclmd.stage` = 'evaluate'")[0]
    assert "methods.scldm.gender_accuracy" in evaluate.data.metrics
    challenger = client.get_model_version_by_alias("sclmd", "challenger")
    assert challenger.version == "2"
    assert client.get_model_version("sclmd", "1").tags["sclmd.model_hash"] != challenger.tags["sclmd.model_hash"]


def _gate_rules(ops) -> tuple[str, str]:
    """(a rule v2 fails, a rule v2 passes) on cosine distance, whatever the tiny models scored.

    `higher` and `not_higher` are each other's complement, with intervals as without."""
    from sclmd.registry.versions import Gate, _interval, _metric

    client = ops.client()
    v1, v2 = (client.get_model_version("sclmd", v) for v in ("1", "2"))
    assert _interval(v2, "cos") is not None  # evaluate recorded the interval; it reached the tags
    higher = Gate("cos", "higher", _metric(v2, "cos"), _metric(v1, "cos"), _interval(v2, "cos"), _interval(v1, "cos"))
    return ("higher", "not_higher") if not higher.passed else ("not_higher", "higher")


def test_promote_refuses_a_challenger_that_fails_a_gate(ops):
    failing, _ = _gate_rules(ops)
    ops.set_gates({"cos": failing})
    out = ops.sclmd("promote", check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "| cos |" in out.stdout and "FAIL" in out.stdout and "refused" in out.stdout
    assert ops.client().get_model_version_by_alias("sclmd", "champion").version == "1"
    no_reason = ops.sclmd("promote", "--force", check=False)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr


def test_promote_passes_then_rollback_returns_the_previous_champion(ops):
    _, passing = _gate_rules(ops)
    ops.set_gates({"cos": passing})
    out = ops.sclmd("promote")
    assert "pass" in out.stdout and "promoted: sclmd@champion version 1 -> version 2" in out.stdout
    client = ops.client()
    assert client.get_model_version_by_alias("sclmd", "champion").version == "2"
    assert client.get_model_version("sclmd", "2").tags["sclmd.replaced_champion"] == "1"
    back = ops.sclmd("rollback")
    assert "version 2 -> version 1" in back.stdout
    assert client.get_model_version_by_alias("sclmd", "champion").version == "1"
    again = ops.sclmd("rollback", check=False)
    assert again.returncode == 2 and "first champion" in again.stderr


def test_forced_promotion_through_the_promote_deployment_records_the_reason(ops):
    failing, _ = _gate_rules(ops)
    ops.set_gates({"cos": failing})
    out = ops.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        "sclmd-promote/local",
        "--watch",
        "--param",
        "force=true",
        "--param",
        "reason=hotfix for the demo",
        timeout=300,
    )
    assert "Completed" in out.stdout + out.stderr
    client = ops.client()
    assert client.get_model_version_by_alias("sclmd", "champion").version == "2"
    assert client.get_model_version("sclmd", "2").tags["sclmd.forced_reason"] == "hotfix for the demo"
    # the same from the command line
    ops.sclmd("rollback")
    out = ops.sclmd("promote", "--force", "--reason", "from the CLI")
    assert "FAIL" in out.stdout and "(forced: from the CLI)" in out.stdout
    assert client.get_model_version("sclmd", "2").tags["sclmd.forced_reason"] == "from the CLI"


def _wav(ops) -> Path:
    return sorted((ops.root / "reports/synth/samples").glob("*.wav"))[0]


def test_generate_from_the_registered_champion(ops, tmp_path):
    from PIL import Image

    out = ops.sclmd("generate", str(_wav(ops)), "--model", "models:/sclmd@champion", "-o", str(tmp_path))
    assert "1 of 1 files done" in out.stdout
    png = tmp_path / (_wav(ops).stem + ".png")
    assert Image.open(png).size == (64, 64)
    bad = ops.sclmd(
        "generate", str(_wav(ops)), "--model", "models:/sclmd@nosuchalias", "-o", str(tmp_path), check=False
    )
    assert bad.returncode == 2 and "--model models:/sclmd@nosuchalias" in bad.stderr


def _post(port: int, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _serve_champion(ops, attempts: int = 3) -> tuple[subprocess.Popen, int]:
    """`mlflow models serve` of @champion on a free port, once it answers /ping: (the server, its port).

    The port is free when chosen, but the server binds it only after loading the model, seconds
    later; a server started meanwhile by the other test worker can take it. Then this one exits
    with "address already in use", and it is started again on another port."""
    log_path = ops.root / ".infra" / "logs" / "serve.log"
    for attempt in range(attempts):
        port = free_port()
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    "models:/sclmd@champion",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-w",
                    "1",
                ],
                cwd=ops.root,
                env=clean_env(ops.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while server.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                return server, port
            except OSError:
                if time.monotonic() > deadline:
                    os.killpg(server.pid, signal.SIGTERM)
                    raise AssertionError("mlflow models serve did not start: " + log_path.read_text()[-3000:])
                time.sleep(0.5)
        text = log_path.read_text()
        if "address already in use" not in text or attempt == attempts - 1:
            raise AssertionError(text[-3000:])


def test_mlflow_models_serve_answers_audio_with_a_face_and_bad_requests_with_4xx(ops):
    from PIL import Image

    server, port = _serve_champion(ops)
    try:
        audio = base64.b64encode(_wav(ops).read_bytes()).decode()
        code, answer = _post(
            port, {"dataframe_split": {"columns": ["audio"], "data": [[audio]]}, "params": {"samples": 2, "seed": 1}}
        )
        assert code == 200, answer
        faces = answer["predictions"]
        assert [(f["input"], f["sample"]) for f in faces] == [(0, 0), (0, 1)]
        assert Image.open(io.BytesIO(base64.b64decode(faces[0]["image"]))).size == (64, 64)
        noise = base64.b64encode(b"definitely not audio").decode()
        for body, words in [
            ({"dataframe_split": {"columns": ["audio"], "data": [["%%% not base64"]]}}, "base64"),
            ({"dataframe_split": {"columns": ["audio"], "data": [[noise]]}}, "row 0: unusable audio"),
            ({"dataframe_split": {"columns": ["path"], "data": [["/etc/passwd"]]}}, "reads no paths"),
            ({"dataframe_split": {"columns": ["audio"], "data": [[audio]]}, "params": {"samples": 99}}, "samples"),
            (b"{not json", ""),
        ]:
            code, answer = _post(port, body)
            assert 400 <= code < 500, (code, answer)
            assert words in answer.get("message", ""), answer
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_register_by_hand_finds_the_workspace_model_already_registered(ops):
    # the set_params run restored the workspace to the first run's model: version 1
    out = ops.sclmd("register")
    assert "already registered: sclmd version 1 (@challenger)" in out.stdout


def test_dvc_push_and_pull_through_the_default_remote(ops):
    remote = (ops.root / ".dvc" / "../../sclmd-dvc-remote").resolve()
    ops.run(str(BIN / "dvc"), "push", "--quiet")
    assert remote.is_dir() and any(remote.rglob("*"))
    shutil.rmtree(ops.root / "models" / "ldm")
    shutil.rmtree(ops.root / ".dvc" / "cache")
    # --allow-missing: the talker's stages (`make talker`) never ran in this project, so they have nothing to pull
    ops.run(str(BIN / "dvc"), "pull", "--quiet", "--allow-missing")
    assert (ops.root / "models" / "ldm" / "sclmd.json").exists()
    assert json.loads(ops.run(str(BIN / "dvc"), "status", "--json", *STAGE_ORDER).stdout or "{}") == {}


def test_infra_down_leaves_nothing_running(ops):
    from sclmd.infra import _group_alive, read_services

    services = read_services(ops.root)
    assert len(services) == 3
    out = ops.sclmd("infra", "down")
    assert "all stopped" in out.stdout
    assert not any(_group_alive(s.pid) for s in services.values())
    for port in ops.ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    assert "nothing started" in ops.sclmd("infra", "status").stdout
