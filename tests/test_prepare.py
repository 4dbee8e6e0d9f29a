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
        np.testing.assert_array_equal(
            batch.face[i].numpy(), np.asarray(Image.open(raw / row["face_source"]).convert("RGB"))
        )
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


def test_prepare_on_a_separate_dask_scheduler_and_workers_matches_a_local_run(tiny_project, tmp_path):
    """`prepare.dask_address`: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1,
    as a cluster's would be; the shards are byte-identical to the local cluster's (tiny_project)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from distributed import Client

    from sclmd.launch import free_port

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    root = make_project(tmp_path / "project", {"prepare": {"dask_address": address}})
    shutil.copytree(tiny_project / "data/raw", root / "data/raw")
    cluster = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        cluster += [
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--no-nanny",
                    "--name",
                    f"worker-{i}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2 and all(w["host"] == "127.0.0.1" for w in workers.values())
            metrics = prepare.run(load_params(root / "params.yaml"), root)
            # the shards were packed by the two worker processes, not by this one
            assert {p.pid for p in cluster[1:]} == set(client.run(os.getpid).values())
        assert metrics["clips"] == 24
        local, remote = tiny_project / "data/prepared", root / "data/prepared"
        files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file() and p.name != "info.json")
        assert files == sorted(
            p.relative_to(remote) for p in remote.rglob("*") if p.is_file() and p.name != "info.json"
        )
        assert any(str(f).startswith("shards") for f in files)
        for f in files:
            assert (local / f).read_bytes() == (remote / f).read_bytes(), f
    finally:
        for proc in reversed(cluster):
            proc.terminate()
        deadline = time.time() + 30
        for proc in cluster:
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert all(proc.returncode is not None for proc in cluster)  # nothing left running
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the scheduler's port is closed
