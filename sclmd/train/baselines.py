"""Training of the regression baselines (Speech2Face-style and AR-SPM) on encoded tensors.

The encoders are frozen, so the loop runs on the speech embeddings and scaled face
latents of the training split: a few seconds on a CPU for the embedded default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sclmd.models.baselines import tri_item_loss

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def baseline_loss(method: str, ar_spm_weights: dict[str, float]) -> Loss:
    if method == "speech2face":
        return F.l1_loss
    w = ar_spm_weights
    return lambda p, t: tri_item_loss(p, t, w["l2"], w["l1"], w["cos"])


def train_regression(model: nn.Module, speech: torch.Tensor, target: torch.Tensor, loss_fn: Loss, *, steps: int,
                     batch_size: int, lr: float, weight_decay: float, seed: int, desc: str,
                     log: Callable[[dict, int], None] | None = None) -> list[tuple[int, float]]:
    """AdamW with a cosine schedule over `steps` minibatches; returns the (step, loss) history."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history: list[tuple[int, float]] = []
    model.train()
    for step in tqdm(range(1, steps + 1), desc=desc, unit="step", leave=False):
        rows = torch.randint(0, len(speech), (min(batch_size, len(speech)),), generator=generator)
        loss = loss_fn(model(speech[rows]), target[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step == steps:
            history.append((step, float(loss.item())))
            if log:
                log({"loss": float(loss.item())}, step)
    model.eval()
    return history
