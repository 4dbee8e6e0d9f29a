"""Stage `prepare` on a tiny VoxSynth set, through Prefect's Dask task runner."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from sclmd.config import load_params
from sclmd.data.store import MANIFEST_COLUMNS, PackedClips, make_loader, read_manifest
from sclmd.errors import SclmdError
from sclmd.stages import prepare
from tests.conftest import make_project


def test_manifest_splits_and_packed_content(tiny_project):
    prepared = tiny_project / "data/prepared"
    manifest = read_manifest(prepared)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 12 * 2
    assert manifest["clip_id"].is_unique
    assert (manifest.groupby("speaker_id")["split"].nunique() == 1).all()
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert set(manifest["gender"]) == {"f", "m"}
    # The packed bytes are exactly the source: 16-bit 16 kHz 6 s wavs and 64 px pngs.
    raw = tiny_project / "data/raw/voxsynth"
    ds = PackedClips(prepared, "train")
    batch = ds.__getitems__(list(range(len(ds))))
    assert batch.audio.dtype.is_floating_point is False and batch.audio.shape[1] == 96000
    for i, row in ds.rows.iterrows():
        wav, sr = sf.read(raw / row["audio_source"], dtype="int16")
        assert sr == 16000
        np.testing.assert_array_equal(batch.audio[i].numpy(), wav)
        np.testing.assert_array_equal(batch.face[i].numpy(), np.asarray(Image.open(raw / row["face_source"]).convert("RGB")))
    assert batch.face_float().shape == (len(ds), 3, 64, 64)
    assert -1.0 <= float(batch.face_float().min()) and float(batch.face_float().max()) <= 1.0


def test_loader_streams_batches_in_seeded_order(tiny_project):
    ds = PackedClips(tiny_project / "data/prepared", "train")
    order = lambda seed: [b.index.tolist() for b in make_loader(ds, 4, shuffle=True, seed=seed)]  # noqa: E731
    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(sum(order(1), [])) == list(range(len(ds)))


def test_bad_clips_are_counted_skips_with_reasons(tiny_project, tmp_path):
    root = make_project(tmp_path / "p")
    raw = root / "data/raw/voxsynth"
    shutil.copytree(tiny_project / "data/raw/voxsynth", raw)
    speakers = sorted(p.name for p in (raw / "wav").iterdir())
    sf.write(raw / "wav" / speakers[0] / "00.wav", np.zeros(96000, dtype=np.int16), 16000, subtype="PCM_16")
    (raw / "faces" / speakers[1] / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    metrics = prepare.run(load_params(root / "params.yaml"), root)
    assert metrics["rejected"] == 2 and metrics["clips"] == 22
    assert metrics["rejected_by_reason"] == {"silent": 1, "not a readable image": 1}
    rejects = pd.read_csv(root / "data/prepared/rejects.csv")
    assert len(rejects) == 2
    reasons = " ".join(rejects["reason"]).lower()
    assert "silent" in reasons
    assert "image" in reasons or "png" in reasons
    assert set(rejects["clip_id"]) == {f"{speakers[0]}_0", f"{speakers[1]}_1"}


def test_fatal_error_leaves_earlier_output_intact(tiny_project, tmp_path):
    root = make_project(tmp_path / "p", {"prepare": {"voxsynth_dir": "data/raw/nowhere"}})
    shutil.copytree(tiny_project / "data/prepared", root / "data/prepared")
    before = (root / "data/prepared/manifest.parquet").read_bytes()
    with pytest.raises(SclmdError, match="nowhere"):
        prepare.run(load_params(root / "params.yaml"), root)
    assert (root / "data/prepared/manifest.parquet").read_bytes() == before
    assert sorted(p.name for p in (root / "data").iterdir()) == ["prepared"]  # no temp folder left behind
