"""Training of the regression baselines (Speech2Face-style and AR-SPM) on encoded tensors.

The encoders are frozen, so the loop runs on the speech embeddings and scaled face
latents of the training split: a few seconds on a CPU for the embedded default.  The
val split picks the step to keep (early stopping), as it would for any regression.
Under `accelerate launch` each process trains on its share of every global batch (DDP).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sclmd.models.baselines import tri_item_loss
from sclmd.train.distributed import (
    agree_on_weights,
    check_divisible,
    make_accelerator,
    mean_over_processes,
    process_share,
)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def baseline_loss(method: str, ar_spm_weights: dict[str, float]) -> Loss:
    if method == "speech2face":
        return F.l1_loss
    w = ar_spm_weights
    return lambda p, t: tri_item_loss(p, t, w["l2"], w["l1"], w["cos"])


def train_regression(
    model: nn.Module,
    speech: torch.Tensor,
    target: torch.Tensor,
    loss_fn: Loss,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    desc: str,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int = 25,
    log: Callable[[dict, int], None] | None = None,
) -> dict:
    """AdamW with a cosine schedule over `steps` minibatches.

    With `val` (speech, target), the val loss is measured every `eval_every` steps and the
    model ends with the weights of the best one (early stopping): a regression on a few
    hundred speakers starts memorising them long before the schedule ends.  Returns
    {"train": [(step, loss)], "val": [(step, loss)], "best_step": int, "best_val_loss": float,
    "weights_sha256": str (the same in every process)}.
    """
    import copy

    from tqdm import tqdm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # None: whatever precision this process's Accelerate state already has (it cannot change within a process)
    accelerator = make_accelerator(None)
    rank, world = accelerator.process_index, accelerator.num_processes
    global_batch = min(batch_size, len(speech))
    check_divisible("baselines", {"batch_size": global_batch}, world)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    ddp_model, optimizer = accelerator.prepare(model, optimizer)  # `model` itself is trained (DDP wraps it)
    speech, target = speech.to(accelerator.device), target.to(accelerator.device)
    if val is not None:
        val = (val[0].to(accelerator.device), val[1].to(accelerator.device))
    history: dict = {"train": [], "val": [], "best_step": steps, "best_val_loss": float("nan")}
    best_state = None

    def check(step: int) -> None:
        nonlocal best_state
        model.eval()
        with torch.no_grad():
            value = float(loss_fn(model(val[0]), val[1]))
        model.train()
        history["val"].append((step, value))
        if not value >= history["best_val_loss"]:  # also true while best is NaN
            history["best_val_loss"], history["best_step"] = value, step
            best_state = copy.deepcopy(model.state_dict())

    model.train()
    if val is not None:
        check(0)
    for step in tqdm(range(1, steps + 1), desc=desc, unit="step", leave=False):
        rows = torch.randint(0, len(speech), (global_batch,), generator=generator)
        rows = process_share(rows, rank, world).to(accelerator.device)
        loss = loss_fn(ddp_model(speech[rows]), target[rows])
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        schedule.step()
        if step % eval_every == 0 or step == steps:
            train_loss = mean_over_processes({"loss": loss.detach()}, accelerator.device)["loss"]
            history["train"].append((step, train_loss))
            if val is not None:
                check(step)
            if log and accelerator.is_main_process:
                log({"loss": train_loss, **({"val_loss": history["val"][-1][1]} if val is not None else {})}, step)
    if best_state is not None:
        model.load_state_dict(best_state)
    history["weights_sha256"] = agree_on_weights(accelerator, model)
    model.cpu().eval()
    return history
