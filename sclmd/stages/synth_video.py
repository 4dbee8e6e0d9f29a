"""Stage `synth_video`: VoxSynth talking videos, one clip per speaker, for the talking face.

Reads `data`, `synth` (which speakers exist, how faces are drawn) and `talker_video`.
Speakers are taken from `prepare`'s split, so the talker's test speakers are the
pipeline's test speakers. Each clip is `videos/<split>/<speaker>.mp4` (H.264 + AAC,
25 fps) with `<speaker>.npz` beside it: the per-frame ground truth (mouth opening, lip
rounding, blink, yaw, pitch, roll) and the phone timeline. `manifest.csv` lists them.
A new utterance is synthesised for each video (its own random streams), so the talker
never hears the clips the face models were trained on.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sclmd.config import DataParams, Params, SynthParams, TalkerVideoParams
from sclmd.data.parallel import map_in_processes
from sclmd.data.video import write_mp4
from sclmd.data.voxsynth.attributes import sample_speakers
from sclmd.data.voxsynth.generate import _rng
from sclmd.data.voxsynth.talking import TRACKS, talking_video
from sclmd.errors import SclmdError
from sclmd.io import atomic_dir, write_json

OUT_DIR = Path("data/talker/videos")
MANIFEST = "manifest.csv"
REPORT_DIR = Path("reports/talker_video")
SHEET = REPORT_DIR / "frames.png"
METRICS = REPORT_DIR / "metrics.json"
PARAM_SECTIONS = ("data", "synth", "talker_video")
ARTIFACTS = (SHEET, METRICS)
SPLITS = ("train", "val", "test")
# Random streams of a speaker beyond synth's voice (0) and face (1) streams.
_VIDEO_VOICE, _VIDEO_SCENE, _VIDEO_MOTION = 2, 3, 4


@dataclass(frozen=True)
class _Job:
    index: int
    split: str
    out_dir: Path
    synth: SynthParams
    video: TalkerVideoParams
    data: DataParams


def _render(job: _Job) -> dict:
    attrs = sample_speakers(job.synth.n_speakers, job.synth.seed)[job.index]
    seed = job.video.seed * 1_000_003 + job.synth.seed  # another video seed: other clips, same people
    frames, audio, tracks, timeline = talking_video(
        attrs,
        _rng(seed, job.index, _VIDEO_VOICE, 0),
        _rng(seed, job.index, _VIDEO_SCENE, 0),
        _rng(seed, job.index, _VIDEO_MOTION, 0),
        seconds=job.video.seconds,
        sample_rate=job.data.sample_rate,
        fps=job.video.fps,
        size=job.data.image_size,
        supersample=job.synth.supersample,
        framing=job.synth.face_framing,
    )
    folder = job.out_dir / job.split
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / f"{attrs.speaker_id}.mp4", frames, audio, job.data.sample_rate, job.video.fps)
    np.savez(
        folder / f"{attrs.speaker_id}.npz",
        **tracks,
        audio=np.round(audio * 32767).astype(np.int16),
        phone_start=np.array([s for s, _, _ in timeline], np.float32),
        phone_end=np.array([e for _, e, _ in timeline], np.float32),
        phone=np.array([p for _, _, p in timeline]),
    )
    return {
        "speaker_id": attrs.speaker_id,
        "split": job.split,
        "gender": attrs.gender,
        "age": attrs.age,
        "video": f"{job.split}/{attrs.speaker_id}.mp4",
        "tracks": f"{job.split}/{attrs.speaker_id}.npz",
        "frames": len(frames),
    }


def chosen_speakers(root: Path, video: TalkerVideoParams) -> dict[str, list[str]]:
    """Speaker ids per split: the first n of each of prepare's splits (VoxSynth only)."""
    path = root / "data/prepared/manifest.parquet"
    if not path.exists():
        raise SclmdError(
            f"{path}: not found. The talker's videos follow prepare's split: run `make run` "
            "(or `sclmd stage prepare`) first."
        )
    manifest = pd.read_parquet(path, columns=["speaker_id", "split", "source"])
    if set(manifest["source"]) != {"voxsynth"}:
        raise SclmdError(
            f"{path}: prepared from {sorted(set(manifest['source']))}; the talking videos are drawn "
            "for VoxSynth speakers only. Use prepare.source: voxsynth for the talker."
        )
    wanted = {"train": video.train_speakers, "val": video.val_speakers, "test": video.test_speakers}
    out = {}
    for split in SPLITS:
        ids = list(dict.fromkeys(manifest.loc[manifest["split"] == split, "speaker_id"]))
        out[split] = ids[: wanted[split]]
    if not out["train"] or not out["test"]:
        raise SclmdError(f"{path}: no training or no test speakers to draw videos for")
    return out


