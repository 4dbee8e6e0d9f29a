from __future__ import annotations

from collections import Counter

import pytest

from sclmd.config import SplitFractions
from sclmd.data.records import RawClip
from sclmd.data.splits import assign_splits
from sclmd.errors import SclmdError


def clips(n_speakers: int, per: int = 3, gender=True) -> list[RawClip]:
    return [
        RawClip(
            "t", "/r", f"s{s}_{c}", f"s{s:03d}", "a.wav", "f.png", gender=("f" if s % 2 else "m") if gender else None
        )
        for s in range(n_speakers)
        for c in range(per)
    ]


def test_speaker_disjoint_balanced_and_deterministic():
    cs = clips(100)
    split_of = assign_splits(cs, SplitFractions(), seed=3)
    assert split_of == assign_splits(cs, SplitFractions(), seed=3)
    assert split_of != assign_splits(cs, SplitFractions(), seed=4)
    counts = Counter(split_of.values())
    assert counts == {"train": 80, "val": 10, "test": 10}
    for split in ("train", "val", "test"):
        women = sum(1 for s, sp in split_of.items() if sp == split and int(s[1:]) % 2)
        assert abs(women - counts[split] / 2) <= 1


def test_small_and_unlabelled_sources_still_fill_every_split():
    split_of = assign_splits(clips(3, gender=False), SplitFractions(), seed=0)
    assert sorted(split_of.values()) == ["test", "train", "val"]
    split_of = assign_splits(clips(5), SplitFractions(), seed=0)
    assert set(split_of.values()) == {"train", "val", "test"}


def test_too_few_speakers_is_a_clear_error():
    with pytest.raises(SclmdError, match="at least 3"):
        assign_splits(clips(2), SplitFractions(), seed=0)
