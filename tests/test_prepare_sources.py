"""`prepare` end to end on tiny real-format trees: AVSpeech mp4s, VoxCeleb1 wavs, VoxCeleb2 m4as.

Each tree is written on the fly (PyAV for video and AAC), ingested through the
real stage (Prefect + Dask), and checked by the data contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sclmd.config import DataParams, ValidateParams, load_params
from sclmd.data.store import PackedClips, read_manifest
from sclmd.stages import prepare
from sclmd.stages.validate import check
from tests.conftest import make_project
from tests.media import make_avspeech_tree, make_voxceleb1_tree, make_voxceleb2_tree

pytestmark = pytest.mark.slow


def prepare_source(tmp_path, source: str, section: dict):
    # the fixtures' faces are drawn discs, not photos: cropped by the given centre, not detected
    # (detection on real photos: tests/test_prepare_faces.py)
    root = make_project(tmp_path / "project", {"prepare": {"source": source, "face_detector": "none", **section}})
    metrics = prepare.run(load_params(root / "params.yaml"), root)
    prepared = root / "data/prepared"
    result = check(prepared, DataParams(), ValidateParams(gender_balance_tolerance=0.5))
    assert result.success, result.summary(prepared)
    return metrics, read_manifest(prepared), prepared


def test_avspeech_videos_cut_and_cropped_missing_ones_counted(tmp_path):
    params = make_avspeech_tree(tmp_path / "raw", n_videos=5, missing=2, full_videos=1)
    metrics, manifest, prepared = prepare_source(
        tmp_path, "avspeech", {"avspeech": {"csv": params.csv, "videos_dir": params.videos_dir}}
    )
    assert metrics["clips"] == 3 and metrics["rejected"] == 2
    assert metrics["rejected_by_reason"] == {"video not downloaded": 2}
    assert manifest["gender"].isna().all() and set(manifest["source"]) == {"avspeech"}
    assert np.allclose(manifest["duration_s"], 2.0, atol=0.05)  # the [start, end] segment, not the file
    rejects = pd.read_csv(prepared / "rejects.csv")
    assert list(rejects["reason"]) == ["video not downloaded"] * 2
    batch = PackedClips(prepared, "train")[0]
    assert batch.audio.shape == (1, 96000) and batch.face.shape == (1, 64, 64, 3)


@pytest.mark.parametrize("version", ["voxceleb1", "voxceleb2"])
def test_voxceleb_trees(tmp_path, version):
    make_tree = make_voxceleb1_tree if version == "voxceleb1" else make_voxceleb2_tree
    params = make_tree(tmp_path / "raw", n_speakers=4)
    metrics, manifest, _ = prepare_source(tmp_path, version, {version: params.model_dump()})
    expected = 4 * (2 * 2 if version == "voxceleb1" else 1 * 2)
    assert metrics["clips"] == expected and metrics["rejected"] == 0
    assert manifest.groupby("speaker_id")["split"].nunique().eq(1).all()
    assert set(manifest["gender"]) == {"m", "f"}
    assert (manifest["orig_sample_rate"] == 16000).all()
    assert np.allclose(manifest["duration_s"], 1.5, atol=0.05)
