"""`sclmd infra up | down | status | env`: the servers a team runs, on this machine.

`up` starts, all on 127.0.0.1 and all with their state under `.infra/` (gitignored):

- a Prefect server (its database in .infra/prefect),
- an MLflow tracking server (SQLite store .infra/mlflow/mlflow.db, artifacts proxied
  into .infra/mlflow/artifacts),
- a Prefect process worker polling the work pool `local`,

then creates the work pools `local` and `gpu` and applies the deployments of prefect.yaml.
Each service runs in a process group of its own; its PID, port and log are in
.infra/services.json, so `down` stops exactly what `up` started (the worker with SIGINT,
the only signal on which it stops cleanly; then SIGTERM, then SIGKILL for anything left).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sclmd.errors import SclmdError
from sclmd.orchestration import venv_tool

STATE_DIR = ".infra"
SERVICES_FILE = "services.json"
HOST = "127.0.0.1"
WORK_POOLS = ("local", "gpu")  # `gpu`'s worker runs on a GPU host: `prefect worker start --pool gpu` there
LOCAL_POOL = "local"
START_TIMEOUT_S = 180


@dataclass
class Service:
    name: str
    pid: int
    port: int | None
    log: str

    def alive(self) -> bool:
        return pid_alive(self.pid)


def _signal_zero(send, target: int) -> bool:
    """Whether `send(target, 0)` finds a process: os.kill for one pid, os.killpg for a process group."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat_fields(stat: Path) -> list[str] | None:
    """A /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None where unreadable."""
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    if not _signal_zero(os.kill, pid):
        return False
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is None or fields[0] != "Z"  # a zombie (exited, not yet reaped by its parent) is not running


def state_dir(root: Path) -> Path:
    return Path(root).resolve() / STATE_DIR


def urls(prefect_port: int, mlflow_port: int) -> dict[str, str]:
    return {
        "PREFECT_API_URL": f"http://{HOST}:{prefect_port}/api",
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{mlflow_port}",
    }


def read_services(root: Path) -> dict[str, Service]:
    path = state_dir(root) / SERVICES_FILE
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    return {name: Service(**s) for name, s in payload.get("services", {}).items()}


def _write_state(root: Path, services: dict[str, Service], env: dict[str, str]) -> None:
    from sclmd.io import write_json

    state = state_dir(root)
    write_json(state / SERVICES_FILE, {"services": {n: s.__dict__ for n, s in services.items()}, "env": env})
    (state / "env").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))


