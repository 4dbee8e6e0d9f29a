"""Speaker-disjoint train / val / test splits.

Speakers, not clips, are split: a model must be judged on voices it never heard.
Within each gender (and the unknown-gender group) speakers are shuffled with the
seed and cut by the fractions, so every split keeps the gender balance.
"""

from __future__ import annotations

import numpy as np

from sclmd.config import SplitFractions
from sclmd.data.records import RawClip
from sclmd.errors import SclmdError


def _cut(n: int, fractions: SplitFractions) -> tuple[int, int]:
    """Number of train and val speakers out of n; val and test get one each when n allows."""
    n_val = int(round(n * fractions.val))
    n_test = int(round(n * fractions.test))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = max(n - n_val - n_test, 0)
    return n_train, n_val


def assign_splits(clips: list[RawClip], fractions: SplitFractions, seed: int) -> dict[str, str]:
    """speaker_id -> split name."""
    gender_of: dict[str, str] = {}
    for clip in clips:
        gender_of.setdefault(clip.speaker_id, clip.gender or "?")
    speakers = sorted(gender_of)
    if len(speakers) < 3:
        raise SclmdError(
            f"only {len(speakers)} usable speaker(s); speaker-disjoint train/val/test splits need at least 3"
        )
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    groups = sorted({g for g in gender_of.values()})
    for gender in groups:
        group = [s for s in speakers if gender_of[s] == gender]
        group = [group[i] for i in rng.permutation(len(group))]
        n_train, n_val = _cut(len(group), fractions)
        for i, speaker in enumerate(group):
            split_of[speaker] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    # Small groups can leave a split empty; move one speaker from train so none is.
    for split in ("val", "test"):
        if split not in split_of.values():
            donors = sorted(s for s, sp in split_of.items() if sp == "train")
            split_of[donors[int(rng.integers(len(donors)))]] = split
    return split_of
