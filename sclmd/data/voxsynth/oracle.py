"""The attribute oracle: what the best possible voice-to-face model could draw on VoxSynth.

A VoxSynth voice carries three of its speaker's attributes (gender, age, size); everything else a
face shows (skin, hair, eyes, beard, glasses, features) is drawn independently of the voice
(`attributes.py`).  The oracle knows the three shared attributes exactly and renders a face of a
new identity with them: the face-only attributes drawn afresh from their distribution given
gender and age, a fresh pose and lighting.  No model that hears only the voice can know more, so
the oracle's scores are the data's ceiling for measures of identity (retrieval, feature distance)
and a reachable reference for gender and age.  Its faces are rendered, not decoded: its realism
is the renderer's, not a method's.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from sclmd.errors import SclmdError

RENDER_SETTINGS = "render.json"  # written by generate_voxsynth: how its faces were drawn
ORACLE_STREAM = 0x0A7C1E  # the oracle's own random streams, apart from the data set's


def render_settings(raw_dir: Path) -> dict | None:
    """{image_size, supersample, face_framing} of a VoxSynth folder, or None (written before they were)."""
    path = Path(raw_dir) / RENDER_SETTINGS
    return json.loads(path.read_text()) if path.is_file() else None


def oracle_faces(raw_dir: Path, speaker_ids, samples: int, seed: int) -> np.ndarray:
    """uint8 [N, samples, H, W, 3]: for each of `speaker_ids` (one per clip), `samples` faces of new
    identities with that speaker's gender, age and size.  The same seed gives the same faces."""
    from sclmd.data.voxsynth.attributes import _sample_one
    from sclmd.data.voxsynth.face import render_face
    from sclmd.data.voxsynth.generate import SPEAKERS_CSV

    raw_dir = Path(raw_dir)
    settings = render_settings(raw_dir)
    if settings is None:
        raise SclmdError(f"{raw_dir / RENDER_SETTINGS}: missing. Generate VoxSynth again (`dvc repro synth`).")
    with (raw_dir / SPEAKERS_CSV).open(newline="") as f:
        speakers = {row["speaker_id"]: row for row in csv.DictReader(f)}
    size = int(settings["image_size"])
    out = np.empty((len(speaker_ids), samples, size, size, 3), dtype=np.uint8)
    for i, speaker in enumerate(speaker_ids):
        if speaker not in speakers:
            raise SclmdError(f"{raw_dir / SPEAKERS_CSV}: no speaker '{speaker}'. Generate VoxSynth again.")
        row = speakers[speaker]
        for k in range(samples):
            streams = np.random.SeedSequence([seed, ORACLE_STREAM, i, k]).spawn(2)
            stranger = _sample_one(speaker, row["gender"], int(row["age"]), np.random.default_rng(streams[0]))
            stranger = dataclasses.replace(stranger, size=float(row["size"]))
            face = render_face(
                stranger,
                np.random.default_rng(streams[1]),
                size,
                int(settings["supersample"]),
                float(settings["face_framing"]),
            )
            out[i, k] = np.asarray(face)
    return out
