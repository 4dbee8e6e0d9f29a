"""Faces for the first stage: VoxSynth's renderer, identities of their own, as one uint8 array.

The face autoencoder learns to draw faces, not speakers, so it is trained on many more
faces than the clips carry: `train_speakers` x `faces_per_speaker` portraits of identities
sampled with `first_stage.data_seed` (the pipeline's VoxSynth uses `synth.seed`), so no
speaker of any pipeline split is among them. Val and test identities come from two more
seeds of their own. Each face has its own random stream (seed, split, speaker, face), so a
bank is the same bytes whatever the worker count.

A bank is cached as `<split>.npz` (faces [N, H, W, 3] uint8, speaker ids) under the stage's
workspace, keyed by everything that shapes it; a bank of other settings is rendered again.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sclmd.io import atomic_file

SPLITS = {"train": 0, "val": 1, "test": 2}  # added to data_seed's stream: three disjoint identity sets


def _render_speaker(job: tuple) -> np.ndarray:
    from sclmd.data.voxsynth.face import render_face

    attrs, seed, split, index, faces, size, supersample, framing = job
    out = np.empty((faces, size, size, 3), dtype=np.uint8)
    for k in range(faces):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS[split], index, k)))
        out[k] = np.asarray(render_face(attrs, rng, size, supersample, framing))
    return out


def bank_key(split: str, speakers: int, faces: int, seed: int, size: int, supersample: int, framing: float) -> str:
    blob = json.dumps([split, speakers, faces, seed, size, supersample, framing, 1]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def render_bank(
    split: str,
    speakers: int,
    faces: int,
    seed: int,
    size: int,
    supersample: int,
    framing: float,
    workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(faces [speakers * faces, size, size, 3] uint8, speaker id per face)."""
    from tqdm import tqdm

    from sclmd.data.voxsynth.attributes import sample_speakers

    # Each split samples its own identities: seed, seed + 1000 and seed + 2000 never collide with
    # one another or with a pipeline's synth.seed unless a user picks those numbers on purpose.
    people = sample_speakers(speakers, seed + 1000 * SPLITS[split])
    jobs = [(a, seed, split, i, faces, size, supersample, framing) for i, a in enumerate(people)]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    bar = tqdm(total=len(jobs), desc=f"first stage: rendering {split} faces", unit="speaker", disable=not progress)
    parts = []
    if workers == 1:
        for job in jobs:
            parts.append(_render_speaker(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_render_speaker, jobs, chunksize=max(1, len(jobs) // (workers * 16))):
                parts.append(part)
                bar.update()
    bar.close()
    ids = np.repeat([f"{split}-{a.speaker_id}" for a in people], faces)
    return np.concatenate(parts), ids


def load_bank(
    directory: Path,
    split: str,
    speakers: int,
    faces: int,
    seed: int,
    size: int,
    supersample: int,
    framing: float,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The cached bank of these settings, rendered (and cached) when missing or of other settings."""
    key = bank_key(split, speakers, faces, seed, size, supersample, framing)
    path = Path(directory) / f"{split}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["key"]) == key:
                    return cached["faces"], cached["speakers"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable or of an older layout: render again
    images, ids = render_bank(split, speakers, faces, seed, size, supersample, framing, workers)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, faces=images, speakers=ids.astype(str), key=np.array(key))
    return images, ids


def bank_sha256(images: np.ndarray) -> str:
    """The content hash of a bank's faces (the model card's data hash)."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
