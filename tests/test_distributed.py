"""Multi-process training.

- The contrastive loss sees every process's negatives: two real processes (torch.multiprocessing,
  gloo on 127.0.0.1) each hold half of a batch; their gathered loss, averaged as DDP averages
  gradients, must equal one process's loss on the whole batch, and so must the gradients.
- The training stages run in two processes under `accelerate launch` (gloo on CPU) through the
  same switch a user sets (`launch.processes` / SCLMD_PROCESSES): both processes end with the same
  weights, the saved model is those weights, and a two-process run killed with SIGKILL resumes
  and ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sclmd.errors import SclmdError
from sclmd.launch import free_port
from sclmd.train.distributed import mean_over_processes, process_share, weights_digest
from tests.conftest import make_project, wait_for

pytestmark = pytest.mark.slow

BATCH, DIM = 8, 6


def encoders_and_batch():
    """Two linear 'encoders', a learned logit scale and a batch of paired inputs, all seeded."""
    torch.manual_seed(0)
    speech_net, face_net = torch.nn.Linear(DIM, 4), torch.nn.Linear(DIM, 4)
    logit_scale = torch.nn.Parameter(torch.tensor(2.0))
    voices, faces = torch.randn(BATCH, DIM), torch.randn(BATCH, DIM)
    return speech_net, face_net, logit_scale, voices, faces


def loss_and_grads(rows, speech_net, face_net, logit_scale, voices, faces):
    from sclmd.train.pretrain import gathered_contrastive_loss

    def logits_of(a, b):  # as SpeechFaceModel.contrastive_logits
        return logit_scale.exp() * torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T

    loss = gathered_contrastive_loss(speech_net(voices[rows]), face_net(faces[rows]), logits_of)
    params = [*speech_net.parameters(), *face_net.parameters(), logit_scale]
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), [g.detach() for g in grads]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = torch.arange(rank, BATCH, world)  # pretrain's rows[rank::world] share
        loss, grads = loss_and_grads(rows, *encoders_and_batch())
        dist.all_reduce(loss)  # what DDP does: average over processes
        for g in grads:
            dist.all_reduce(g)
        logged = mean_over_processes({"a": float(rank), "b": torch.tensor(2.0 * rank + 1)})  # what the loops log
        if rank == 0:
            torch.save(
                {
                    "loss": loss / world,
                    "grads": [g / world for g in grads],
                    "logged": torch.tensor([logged["a"], logged["b"]]),
                },
                out,
            )
    finally:
        dist.destroy_process_group()


def test_two_process_gathered_loss_and_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    from sclmd.train.pretrain import contrastive_loss

    out = str(tmp_path / "two.pt")
    mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    assert two["logged"].tolist() == [0.5, 2.0]  # logged metrics are the mean over the processes

    one_loss, one_grads = loss_and_grads(torch.arange(BATCH), *encoders_and_batch())
    assert two["loss"].item() == pytest.approx(one_loss.item(), rel=1e-5)
    for a, b in zip(two["grads"], one_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    # without gathering, each process would see only its own half as negatives: a different loss
    speech_net, face_net, logit_scale, voices, faces = encoders_and_batch()
    with torch.no_grad():
        halves = [
            contrastive_loss(
                logit_scale.exp()
                * torch.nn.functional.normalize(speech_net(voices[r]), dim=-1)
                @ torch.nn.functional.normalize(face_net(faces[r]), dim=-1).T
            )
            for r in (torch.arange(0, BATCH, 2), torch.arange(1, BATCH, 2))
        ]
    assert abs((sum(halves) / 2).item() - one_loss.item()) > 1e-3


def test_process_shares_are_disjoint_and_cover_the_global_batch():
    batch = np.random.default_rng(0).permutation(100)[:12]
    shares = [process_share(batch, rank, 3) for rank in range(3)]
    assert sorted(np.concatenate(shares).tolist()) == sorted(batch.tolist())  # nothing dropped or duplicated
    assert all(len(s) == 4 for s in shares)
    with pytest.raises(SclmdError, match="does not divide among 5 processes"):
        process_share(batch, 0, 5)


# Two processes, checkpoints every 2 of the 2 + 18 pre-training steps (autoencoder, then joint).
TWO_PROCESSES = {"launch": {"processes": 2}, "pretrain": {"max_steps": 18, "checkpoint_every": 2}}
AGREED = re.compile(r"2 processes, all ending with weights sha256 ([0-9a-f]{16})")


def project_with_data(tmp_path, tiny_project, name: str, processes: int, dvc: bool = False):
    root = make_project(tmp_path / name, {**TWO_PROCESSES, "launch": {"processes": processes}}, dvc=dvc)
    shutil.copytree(tiny_project / "data/prepared", root / "data/prepared")
    return root


def start_sclmd(root, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`sclmd ARGS` in its own session, so that the test can kill it with all its processes."""
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    base["PATH"] = os.path.dirname(sys.executable) + os.pathsep + base["PATH"]  # dvc, for `sclmd pipeline`
    return subprocess.Popen(
        [sys.executable, "-m", "sclmd", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**base, **(env or {})},
    )


