"""Multi-process training: the contrastive loss sees every process's negatives.

Two real processes (torch.multiprocessing, gloo on 127.0.0.1) each hold half of a batch.  Their
gathered loss, averaged as DDP averages gradients, must equal one process's loss on the whole
batch, and so must the gradients of the encoders' parameters.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

pytestmark = pytest.mark.slow

BATCH, DIM = 8, 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        if rank == 0:
            torch.save({"loss": loss / world, "grads": [g / world for g in grads]}, out)
    finally:
        dist.destroy_process_group()


def test_two_process_gathered_loss_and_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    from sclmd.train.pretrain import contrastive_loss

    out = str(tmp_path / "two.pt")
    mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)

    one_loss, one_grads = loss_and_grads(torch.arange(BATCH), *encoders_and_batch())
    assert two["loss"].item() == pytest.approx(one_loss.item(), rel=1e-5)
    for a, b in zip(two["grads"], one_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    # without gathering, each process would see only its own half as negatives: a different loss
    speech_net, face_net, logit_scale, voices, faces = encoders_and_batch()
    with torch.no_grad():
        halves = [contrastive_loss(logit_scale.exp() * torch.nn.functional.normalize(speech_net(voices[r]), dim=-1)
                                   @ torch.nn.functional.normalize(face_net(faces[r]), dim=-1).T)
                  for r in (torch.arange(0, BATCH, 2), torch.arange(1, BATCH, 2))]
    assert abs((sum(halves) / 2).item() - one_loss.item()) > 1e-3