def _frame_sheet(out_dir: Path, rows: list[dict], png: Path, n_clips: int = 4, n_frames: int = 12) -> None:
    """A few clips as frame strips, each with its ground-truth mouth opening drawn under it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sclmd.data.video import read_frames

    picks = [r for r in rows if r["split"] == "train"][:n_clips]
    fig, axes = plt.subplots(
        2 * len(picks),
        1,
        figsize=(n_frames * 0.9, 2.1 * len(picks)),
        gridspec_kw={"height_ratios": [3, 1] * len(picks)},
    )
    for k, row in enumerate(picks):
        frames = read_frames(out_dir / row["video"])
        tracks = np.load(out_dir / row["tracks"])
        idx = np.linspace(0, min(len(frames), 50) - 1, n_frames).astype(int)  # the first two seconds
        axes[2 * k].imshow(np.concatenate(list(frames[idx]), axis=1))
        axes[2 * k].set_axis_off()
        axes[2 * k].set_title(
            f"{row['speaker_id']} ({row['gender']}, {row['age']}): frames {idx[0]}-{idx[-1]}", fontsize=8, loc="left"
        )
        axes[2 * k + 1].plot(tracks["opening"][:50], color="k", lw=1, label="mouth opening")
        axes[2 * k + 1].plot(tracks["blink"][:50], color="tab:blue", lw=0.8, label="blink")
        axes[2 * k + 1].plot(idx, tracks["opening"][idx], "o", color="tab:red", ms=3)
        axes[2 * k + 1].set_xlim(-0.5, 49.5)
        axes[2 * k + 1].set_ylim(-0.05, 1.05)
        axes[2 * k + 1].tick_params(labelsize=6)
        if k == 0:
            axes[1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def run(params: Params, root: Path) -> dict:
    started = time.perf_counter()
    video = params.talker_video
    chosen = chosen_speakers(root, video)
    ids = [a.speaker_id for a in sample_speakers(params.synth.n_speakers, params.synth.seed)]
    index = {sid: i for i, sid in enumerate(ids)}
    missing = [s for split in SPLITS for s in chosen[split] if s not in index]
    if missing:
        raise SclmdError(
            f"data/prepared lists speakers synth does not make ({', '.join(missing[:3])}...): "
            "the prepared data is from other synth params. Run `make run` again."
        )
    with atomic_dir(root / OUT_DIR) as tmp:
        jobs = [_Job(index[s], split, tmp, params.synth, video, params.data) for split in SPLITS for s in chosen[split]]
        rows = map_in_processes(_render, jobs, video.workers, "talking videos", "clip")
        with (tmp / MANIFEST).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        _frame_sheet(tmp, rows, root / SHEET)
    counts = {f"n_{split}": len(chosen[split]) for split in SPLITS}
    metrics = {
        **counts,
        "frames": int(sum(r["frames"] for r in rows)),
        "fps": video.fps,
        "seconds": video.seconds,
        "tracks": list(TRACKS),
    }
    write_json(root / METRICS, metrics)
    return {**metrics, "elapsed_s": round(time.perf_counter() - started, 2)}
