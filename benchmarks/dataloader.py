"""Data loading: the packed store against individual wav/png files.

Both deliver the same samples (6 s of 16 kHz audio as int16 + one 64 px RGB face)
through a torch DataLoader with the same batch size and shuffling.  The reference
("files") opens, decodes and converts one wav and one png per sample, as a naive
Dataset over the raw VoxSynth tree would.  Each loader gets one warm-up epoch
(the page cache is then warm for both), then timed epochs.

    python benchmarks/dataloader.py [--speakers 120] [--epochs 3]

Writes benchmarks/results/dataloader.json and .md, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sclmd.config import DataParams, Params, PrepareParams, SynthParams  # noqa: E402
from sclmd.data.store import PackedClips, make_loader, read_manifest  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class RawFiles(Dataset):
    """The reference: one wav + one png decoded per sample."""

    def __init__(self, raw_root: Path, manifest):
        self.audio = [raw_root / p for p in manifest["audio_source"]]
        self.faces = [raw_root / p for p in manifest["face_source"]]

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, i: int):
        audio, _ = sf.read(self.audio[i], dtype="int16")
        face = np.array(Image.open(self.faces[i]).convert("RGB"))
        return torch.from_numpy(audio), torch.from_numpy(face)


def save_results(name: str, result: dict, title: str, details: str, body: list[str]) -> None:
    """results/<name>.json, and results/<name>.md: the title, the machine line, then `body`."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    header = [
        f"# {title}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; {result['date']}. {details}",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(header + body))


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def time_loader(loader, epochs: int) -> float:
    """Samples per second over `epochs` timed epochs after one warm-up epoch."""

    def count(batch) -> int:
        return int(batch.audio.shape[0]) if hasattr(batch, "audio") else int(batch[0].shape[0])

    for _ in loader:  # warm-up: worker start, page cache
        pass
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += count(batch)
    return n / (time.perf_counter() - start)


def build(workdir: Path, speakers: int) -> tuple[Path, Path]:
    from sclmd.data.voxsynth import generate_voxsynth
    from sclmd.stages import prepare

    raw = workdir / "data/raw/voxsynth"
    raw.mkdir(parents=True)
    data = DataParams()
    generate_voxsynth(raw, SynthParams(n_speakers=speakers), data, progress=False)
    params = Params(data=data, prepare=PrepareParams(voxsynth_dir=str(raw)))
    prepare.run(params, workdir)
    return raw, workdir / prepare.OUT_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speakers", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="sclmd-bench-") as tmp:
        raw, prepared = build(Path(tmp), args.speakers)
        manifest = read_manifest(prepared)
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)
        rows = []
        for workers in (0, 2):
            # spawn: workers forked from a process that ran Prefect and Dask inherit their
            # exit hooks and die noisily at shutdown; the warm-up epoch absorbs the start cost.
            context = "spawn" if workers else None
            packed = make_loader(
                PackedClips(prepared, "train"),
                args.batch_size,
                shuffle=True,
                num_workers=workers,
                multiprocessing_context=context,
            )
            files = DataLoader(
                RawFiles(raw, train),
                batch_size=args.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
                num_workers=workers,
                persistent_workers=workers > 0,
                multiprocessing_context=context,
            )
            packed_rate = time_loader(packed, args.epochs)
            files_rate = time_loader(files, args.epochs)
            del packed, files  # stop persistent workers before their files go away
            rows.append(
                {
                    "num_workers": workers,
                    "packed_samples_per_s": round(packed_rate, 1),
                    "files_samples_per_s": round(files_rate, 1),
                    "ratio": round(packed_rate / files_rate, 2),
                }
            )
            print(
                f"workers={workers}: packed {packed_rate:,.0f} samples/s, files {files_rate:,.0f} samples/s "
                f"-> {packed_rate / files_rate:.1f}x the files reference"
            )

    result = {
        "benchmark": "dataloader",
        "reference": "files: one wav (soundfile) + one png (PIL) decoded per sample",
        "samples": len(train),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "target_samples_per_s": 2000,
        "rows": rows,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    save_results(
        "dataloader",
        result,
        "Data loading: packed store vs individual files",
        f"{len(train)} train samples (6 s 16 kHz int16 audio + 64x64 RGB face), batch {args.batch_size}, "
        f"{args.epochs} timed epochs after a warm-up epoch.",
        [
            "| DataLoader workers | packed (samples/s) | files reference (samples/s) | ratio |",
            "|---|---|---|---|",
            *[
                f"| {r['num_workers']} | {r['packed_samples_per_s']:,.0f} | "
                f"{r['files_samples_per_s']:,.0f} | {r['ratio']}x |"
                for r in rows
            ],
            "",
        ],
    )


if __name__ == "__main__":
    main()
