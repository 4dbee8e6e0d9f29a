"""The packed store that `prepare` writes and every training stage streams.

Layout of a prepared folder:

    manifest.parquet              one row per clip (see MANIFEST_COLUMNS)
    info.json                     shapes, sample rate, source, counts
    rejects.csv                   what was skipped, and why
    shards/<split>-<NNNNN>.audio.npy   int16  [n, clip_samples]
    shards/<split>-<NNNNN>.faces.npy   uint8  [n, H, W, 3]

Why uncompressed .npy shards: a batch is a handful of memory-mapped slices,
with no per-sample file open, decode or resample, and the OS page cache does the
caching (see benchmarks/dataloader.py for the measured gain over wav/png files).
int16 audio halves the bytes of float32 and is exact for 16-bit sources; the
float conversion happens on the batch, where it is one vectorised op.
Shards are written one per ingestion task, so prep fans out without a gather of
big arrays, and no shard is ever rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from sclmd.errors import SclmdError
from sclmd.io import is_inside

MANIFEST = "manifest.parquet"
INFO = "info.json"
REJECTS = "rejects.csv"
SHARDS = "shards"
SPLITS = ("train", "val", "test")

MANIFEST_COLUMNS = [
    "clip_id",
    "speaker_id",
    "split",
    "source",
    "audio_file",  # shard, relative to the prepared folder
    "audio_index",  # row in that shard
    "face_file",
    "face_index",
    "gender",  # "f" | "m" | None
    "age",  # years | NaN
    "duration_s",  # of the source audio before looping / cutting
    "orig_sample_rate",
    "sample_rate",
    "audio_source",  # the raw file it came from, relative to the source root
    "face_source",
]


def shard_names(split: str, index: int) -> tuple[str, str]:
    stem = f"{SHARDS}/{split}-{index:05d}"
    return f"{stem}.audio.npy", f"{stem}.faces.npy"


def read_manifest(prepared: Path) -> pd.DataFrame:
    path = Path(prepared) / MANIFEST
    if not path.exists():
        raise SclmdError(f"{path}: no manifest. Is {prepared} a prepared folder? Run `sclmd stage prepare` first.")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise SclmdError(f"{path}: not a readable parquet manifest ({e}). Re-run `sclmd stage prepare`.") from None


def read_info(prepared: Path) -> dict:
    path = Path(prepared) / INFO
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SclmdError(f"{path}: missing. Re-run `sclmd stage prepare`.") from None
    except json.JSONDecodeError as e:
        raise SclmdError(f"{path}: not valid JSON ({e}). Re-run `sclmd stage prepare`.") from None


@dataclass(frozen=True)
class Batch:
    audio: torch.Tensor  # int16 [B, clip_samples]
    face: torch.Tensor  # uint8 [B, H, W, 3]
    index: torch.Tensor  # int64 [B], rows of the split's manifest

    def audio_float(self) -> torch.Tensor:
        return self.audio.float() / 32768.0

    def face_float(self) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1], the range the models use."""
        return face_float(self.face)


def face_float(face: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1], the range the models use."""
    return face.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class PackedClips(Dataset):
    """One split of a prepared folder, read through memory maps.

    Implements `__getitems__`, so a DataLoader fetches a whole batch with one
    fancy-index per shard instead of one call per sample.
    """

    def __init__(self, prepared: Path, split: str):
        self.prepared = Path(prepared).resolve()
        manifest = read_manifest(self.prepared)
        rows = manifest[manifest["split"] == split].reset_index(drop=True)
        if rows.empty:
            raise SclmdError(f"{self.prepared}: split '{split}' has no clips")
        self.rows = rows
        for column in ("audio_file", "face_file"):
            for rel in rows[column].unique():
                if not is_inside(self.prepared / rel, self.prepared):
                    raise SclmdError(
                        f"{self.prepared / MANIFEST}: {column} '{rel}' points outside the data root "
                        f"{self.prepared}. Re-run `sclmd stage prepare`; never edit paths by hand."
                    )
        self._audio_file = rows["audio_file"].to_numpy()
        self._audio_index = rows["audio_index"].to_numpy(dtype=np.int64)
        self._face_file = rows["face_file"].to_numpy()
        self._face_index = rows["face_index"].to_numpy(dtype=np.int64)
        self._maps: dict[str, np.ndarray] = {}  # opened lazily, per DataLoader worker

    def __len__(self) -> int:
        return len(self.rows)

    def _map(self, rel: str) -> np.ndarray:
        arr = self._maps.get(rel)
        if arr is None:
            arr = np.load(self.prepared / rel, mmap_mode="r")
            self._maps[rel] = arr
        return arr

    def _gather(self, files: np.ndarray, index: np.ndarray, idx: np.ndarray) -> np.ndarray:
        wanted_files = files[idx]
        wanted_rows = index[idx]
        first = self._map(wanted_files[0])
        out = np.empty((len(idx),) + first.shape[1:], dtype=first.dtype)
        for rel in np.unique(wanted_files):
            sel = np.nonzero(wanted_files == rel)[0]
            rows = wanted_rows[sel]
            order = np.argsort(rows)  # sorted reads are sequential on disk
            out[sel[order]] = self._map(rel)[rows[order]]
        return out

    def audio(self, indices) -> torch.Tensor:
        """int16 [B, clip_samples] of these rows."""
        return torch.from_numpy(self._gather(self._audio_file, self._audio_index, np.asarray(indices, dtype=np.int64)))

    def faces(self, indices) -> torch.Tensor:
        """uint8 [B, H, W, 3] of these rows."""
        return torch.from_numpy(self._gather(self._face_file, self._face_index, np.asarray(indices, dtype=np.int64)))

    def faces_float(self, indices) -> torch.Tensor:
        """float [B, 3, H, W] in [-1, 1] of these rows."""
        return face_float(self.faces(indices))

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        return Batch(self.audio(idx), self.faces(idx), torch.from_numpy(idx))

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])


def _identity(batch: Batch) -> Batch:
    return batch


def make_loader(
    dataset: PackedClips,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    multiprocessing_context: str | None = None,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=_identity,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
    )
