"""Running a training stage in several processes: one switch from a laptop to a GPU host.

`sclmd stage pretrain` with `launch.processes` (or SCLMD_PROCESSES) N > 1 starts itself again
under `accelerate launch` in N processes on this host: one per GPU (NCCL), or on CPU with gloo.
Process 0 does everything a single-process stage does (MLflow run, evaluation, outputs); the
others only join the training loop (the stage module's `follow`).

Under a launcher the user started (`accelerate launch` on several nodes, torchrun, SLURM),
WORLD_SIZE is set and nothing is launched again: each process runs its part directly.

A launched process dies with its launcher (`die_with_parent`): torchrun starts each process in
a session of its own, so killing the launcher (a scheduler's SIGKILL, an OOM kill) would otherwise
leave them training on, and writing into a folder that the next run resumes from.

Accelerate 1.x starts several CPU processes only through mpirun (`--cpu --num_processes 2` starts
one); its torchrun launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=true gives gloo processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from sclmd.errors import SclmdError

PROCESSES_ENV = "SCLMD_PROCESSES"


def requested_processes(configured: int) -> int:
    """SCLMD_PROCESSES when set, else params.yaml's `launch.processes`."""
    raw = os.environ.get(PROCESSES_ENV, "").strip()
    if not raw:
        return configured
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SclmdError(f"{PROCESSES_ENV}={raw!r}: expected a whole number of processes, 1 or more")
    return value


def launched() -> bool:
    """True inside a process group a launcher started (accelerate launch, torchrun, mpirun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def process_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> None:
    """Linux: have the kernel send this process `sig` when its parent dies (PR_SET_PDEATHSIG);
    when the parent is already gone, exit now.  Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, int(sig), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(processes: int, args: list[str], *, cpu: bool, port: int) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch` command (and environment) running `python -m sclmd ARGS` in
    `processes` processes on this host, rendezvous on 127.0.0.1:`port`."""
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // processes)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
        "--num_cpu_threads_per_process",
        str(threads),
        "--dynamo_backend",
        "no",
        # the stage chooses its precision itself (params' mixed_precision); this only quiets the launcher
        "--mixed_precision",
        "no",
        "-m",
        "sclmd",
        *args,
    ]
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    env["OMP_NUM_THREADS"] = str(threads)
    return cmd, env


def launch_stage(name: str, processes: int) -> None:
    """Run `sclmd stage NAME` in `processes` processes and wait; the processes' output is ours."""
    import torch

    cpu = not torch.cuda.is_available()  # SCLMD_DEVICE=cpu has hidden the GPUs already (apply_device_choice)
    if not cpu and processes > torch.cuda.device_count():
        raise SclmdError(
            f"{name}: {processes} processes asked for ({PROCESSES_ENV} or launch.processes) but this host "
            f"has {torch.cuda.device_count()} visible GPU(s). Ask for at most that many, or make more "
            "visible with CUDA_VISIBLE_DEVICES."
        )
    cmd, env = launch_command(processes, ["stage", name], cpu=cpu, port=free_port())
    print(
        f"{name}: launching {processes} processes ({'CPU, gloo' if cpu else 'one per GPU, NCCL'}): "
        + " ".join(cmd[1:]),
        flush=True,
    )
    # SIGTERM: the launcher then stops the training processes itself
    code = subprocess.run(cmd, env=env, preexec_fn=lambda: die_with_parent(signal.SIGTERM)).returncode
    if code != 0:
        raise SclmdError(
            f"{name}: the {processes}-process run failed (exit {code}); the output above says which "
            "process failed and why. A checkpoint it wrote is resumed by the next run."
        )
