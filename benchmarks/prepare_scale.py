"""Data preparation at AVSpeech scale: the source scan's peak memory and rows/s.

Generates an AVSpeech-format CSV of `--rows` segments (the real avspeech_train.csv has
2.6M; ~9 per video) with `--present` of the videos "downloaded" as empty pre-cut files
(the scan lists files and never decodes them), then runs `prepare`'s scan of it in a fresh
process and reports that process's peak RSS and rows/s.  The reference, measured in the
same run on the same file: a bare `csv.reader` pass that keeps nothing (the floor for
both numbers in Python).  The target is a peak RSS under 1 GiB.

    python benchmarks/prepare_scale.py [--rows 2600000] [--present 0.01]

Writes benchmarks/results/prepare_scale.json and .md, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402

SEGMENTS_PER_VIDEO = 9
TARGET_RSS_MIB = 1024

# Each runs in a fresh interpreter; prints {"rows": ..., "seconds": ..., "peak_rss_mib": ...}.
SCAN = """
import json, resource, sys, time
from pathlib import Path
from sclmd.config import PrepareParams
from sclmd.data.sources import scan_source
root, rows = Path(sys.argv[1]), int(sys.argv[2])
params = PrepareParams(source="avspeech", avspeech={"csv": "avspeech.csv", "videos_dir": "clips"})
started = time.perf_counter()
scan = scan_source(params, root)
seconds = time.perf_counter() - started
print(json.dumps({"rows": rows, "seconds": seconds, "clips": len(scan.clips), "skipped": scan.skipped.total,
                  "skipped_kept": len(scan.skipped), "by_reason": dict(scan.skipped.counts),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
READER = """
import csv, json, resource, sys, time
from pathlib import Path
import sclmd.data.sources  # the same imports as the scan, so the RSS floor compares like with like
root, rows = Path(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
n = 0
with open(root / "avspeech.csv", newline="", encoding="utf-8") as handle:
    for fields in csv.reader(handle):
        n += 1
seconds = time.perf_counter() - started
print(json.dumps({"rows": n, "seconds": seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_dataset(root: Path, rows: int, present: float, seed: int = 0) -> int:
    """avspeech.csv with `rows` segments and clips/ with `present` of them as pre-cut files."""
    rng = np.random.default_rng(seed)
    videos = max(1, rows // SEGMENTS_PER_VIDEO)
    clips = root / "clips"
    clips.mkdir(parents=True)
    downloaded = 0
    with open(root / "avspeech.csv", "w") as handle:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            index = np.arange(start, start + n)
            video = index % videos
            begin = (index // videos) * 7.0 + rng.uniform(0, 3, n).round(6)
            end = begin + rng.uniform(2, 6, n).round(6)
            x, y = rng.uniform(0.2, 0.8, n).round(6), rng.uniform(0.2, 0.8, n).round(6)
            names = [f"vid{v:08d}" for v in video]
            handle.writelines(f"{v},{b:.6f},{e:.6f},{xx},{yy}\n" for v, b, e, xx, yy in zip(names, begin, end, x, y))
            for i in np.nonzero(rng.random(n) < present)[0]:
                (clips / f"{names[i]}_{begin[i]:.6f}_{end[i]:.6f}.mp4").touch()
                downloaded += 1
    return downloaded


def measure(script: str, root: Path, rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", script, str(root), str(rows)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_600_000)
    parser.add_argument("--present", type=float, default=0.01, help="share of segments whose video is downloaded")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        downloaded = write_dataset(root, args.rows, args.present)
        print(
            f"generated {args.rows:,} rows, {downloaded:,} videos present, in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        reference = measure(READER, root, args.rows)
        scan = measure(SCAN, root, args.rows)
    assert scan["clips"] == downloaded and scan["skipped"] == args.rows - downloaded, scan

    rows_per_s = args.rows / scan["seconds"]
    reference_rows_per_s = args.rows / reference["seconds"]
    result = {
        "rows": args.rows,
        "present": downloaded,
        "scan": {**scan, "rows_per_s": rows_per_s},
        "reference_csv_reader": {**reference, "rows_per_s": reference_rows_per_s},
        "speed_vs_reference": rows_per_s / reference_rows_per_s,
        "rss_vs_reference": scan["peak_rss_mib"] / reference["peak_rss_mib"],
        "target_peak_rss_mib": TARGET_RSS_MIB,
        "meets_target": scan["peak_rss_mib"] < TARGET_RSS_MIB,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    body = [
        "| | rows/s | peak RSS (MiB) |",
        "|---|---:|---:|",
        f"| `prepare`'s AVSpeech scan | {rows_per_s:,.0f} | {scan['peak_rss_mib']:.0f} |",
        f"| reference: bare `csv.reader` pass, same imports | {reference_rows_per_s:,.0f} | "
        f"{reference['peak_rss_mib']:.0f} |",
        f"| ratio (scan / reference) | {result['speed_vs_reference']:.2f}x | {result['rss_vs_reference']:.2f}x |",
        "",
        f"{args.rows:,} CSV rows, {downloaded:,} videos present ({100 * args.present:g}%). The scan kept "
        f"{scan['clips']:,} clips and counted {scan['skipped']:,} skipped rows, keeping {scan['skipped_kept']:,} "
        f"examples. Target peak RSS < {TARGET_RSS_MIB} MiB: {'met' if result['meets_target'] else 'NOT met'}.",
    ]
    save_results(
        "prepare_scale",
        result,
        "AVSpeech-scale scan (`prepare`)",
        "Each measured in a fresh process on the same generated CSV.",
        body,
    )
    print("\n".join(body))


if __name__ == "__main__":
    main()
