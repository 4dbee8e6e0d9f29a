"""Training in several processes: what every training loop does the same way.

One Accelerator set-up for every loop (`make_accelerator`), the share of a global batch a
process reads (`process_share`), metrics averaged over processes before they are logged
(`mean_over_processes`), and the end-of-training check that every process holds the same
weights (`agree_on_weights`).  Launching is `sclmd.launch`'s job.

BatchNorm: on CUDA the models' BatchNorm layers become SyncBatchNorm, so a process normalises
with the statistics of the whole global batch, as one process would.  PyTorch has no
SyncBatchNorm on CPU (gloo): there each process normalises with its own share, which is
DDP's default; the running statistics are then taken from process 0 at the end, so all
processes agree on one model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from sclmd.errors import SclmdError
from sclmd.train.precision import resolve_mixed_precision


def make_accelerator(mixed_precision: str | None):
    """Accelerate's device, mixed precision and process group for a training loop.

    `find_unused_parameters`: some steps leave parameters without a gradient (pre-training's
    autoencoder phase never runs the speech encoder; the LDM's learned null condition is unused
    in a batch that drops no condition), which DDP otherwise reports as an error.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    precision = None if mixed_precision is None else resolve_mixed_precision(mixed_precision)
    return Accelerator(
        mixed_precision=precision, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
    )


def sync_batch_norm(model: nn.Module, accelerator) -> nn.Module:
    """SyncBatchNorm where it exists (several CUDA processes); the model unchanged elsewhere."""
    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def check_divisible(name: str, sizes: Mapping[str, int], world: int) -> None:
    for key, size in sizes.items():
        if size % world:
            raise SclmdError(
                f"{name}.{key} is {size}, which does not divide evenly among {world} processes: every "
                f"process holds the same share of a global batch. Set {name}.{key} to a multiple of "
                f"{world}, or run with another number of processes."
            )


def process_share(rows: np.ndarray | torch.Tensor, rank: int, world: int):
    """This process's rows of a global batch: every world-th row from `rank`, so the shares of
    all processes are disjoint and together are the batch (its length divides by `world`)."""
    if len(rows) % world:
        raise SclmdError(f"a global batch of {len(rows)} rows does not divide among {world} processes")
    return rows[rank::world]


def mean_over_processes(
    values: Mapping[str, torch.Tensor | float], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Each value averaged over the processes of the default process group (one all-reduce for
    all of them; `device` is where the collective runs: the accelerator's), as floats.

    Every process must call it at the same step with the same keys.  With equal shares of a
    global batch, the mean of the processes' batch means is the mean over the global batch.
    """
    import torch.distributed as dist

    keys = list(values)
    local = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(local)
        local /= dist.get_world_size()
    return dict(zip(keys, local.cpu().tolist()))


def describe_agreement(processes: int, digest: str) -> str:
    """What a stage prints about a several-process run's weights ("" for one process)."""
    return f"{processes} processes, all ending with weights sha256 {digest[:16]}" if processes > 1 else ""


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def agree_on_weights(accelerator, module: nn.Module) -> str:
    """Make sure every process ends with the same weights; returns their SHA-256.

    Parameters stay equal through DDP's averaged gradients.  Buffers (BatchNorm's running
    statistics) are DDP-broadcast from process 0 before each forward, but the last step's
    update is each process's own, so they are taken from process 0 here.  Then the digests
    of all processes are compared: a difference means the processes trained different
    models, and is an error rather than a silently saved process-0 model.
    """
    if accelerator.num_processes == 1:
        return weights_digest(module)
    import torch.distributed as dist
    from accelerate.utils import gather_object

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
    digests = gather_object([weights_digest(module)])
    if len(set(digests)) != 1:
        raise SclmdError(
            "the training processes ended with different weights (SHA-256 per process: "
            + ", ".join(d[:12] for d in digests)
            + "): their gradients were not averaged. "
            "This is a bug; please report it with the command that ran."
        )
    return digests[0]
