"""The Great Expectations data contract, on good and deliberately broken folders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sclmd.config import DataParams, ValidateParams
from sclmd.errors import SclmdError
from sclmd.stages.validate import check


def edit_manifest(prepared, fn):
    path = prepared / "manifest.parquet"
    frame = pd.read_parquet(path)
    fn(frame)
    frame.to_parquet(path, index=False)
    return frame


def failed(result) -> dict[str, dict]:
    return {c["why"]: c for c in result.failures}


def test_good_folder_passes(prepared_copy, tmp_path):
    result = check(prepared_copy, DataParams(), ValidateParams(), tmp_path / "report.json")
    assert result.success, result.summary(prepared_copy)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["success"] and report["n_failed"] == 0 and report["n_expectations"] >= 25


def test_missing_file_names_the_clips(prepared_copy):
    frame = pd.read_parquet(prepared_copy / "manifest.parquet")
    victim = frame["face_file"].iloc[0]
    (prepared_copy / victim).unlink()
    result = check(prepared_copy, DataParams(), ValidateParams())
    fails = failed(result)
    assert "face file present" in fails
    n_missing = int((frame["face_file"] == victim).sum())
    assert fails["face file present"]["unexpected_count"] == n_missing
    assert fails["face file present"]["examples"][0]["clip_id"] in set(
        frame.loc[frame["face_file"] == victim, "clip_id"]
    )
    assert "face file present" in result.summary(prepared_copy)


def test_duplicated_clip_id(prepared_copy):
    def dup(frame):
        frame.loc[1, "clip_id"] = frame.loc[0, "clip_id"]

    frame = edit_manifest(prepared_copy, dup)
    fails = failed(check(prepared_copy, DataParams(), ValidateParams()))
    assert fails["clip ids are unique"]["unexpected_count"] == 2
    assert {e["clip_id"] for e in fails["clip ids are unique"]["examples"]} == {frame.loc[0, "clip_id"]}


def test_speaker_in_two_splits(prepared_copy):
    def leak(frame):
        row = frame.index[frame["split"] == "train"][0]
        frame.loc[row, "split"] = "test"

    edit_manifest(prepared_copy, leak)
    fails = failed(check(prepared_copy, DataParams(), ValidateParams()))
    assert "each speaker in exactly one split" in fails


def test_path_escaping_the_data_root_is_not_opened(prepared_copy, tmp_path):
    outside = tmp_path / "outside.audio.npy"

    np.save(outside, np.zeros((4, 96000), dtype=np.int16))  # a valid shard, but outside the root

    def escape(frame):
        frame.loc[0, "audio_file"] = "../outside.audio.npy"

    edit_manifest(prepared_copy, escape)
    result = check(prepared_copy, DataParams(), ValidateParams())
    fails = failed(result)
    assert "audio path inside the data root" in fails
    assert fails["audio path inside the data root"]["unexpected_count"] == 1
    # never opened: the file facts of an escaping path are not measured
    assert "audio file present" in fails


def test_gender_imbalance_and_silence(prepared_copy):
    def skew(frame):
        frame.loc[frame["split"] == "train", "gender"] = "f"

    edit_manifest(prepared_copy, skew)
    fails = failed(check(prepared_copy, DataParams(), ValidateParams(min_rms_dbfs=0.0)))
    assert "gender balance in train (share of women)" in fails
    assert fails["gender balance in train (share of women)"]["examples"][0]["value"] == 1.0
    assert "audible clips" in fails


def test_wrong_shapes_against_params(prepared_copy):
    fails = failed(check(prepared_copy, DataParams(image_size=32, clip_seconds=3.0), ValidateParams()))
    assert {"face image shape", "clip length in samples"} <= set(fails)


def test_no_or_broken_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(SclmdError, match="no manifest"):
        check(tmp_path, DataParams(), ValidateParams())
    (tmp_path / "manifest.parquet").write_bytes(b"garbage")
    with pytest.raises(SclmdError, match="not a readable parquet"):
        check(tmp_path, DataParams(), ValidateParams(), tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["success"] is False


def test_cli_validate_exit_codes(prepared_copy, tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "sclmd", "validate", str(prepared_copy)], cwd=tmp_path, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "PASSED" in ok.stdout
    edit_manifest(prepared_copy, lambda f: f.__setitem__("clip_id", "same"))
    bad = subprocess.run(
        [sys.executable, "-m", "sclmd", "validate", str(prepared_copy), "--report", str(tmp_path / "r.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and "clip ids are unique" in bad.stdout and "clip same" in bad.stdout
    assert "Traceback" not in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "sclmd", "validate", str(tmp_path / "nope")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no manifest" in missing.stderr