def run_sclmd(root, *args: str, env: dict | None = None) -> str:
    proc = start_sclmd(root, *args, env=env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def processes_in(folder) -> list[int]:
    """Processes whose working directory is `folder` (the stage, its launcher and the training processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == Path(folder):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_training_stages_run_in_two_processes_agree_and_resume_after_sigkill(tiny_project, tmp_path):
    from sclmd.models.speech_face import SpeechFaceModel

    # params say one process; SCLMD_PROCESSES (what `sclmd pipeline --processes` sets) says two
    straight = project_with_data(tmp_path, tiny_project, "straight", processes=1, dvc=True)
    out = run_sclmd(straight, "stage", "pretrain", env={"SCLMD_PROCESSES": "2"})
    assert "pretrain: launching 2 processes (CPU, gloo)" in out
    agreed = AGREED.search(out)
    assert agreed, out[-4000:]
    # the model process 0 saved holds exactly the weights both processes ended with
    saved = SpeechFaceModel.from_pretrained(straight / "models/pretrain")
    assert weights_digest(saved).startswith(agreed.group(1))
    assert not (straight / "checkpoints/pretrain").exists()

    killed = project_with_data(tmp_path, tiny_project, "killed", processes=2)  # params.yaml: launch.processes 2
    proc = start_sclmd(killed, "stage", "pretrain")
    wait_for(killed / "checkpoints/pretrain/step-0000004", proc)
    assert len(processes_in(killed)) >= 4  # the stage, the launcher, two training processes
    # SIGKILL to the stage and its launcher, as a scheduler or the OOM killer would; the training
    # processes run in sessions of their own (torchrun's doing) and must die with their launcher
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while processes_in(killed):
        assert time.time() < deadline, f"processes of the killed run still alive: {processes_in(killed)}"
        time.sleep(0.1)
    assert not (killed / "models/pretrain/model.safetensors").exists()

    out = run_sclmd(killed, "stage", "pretrain")
    resumed = re.search(r"resuming from \S+/step-\d{7} \(step (\d+)\)", out)
    assert resumed and 4 <= int(resumed.group(1)) < 20, out[-4000:]  # from the killed run's last checkpoint
    assert AGREED.search(out).group(1) == agreed.group(1)
    assert (killed / "models/pretrain/model.safetensors").read_bytes() == (
        straight / "models/pretrain/model.safetensors"
    ).read_bytes()

    # the LDM and the baselines on top, also in two processes; the baselines through the pipeline's switch
    run_sclmd(straight, "stage", "prior")
    out = run_sclmd(straight, "stage", "train_ldm", env={"SCLMD_PROCESSES": "2"})
    assert "train_ldm: launching 2 processes (CPU, gloo)" in out and AGREED.search(out), out[-4000:]
    assert (straight / "models/ldm").is_dir() and (straight / "reports/ldm/metrics.json").is_file()
    out = run_sclmd(straight, "pipeline", "--processes", "2", "--stage", "baselines")
    assert "baselines: launching 2 processes (CPU, gloo)" in out and "baselines=ran" in out, out[-4000:]
    assert (straight / "reports/baselines/metrics.json").is_file()
