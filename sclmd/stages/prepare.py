"""Stage `prepare`: a raw source -> speaker-disjoint, packed train/val/test splits.

Reads params sections `data` and `prepare`.  The source is scanned (cheap: file
listing only), speakers are split, clips are grouped into shards, and the shards
are decoded in parallel by a Prefect flow on a Dask task runner: a local cluster
with one worker per core by default, or any Dask scheduler named in
`prepare.dask_address`.  The same code runs for 2 cores or 200 workers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from sclmd.config import DataParams, Params, PrepareParams, section_dict
from sclmd.data.ingest import ShardJob, ShardResult, pack_shard
from sclmd.data.records import RawClip, reason_kind
from sclmd.data.splits import assign_splits
from sclmd.data.store import INFO, MANIFEST, MANIFEST_COLUMNS, REJECTS, SPLITS
from sclmd.errors import SclmdError
from sclmd.io import atomic_dir, write_json

OUT_DIR = Path("data/prepared")
METRICS = Path("reports/prepare/metrics.json")
CONTACT_SHEET = Path("reports/prepare/faces.png")  # the first prepared faces, to look at before training
PARAM_SECTIONS = ("data", "prepare")
ARTIFACTS = (METRICS, CONTACT_SHEET, OUT_DIR / "rejects.csv", OUT_DIR / "info.json")


def plan_shards(clips: list[RawClip], split_of: dict[str, str], shard_size: int) -> list[ShardJob]:
    jobs: list[ShardJob] = []
    for split in SPLITS:
        members = sorted(
            (c for c in clips if split_of[c.speaker_id] == split),
            key=lambda c: (c.speaker_id, c.clip_id),
        )
        for index, start in enumerate(range(0, len(members), shard_size)):
            jobs.append(ShardJob(split, index, members[start : start + shard_size]))
    return jobs


def _task_runner(prep: PrepareParams):
    from prefect_dask import DaskTaskRunner

    if prep.dask_address:
        return DaskTaskRunner(address=prep.dask_address)
    workers = prep.workers or os.cpu_count() or 1
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,  # decoders hold the GIL; processes give real parallelism
            "processes": True,
            # Dask's dashboard, on loopback only and a free port (two runs never collide).
            "dashboard_address": ":0",
            "host": "127.0.0.1",
        }
    )


def ingest_shards(jobs: list[ShardJob], out_dir: Path, data: DataParams, prep: PrepareParams) -> list[ShardResult]:
    """Decode all shards through Prefect's Dask task runner; results in job order."""
    from prefect import flow, task

    from sclmd.orchestration import share_prefect_api

    share_prefect_api()  # before the Dask workers start: they inherit the address
    pack = task(pack_shard, name="pack-shard", task_run_name="pack-{job.split}-{job.index}")

    @flow(name="sclmd-prepare-shards", task_runner=_task_runner(prep), log_prints=True)
    def prepare_shards() -> list[ShardResult]:
        futures = [pack.submit(job, out_dir, data, prep) for job in jobs]
        return [f.result() for f in _progress(futures)]

    return prepare_shards()


def _progress(futures):
    """Resolve futures in order while a bar shows how many are done."""
    from tqdm import tqdm

    with tqdm(total=len(futures), desc="prepare: shards", unit="shard") as bar:
        for future in futures:
            future.wait()
            bar.update(1)
            yield future


def write_contact_sheet(prepared: Path, path: Path, count: int = 64, columns: int = 8) -> Path:
    """The first `count` prepared faces of the training split as one PNG grid: what training will see."""
    from PIL import Image

    from sclmd.data.store import PackedClips
    from sclmd.io import atomic_file

    train = PackedClips(prepared, "train")
    faces = train.faces(range(min(count, len(train)))).numpy()
    size = faces.shape[1]
    rows = -(-len(faces) // columns)
    sheet = Image.new("RGB", (columns * (size + 2) + 2, rows * (size + 2) + 2), (255, 255, 255))
    for i, face in enumerate(faces):
        sheet.paste(Image.fromarray(face), (2 + (i % columns) * (size + 2), 2 + (i // columns) * (size + 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def run(params: Params, root: Path) -> dict:
    from sclmd.data.sources import scan_source

    data, prep = params.data, params.prepare
    started = time.perf_counter()
    scan = scan_source(prep, root)
    if not scan.clips:
        raise SclmdError(
            f"source '{prep.source}': no clips found ({scan.skipped.total} skipped). "
            "Check the paths in params.yaml, section prepare."
        )
    split_of = assign_splits(scan.clips, prep.split, prep.seed)
    jobs = plan_shards(scan.clips, split_of, prep.shard_size)

    out = root / OUT_DIR
    with atomic_dir(out) as tmp:
        results = ingest_shards(jobs, tmp, data, prep)
        rows = [row for r in results for row in r.rows]
        # what the scan skipped: a bounded sample of each kind, all of them counted (AVSpeech: millions)
        rejects = [
            {"clip_id": item, "speaker_id": None, "split": None, "file": item, "reason": reason}
            for item, reason in scan.skipped
        ]
        decode_rejects = [rej for r in results for rej in r.rejects]
        rejects += decode_rejects
        rejected = scan.skipped.total + len(decode_rejects)
        if not rows:
            raise SclmdError(
                f"source '{prep.source}': every clip was rejected. First reasons: "
                + "; ".join(f"{r['file']}: {r['reason']}" for r in rejects[:5])
            )
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        empty = [s for s in SPLITS if not (manifest["split"] == s).any()]
        if empty:
            raise SclmdError(
                f"source '{prep.source}': split(s) {', '.join(empty)} ended up empty after rejections "
                f"({rejected} clips rejected). See the reasons with more speakers or fix the inputs."
            )
        manifest.to_parquet(tmp / MANIFEST, index=False)
        pd.DataFrame(rejects, columns=["clip_id", "speaker_id", "split", "file", "reason"]).to_csv(
            tmp / REJECTS, index=False
        )
        counts = {
            split: {
                "clips": int((manifest["split"] == split).sum()),
                "speakers": int(manifest.loc[manifest["split"] == split, "speaker_id"].nunique()),
            }
            for split in SPLITS
        }
        info = {
            "source": prep.source,
            "sample_rate": data.sample_rate,
            "clip_samples": data.clip_samples,
            "image_size": data.image_size,
            "audio_dtype": "int16",
            "face_dtype": "uint8",
            "splits": counts,
            "params": {"data": section_dict(params, "data"), "prepare": section_dict(params, "prepare")},
        }
        (tmp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    by_reason = scan.skipped.counts + Counter(reason_kind(r["reason"]) for r in decode_rejects)
    metrics = {
        "clips": len(rows),
        "speakers": int(manifest["speaker_id"].nunique()),
        "rejected": rejected,
        "rejected_by_reason": {str(k): int(v) for k, v in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))},
        "shards": len(jobs),
        "splits": counts,
    }
    if len(rejects) < rejected:  # rejects.csv holds the first of each kind of reason
        metrics["rejects_listed"] = len(rejects)
    write_contact_sheet(out, root / CONTACT_SHEET)
    write_json(root / METRICS, metrics)  # no timings: identical params give an identical file
    metrics["seconds"] = round(time.perf_counter() - started, 2)  # for MLflow
    logging.getLogger(__name__).info("prepared %d clips (%d rejected)", len(rows), rejected)
    return metrics