def saved_env(root: Path) -> dict[str, str]:
    path = state_dir(root) / SERVICES_FILE
    if not path.exists():
        raise SclmdError(f"no local infrastructure in {state_dir(root)}: start it with `sclmd infra up`")
    return json.loads(path.read_text()).get("env", {})


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, service: Service, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise SclmdError(
                f"{service.name} exited while starting; its log: {service.log}\n" + _tail(Path(service.log))
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SclmdError(f"{service.name} did not answer {url} within {timeout:.0f} s; its log: {service.log}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start(name: str, cmd: list[str], env: dict[str, str], root: Path, port: int | None) -> Service:
    log = state_dir(root) / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name, proc.pid, port, str(log))


def _run(cmd: list[str], env: dict[str, str], root: Path, what: str) -> str:
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise SclmdError(f"{what} failed (`{' '.join(cmd)}`):\n{(out.stdout + out.stderr).strip()[-2000:]}")
    return out.stdout


def base_env(root: Path) -> dict[str, str]:
    """The environment every service and CLI call gets: this venv first, telemetry off, loopback only."""
    env = dict(os.environ)
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_PROFILE"):
        env.pop(key, None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PREFECT_HOME"] = str(state_dir(root) / "prefect")
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["SCLMD_PROJECT_DIR"] = str(Path(root).resolve())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def up(
    root: Path,
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    deploy: bool = True,
    worker_poll_seconds: int = 5,
    echo=print,
) -> dict[str, str]:
    """Start the servers and the worker (a no-op for those already running); returns the env to use."""
    root = Path(root).resolve()
    running = {n: s for n, s in read_services(root).items() if s.alive()}
    if running:
        env = saved_env(root)
        echo(
            f"already running: {', '.join(f'{n} (pid {s.pid})' for n, s in running.items())}; "
            "`sclmd infra down` stops them"
        )
        return env
    for port, flag in ((prefect_port, "--prefect-port"), (mlflow_port, "--mlflow-port")):
        if not _port_free(port):
            raise SclmdError(f"port {port} on {HOST} is in use; choose another with {flag} N")
    state = state_dir(root)
    (state / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    endpoints = urls(prefect_port, mlflow_port)
    env = base_env(root)
    services: dict[str, Service] = {}
    try:
        services["prefect-server"] = _start(
            "prefect-server",
            [venv_tool("prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)],
            env,
            root,
            prefect_port,
        )
        mlflow_env = dict(env, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # ~30 s faster start
        services["mlflow-server"] = _start(
            "mlflow-server",
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                HOST,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{state / 'mlflow' / 'mlflow.db'}",
                "--artifacts-destination",
                str(state / "mlflow" / "artifacts"),
            ],
            mlflow_env,
            root,
            mlflow_port,
        )
        _write_state(root, services, endpoints)
        _wait_http(f"http://{HOST}:{prefect_port}/api/health", services["prefect-server"])
        echo(f"prefect server: http://{HOST}:{prefect_port}")
        _wait_http(f"http://{HOST}:{mlflow_port}/health", services["mlflow-server"])
        echo(f"mlflow server:  http://{HOST}:{mlflow_port}")
        client_env = dict(env, **endpoints)
        for pool in WORK_POOLS:
            _run(
                [venv_tool("prefect"), "--no-prompt", "work-pool", "create", pool, "--type", "process", "--overwrite"],
                client_env,
                root,
                f"creating work pool '{pool}'",
            )
        worker_env = dict(client_env, PREFECT_WORKER_QUERY_SECONDS=str(worker_poll_seconds))
        services["prefect-worker"] = _start(
            "prefect-worker",
            [
                venv_tool("prefect"),
                "worker",
                "start",
                "--pool",
                LOCAL_POOL,
                "--type",
                "process",
                "--name",
                "sclmd-local",
            ],
            worker_env,
            root,
            None,
        )
        _write_state(root, services, endpoints)
        echo(f"prefect worker: pool '{LOCAL_POOL}' (log {services['prefect-worker'].log})")
        if deploy:
            if not (root / "prefect.yaml").exists():
                raise SclmdError(f"{root}/prefect.yaml not found: run `sclmd infra up` from the project root")
            _run([venv_tool("prefect"), "--no-prompt", "deploy", "--all"], client_env, root, "applying prefect.yaml")
            echo("deployments: " + ", ".join(deployment_names(root)))
    except BaseException:
        stop(services, echo=lambda *_: None)
        (state / SERVICES_FILE).unlink(missing_ok=True)
        raise
    return endpoints


def deployment_names(root: Path) -> list[str]:
    import yaml

    config = yaml.safe_load((Path(root) / "prefect.yaml").read_text()) or {}
    return [
        f"{d.get('flow_name') or _flow_name(Path(root), str(d.get('entrypoint', '')))}/{d.get('name')}"
        for d in config.get("deployments", [])
    ]


def _flow_name(root: Path, entrypoint: str) -> str:
    """The name in `@flow(name=...)` above the entrypoint's function (Prefect names deployments by it)."""
    import re

    path, _, function = entrypoint.partition(":")
    try:
        source = (root / path).read_text()
    except OSError:
        return "?"
    match = re.search(r'@flow\(\s*name\s*=\s*"([^"]+)"[^)]*\)\s*\ndef\s+' + re.escape(function) + r"\b", source)
    return match.group(1) if match else "?"


def stop(services: dict[str, Service], grace_s: float = 20.0, echo=print) -> list[str]:
    """Stop the services (worker first, it runs flows against the servers); returns any still alive."""
    order = sorted(services.values(), key=lambda s: s.name != "prefect-worker")
    for service in order:
        if not service.alive():
            continue
        first = signal.SIGINT if service.name == "prefect-worker" else signal.SIGTERM
        for sig, wait in ((first, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(service.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(service.pid):
                time.sleep(0.2)
            if not _group_alive(service.pid):
                break
        echo(f"stopped {service.name} (pid {service.pid})")
    return [s.name for s in services.values() if _group_alive(s.pid)]


def _group_alive(pgid: int) -> bool:
    """Any live process in the group (the service's own children too, e.g. uvicorn workers, flow runs)."""
    if not _signal_zero(os.killpg, pgid):
        return False
    if not Path("/proc").is_dir():
        return True
    for entry in Path("/proc").iterdir():
        fields = _stat_fields(entry / "stat") if entry.name.isdigit() else None
        if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def down(root: Path, echo=print) -> None:
    services = read_services(root)
    if not services:
        echo("nothing running (no .infra/services.json)")
        return
    left = stop(services, echo=echo)
    if left:
        raise SclmdError(f"still running after SIGKILL: {', '.join(left)}")
    (state_dir(root) / SERVICES_FILE).unlink(missing_ok=True)
    echo("all stopped; state kept in " + str(state_dir(root)))


def status(root: Path) -> list[tuple[str, int, str, str]]:
    return [
        (n, s.pid, "running" if s.alive() else "stopped", f"{HOST}:{s.port}" if s.port else "-")
        for n, s in read_services(root).items()
    ]
