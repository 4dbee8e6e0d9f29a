"""Realism by a classifier two-sample test (C2ST): can a small CNN tell generated faces from real ones?

A tiny network of its own (three stride-2 conv blocks, 16-32-64 channels, global pooling, one
logit; not the judges, which were trained to ignore exactly the blur a decoder adds) learns
"real" vs "generated" on part of the faces and is scored on the rest, by k-fold
cross-validation with folds split by group (the speaker), so a speaker's faces are never on
both sides of a split.  The held-out accuracy is the measure: 0.5 when the two sets cannot be
told apart, 1.0 when every face is told apart.  Unlike a Fréchet distance between judge
features, it fails on bad pictures (blur, colour blobs) that a feature space may not see.

The interval is Wilson's 95% score interval over the held-out predictions: it counts the
test faces' sampling noise, not the variation between trainings of the classifier.
Deterministic for a seed on one machine (its own generator and a forked global RNG);
augmentation-free training: Adam, a fixed number of epochs, batches of 64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TwoSampleNet(nn.Module):
    """Three stride-2 3x3 conv blocks (16, 32, 64 channels), global average pooling, one logit."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images).mean(dim=(2, 3)))[:, 0]


@dataclass
class TwoSampleResult:
    acc: float  # held-out accuracy over all folds; NaN when the test could not run
    ci: list[float]  # Wilson 95% interval of `acc`
    n: int  # held-out predictions (= faces on both sides together)
    folds: int
    note: str = ""  # why the test did not run, if it did not

    def to_dict(self) -> dict:
        return asdict(self)


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson's score interval for a binomial proportion (95% for the default z)."""
    if n <= 0:
        return [float("nan"), float("nan")]
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _not_run(note: str, folds: int) -> TwoSampleResult:
    return TwoSampleResult(float("nan"), [float("nan"), float("nan")], 0, folds, note)


def group_folds(groups: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per row: the groups shuffled, then each given to the fold with the fewest rows so far."""
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    sizes = np.zeros(folds, dtype=np.int64)
    for g in rng.permutation(len(names)):
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse]


def _train(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> None:
    positives = float(y.sum())
    pos_weight = torch.tensor((len(y) - positives) / max(positives, 1.0))  # balanced classes in the loss
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:  # batch norm needs two rows
                continue
            loss = F.binary_cross_entropy_with_logits(net(x[batch]), y[batch], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()


def classifier_two_sample_test(
    real: torch.Tensor,
    generated: torch.Tensor,
    real_groups,
    generated_groups,
    *,
    folds: int = 2,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = 1,
) -> TwoSampleResult:
    """Held-out accuracy of a small CNN telling `real` from `generated` faces ([N, 3, H, W] in [-1, 1]).

    `*_groups`: a group id per face (the speaker); folds are split by group, so no group is on
    both sides of a split.  The larger side is subsampled (seeded) to the smaller one's size,
    so a constant guess scores exactly 0.5; within a fold the loss weighs the classes equally.
    Returns NaN (with a `note`) when there are fewer groups than folds or a training fold
    lacks a class.  `threads`: torch's CPU threads while it trains (restored after; None: as
    they are).  One thread is nearly as fast for a network this small, gives the same result
    on any host, and does not collapse when another process holds a core of two.
    """
    real_groups = np.asarray(real_groups).astype(str)
    generated_groups = np.asarray(generated_groups).astype(str)
    if len(real_groups) != len(real) or len(generated_groups) != len(generated):
        raise ValueError(
            f"one group per face: {len(real)} real faces with {len(real_groups)} groups, "
            f"{len(generated)} generated with {len(generated_groups)}"
        )
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(
            f"real {tuple(real.shape[1:])} and generated {tuple(generated.shape[1:])} faces differ in shape"
        )
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(generated))
    if n < 2:
        return _not_run(f"too few faces ({len(real)} real, {len(generated)} generated)", folds)
    keep_real = np.sort(rng.choice(len(real), n, replace=False)) if len(real) > n else np.arange(n)
    keep_gen = np.sort(rng.choice(len(generated), n, replace=False)) if len(generated) > n else np.arange(n)
    x = torch.cat([real[keep_real], generated[keep_gen]]).float()
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    groups = np.concatenate([real_groups[keep_real], generated_groups[keep_gen]])
    if len(np.unique(groups)) < folds:
        return _not_run(f"{len(np.unique(groups))} groups cannot fill {folds} folds", folds)
    fold = group_folds(groups, folds, rng)
    for f in range(folds):
        if len(np.unique(y[fold != f].numpy())) < 2:
            return _not_run(f"fold {f + 1}'s training part holds only one class", folds)
    correct = 0
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):  # the network's initialisation leaves the caller's RNG alone
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            for f in range(folds):
                train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                net = TwoSampleNet()
                _train(net, x[train], y[train], epochs=epochs, batch_size=batch_size, lr=lr, generator=generator)
                with torch.no_grad():
                    logits = torch.cat([net(x[test][s : s + 256]) for s in range(0, len(test), 256)])
                correct += int(((logits > 0).float() == y[test]).sum())
    finally:
        torch.set_num_threads(before)
    total = 2 * n
    return TwoSampleResult(correct / total, wilson_interval(correct, total), total, folds)


def real_vs_real(real: torch.Tensor, groups, **kwargs) -> TwoSampleResult:
    """The sanity check: the real faces split in two halves by group (seeded), one half labelled
    "generated".  Both halves come from one distribution, so the accuracy should be near 0.5."""
    groups = np.asarray(groups).astype(str)
    names = np.unique(groups)
    rng = np.random.default_rng(kwargs.get("seed", 0) + 1)
    half = set(rng.permutation(names)[: len(names) // 2].tolist())
    second = np.array([g in half for g in groups])
    return classifier_two_sample_test(real[~second], real[second], groups[~second], groups[second], **kwargs)
