"""The talker's ablations on the val speakers: what the README's "tried on val" rows are, by the code a user runs.

Every row is lip sync (Pearson's r per clip between the mouth opening the probe reads and the
phones' true opening), on the val speakers' clips animating their VoxSynth portraits, read by the
same probe as `evaluate_talker` (`fit_probe`, its params). Never the test split: these rows are
where choices are made.

Three kinds of row:
- decodings of the shipped talker (`models/talker`): its default (`dae`), other noise seeds, the
  inverted code, fewer or more DDIM steps, a zero pose;
- references: the regression, the val clips' own frames through the face autoencoder (what the
  probe can read of the real clip after that decoder), and the oracle (the clip's own true z
  against its frame 0, decoded on frame 0: what a perfect speech2latent would give);
- retrained variants: the project's params with `talker` switches set (another seed, a larger
  code, half the DAE's steps), trained by the `train_talker` stage in `talker_ablations/<name>/`
  (the data and the face autoencoder are symlinked, not copied) and decoded like the shipped one;
  each also gives its own retrained regression (`<name>:regression`) and its training time.

The retrained ones cost a `train_talker` each (8-18 min on 2 cores), so they run only when named
(`--retrain NAME`, added to the rows; or `--only NAME`). Writes `reports/talker_ablations/` (metrics.json with
every clip's value,
report.md, lipsync.png), logged to MLflow as the run `talker_ablations`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml
from prefect import flow

from sclmd.env import project_root
from sclmd.errors import SclmdError

# Keyword arguments of TalkingFace.speak (the shipped talker); "pose": "zero" holds the head still.
DECODINGS = {
    "dae": {},
    "dae_noise_seed1": {"seed": 1},
    "dae_noise_seed2": {"seed": 2},
    "dae_inverted_code": {"code": "inversion"},
    "dae_ddim5": {"steps": 5},
    "dae_ddim20": {"steps": 20},
    "dae_zero_pose": {"pose": "zero"},
}
# The shared code is one random draw: this row is each clip's lip sync averaged over noise seeds 0-7,
# what the method gives in expectation rather than on the default seed (its per-seed means are kept too).
SEED_MEAN = "dae_mean_over_8_noise_seeds"
NOISE_SEEDS = 8
REFERENCES = ("regression", "autoencoder", "oracle")
RETRAINED = {
    "talker_seed1": {"talker": {"seed": 1}},
    "motion_dim32": {"talker": {"motion_dim": 32}},
    "motion_dim32_seed1": {"talker": {"motion_dim": 32, "seed": 1}},
    "dae_steps600": {"talker": {"dae_steps": 600}},  # half the DAE's training: the time it saves, the sync it costs
}
# Where make talker fine-tunes the shipped talker (talker.init), a variant trains from scratch instead (it
# changes what the shipped talker fixed), on the schedule make talker had before it started from one.
FROM_SCRATCH = {"talker": {"init": None, "dae_steps": 1200, "speech2latent_steps": 500, "regressor_steps": 400}}


def variant_overrides(name: str, fine_tunes: bool) -> dict:
    """What variant `name` changes in the project's params (`fine_tunes`: they set talker.init)."""
    from flows.ablations import merge_params

    return merge_params(FROM_SCRATCH, RETRAINED[name]) if fine_tunes else RETRAINED[name]


DEFAULT_ROWS = (*DECODINGS, SEED_MEAN, *REFERENCES)
SHARED = ("data/talker/videos", "models/pretrain")  # what a retrained variant reads, never its own
WORK_DIR = Path("talker_ablations")
REPORT_DIR = Path("reports/talker_ablations")
TALKER_DIR = Path("models/talker")
SPLIT = "val"


def resolve_rows(only: list[str] | None, retrain: list[str] | None = None) -> list[str]:
    """The rows to measure (checked): the named ones (`only`) or the default decodings and references,
    then the retrained variants named in `retrain`."""
    known = (*DEFAULT_ROWS, *RETRAINED)
    unknown = [n for n in only or [] if n not in known] + [n for n in retrain or [] if n not in RETRAINED]
    if unknown:
        raise SclmdError(
            f"unknown talker ablation(s) {', '.join(unknown)}. Rows: {', '.join(DEFAULT_ROWS)}; "
            f"retrained (each costs a train_talker run): {', '.join(RETRAINED)}"
        )
    return list(dict.fromkeys([*(only or DEFAULT_ROWS), *(retrain or [])]))


def check_inputs(root: Path, only: list[str] | None, retrain: list[str] | None = None) -> list[str]:
    """The rows to measure, once the talker and its val clips are there; else a SclmdError saying what to run."""
    from sclmd.stages.evaluate_talker import VIDEO_DIR
    from sclmd.train.talker import has_clips

    rows = resolve_rows(only, retrain)
    if not (root / TALKER_DIR / "model.safetensors").exists():
        raise SclmdError(f"{root / TALKER_DIR}: no trained talker. Run `make talker` first.")
    if not has_clips(root / VIDEO_DIR, SPLIT):
        raise SclmdError(
            f"{root / VIDEO_DIR}: no {SPLIT} clips (talker_video.val_speakers is 0). "
            "The ablations are measured on val speakers only; set it above 0 and run `make talker`."
        )
    return rows


def train_variant(name: str, root: Path) -> tuple[Path, float]:
    """Train variant `name` with the train_talker stage in talker_ablations/<name>/ -> (its talker folder, seconds).

    The folder is kept: an interrupted run resumes from its checkpoints (the stage's own resume), and
    its params.yaml shows what the variant was. A finished variant is trained again on the next run."""
    from flows.ablations import merge_params
    from sclmd.config import load_params
    from sclmd.stages import run_stage
    from sclmd.tracking import VARIANT_ENV

    base = yaml.safe_load((root / "params.yaml").read_text())
    work = root / WORK_DIR / name
    (work / "models").mkdir(parents=True, exist_ok=True)
    (work / "data/talker").mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(
        yaml.safe_dump(
            merge_params(base, variant_overrides(name, bool((base.get("talker") or {}).get("init")))), sort_keys=False
        )
    )
    load_params(work / "params.yaml")  # a bad override fails here, with the key named
    for rel in SHARED:
        if not (work / rel).is_symlink():
            os.symlink(root / rel, work / rel)
    started = time.perf_counter()
    cwd = os.getcwd()
    os.environ[VARIANT_ENV] = f"talker_{name}"
    try:
        os.chdir(work)
        print(f"talker ablation {name}: train_talker with {RETRAINED[name]}", flush=True)
        run_stage("train_talker", work)
    finally:
        os.chdir(cwd)
        os.environ.pop(VARIANT_ENV, None)
    return work / TALKER_DIR, time.perf_counter() - started


def lipsync_rows(talker, probe, clips, portraits, rows: list[str], prefix: str = "") -> dict[str, dict]:
    """Per-clip lip sync r, opening gain and opening error of each row in `rows` (decodings and references)."""
    import torch
    from tqdm import tqdm

    from sclmd.evaluate.talker import correlation, probe_read
    from sclmd.models.talker import stochastic_code
    from sclmd.train.talker import encode_frames

    n_frames = clips.frames.shape[1]
    out = {f"{prefix}{r}": {"lipsync": [], "gain": [], "error": [], "per_draw": []} for r in rows}
    bundle = talker.bundle
    for i in tqdm(range(len(clips)), desc=f"{prefix or 'shipped '}rows on {SPLIT} clips", unit="clip"):
        wave, photo, truth = clips.waves[i], portraits[i], clips.tracks["opening"][i].numpy()
        latents = None
        decoded = {}  # this clip's DAE frames by their speak() arguments: the seed rows and the seed mean share them

        def dae(**kwargs):
            key = tuple(sorted({"seed": 0, **kwargs}.items()))
            if key not in decoded:
                if kwargs.get("pose") == "zero":
                    kwargs["pose"] = torch.zeros(n_frames, 3)
                decoded[key] = talker.speak(wave, photo, n_frames=n_frames, **kwargs)[0]
            return decoded[key]

        for row in rows:
            with torch.no_grad():
                if row in DECODINGS:
                    draws = [dae(**DECODINGS[row])]
                elif row == SEED_MEAN:
                    draws = [dae(seed=seed) for seed in range(NOISE_SEEDS)]
                elif row == "regression":
                    draws = [talker.speak(wave, photo, method="regression", n_frames=n_frames)[0]]
                else:  # the clip's own frames: through the autoencoder, or their true z on frame 0 (the oracle)
                    if latents is None:
                        latents = encode_frames(talker.face.face_encoder, clips.frames[i][None], desc=None)[0]
                    if row == "autoencoder":
                        draws = [talker.decode_latents(latents)]
                    else:
                        reference = latents[:1].expand(n_frames, -1, -1, -1)
                        z = bundle.dae.motion(latents, reference)
                        x_t = stochastic_code(bundle, latents[:1]).expand(n_frames, -1, -1, -1)
                        draws = [talker.decode_latents(bundle.dae.decode(x_t, reference, z))]
            reads = [probe_read(probe, frames)[:, 0] for frames in draws]
            cell = out[f"{prefix}{row}"]
            cell["per_draw"].append([correlation(read, truth) for read in reads])
            cell["lipsync"].append(float(np.mean(cell["per_draw"][-1])))
            cell["gain"].append(float(np.mean([read.std() / max(truth.std(), 1e-6) for read in reads])))
            cell["error"].append(float(np.mean([np.abs(read - truth).mean() for read in reads])))
    return out


def _summary(values: dict[str, list[float]], boot) -> dict:
    sync = np.asarray(values["lipsync"])
    return {
        "lipsync": round(float(sync.mean()), 4),
        "lipsync_ci": [round(v, 4) for v in boot.mean_ci(sync)],
        "lipsync_median": round(float(np.median(sync)), 4),
        "lipsync_worst": round(float(sync.min()), 4),
        "opening_gain": round(float(np.mean(values["gain"])), 3),
        "opening_mae": round(float(np.mean(values["error"])), 4),
        **(
            {"lipsync_per_draw": np.round(np.mean(values["per_draw"], 0), 4).tolist()}
            if len(values["per_draw"][0]) > 1
            else {}
        ),
    }


def _fingerprint(directory: Path) -> str:
    """The first 12 hex digits of the talker weights' sha256: which model a row measured."""
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()[:12]


def _machine() -> str:
    """The CPU these rows were measured on: models and their numbers differ between machines' kernels."""
    from sclmd.machine import line

    return line()


@flow(name="sclmd-talker-ablations", log_prints=True)
def sclmd_talker_ablations(
    only: list[str] | None = None, retrain: list[str] | None = None, root: str | None = None
) -> dict:
    """The talker's ablations on the val speakers; writes reports/talker_ablations/."""
    import torch

    from sclmd.config import load_params
    from sclmd.evaluate.bootstrap import ClusterBootstrap
    from sclmd.evaluate.talker import fit_probe
    from sclmd.io import atomic_file, write_json
    from sclmd.models.talker import TalkingFace
    from sclmd.stages.evaluate_talker import VIDEO_DIR, portrait
    from sclmd.tracking import tracking_uri
    from sclmd.train.talker import load_clips

    root_path = Path(root).resolve() if root else project_root()
    rows = check_inputs(root_path, only, retrain)
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(root_path))
    params = load_params(root_path / "params.yaml")
    p = params.evaluate_talker
    torch.manual_seed(p.seed)
    shipped = TalkingFace.from_pretrained(root_path / TALKER_DIR)
    # One probe for every row, fitted as evaluate_talker fits it: the same instrument as the test numbers.
    probe = fit_probe(
        shipped,
        root_path / VIDEO_DIR,
        steps=p.probe_steps,
        batch_size=p.probe_batch_size,
        lr=p.probe_lr,
        max_blur=p.probe_max_blur,
        seed=p.seed,
    )
    clips = load_clips(root_path / VIDEO_DIR, SPLIT)
    portraits = [portrait(root_path, s) for s in clips.speakers]
    per_clip = lipsync_rows(shipped, probe, clips, portraits, [r for r in rows if r not in RETRAINED])
    models = {"shipped": _fingerprint(root_path / TALKER_DIR)}
    train_seconds = {}
    for name in (r for r in rows if r in RETRAINED):
        directory, seconds = train_variant(name, root_path)
        train_seconds[name] = round(seconds, 1)
        models[name] = _fingerprint(directory)
        per_clip.update(
            lipsync_rows(
                TalkingFace.from_pretrained(directory),
                probe,
                clips,
                portraits,
                ["dae", "regression"],
                prefix=f"{name}:",
            )
        )
        per_clip[name] = per_clip.pop(f"{name}:dae")

    boot = ClusterBootstrap(clips.speakers, p.bootstrap_resamples, p.seed)
    table = {
        r: {**_summary(v, boot), "per_clip": dict(zip(clips.speakers, np.round(v["lipsync"], 4).tolist()))}
        for r, v in per_clip.items()
    }
    paired = {}
    for against in ("dae", "regression"):
        if against not in per_clip:
            continue
        for r, v in per_clip.items():
            if r == against:
                continue
            d = boot.paired_difference(np.asarray(v["lipsync"]), np.asarray(per_clip[against]["lipsync"]))
            ahead = int(np.sum(np.asarray(v["lipsync"]) > np.asarray(per_clip[against]["lipsync"])))
            paired[f"{r} - {against}"] = {
                "diff": round(d["diff"], 4),
                "ci": [round(x, 4) for x in d["ci"]],
                "ahead_on": ahead,
                "of": len(clips),
            }
    summary = {
        "split": SPLIT,
        "machine": _machine(),
        "speakers": list(clips.speakers),
        "frames_per_clip": int(clips.frames.shape[1]),
        "probe": {k: getattr(p, k) for k in ("probe_steps", "probe_batch_size", "probe_lr", "probe_max_blur", "seed")},
        "models": models,
        "train_seconds": train_seconds,
        "overrides": {n: variant_overrides(n, bool(params.talker.init)) for n in train_seconds},
        "rows": table,
        "paired": paired,
    }
    out = root_path / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", summary)
    plot_rows(table, out / "lipsync.png", len(clips))
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text(report(summary))
    log_reports(root_path, summary)
    print(f"talker ablations done: {', '.join(table)} -> {REPORT_DIR}/")
    return summary


def report(summary: dict) -> str:
    lines = [
        f"# Talker ablations on {len(summary['speakers'])} {summary['split']} speakers "
        f"({summary['frames_per_clip']} frames each)",
        "",
        "| row | lip sync r [95% CI] | median | worst clip | opening gain | opening MAE |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["rows"].items():
        lines.append(
            f"| {name} | {row['lipsync']:.3f} [{row['lipsync_ci'][0]:.3f}, {row['lipsync_ci'][1]:.3f}] | "
            f"{row['lipsync_median']:.3f} | {row['lipsync_worst']:.2f} | {row['opening_gain']:.2f} | "
            f"{row['opening_mae']:.3f} |"
        )
    for name, row in summary["rows"].items():
        if "lipsync_per_draw" in row:
            lines += [
                "",
                f"`{name}`, lip sync r of each noise seed (mean over clips): "
                + ", ".join(f"seed {k}: {v:.3f}" for k, v in enumerate(row["lipsync_per_draw"]))
                + ".",
            ]
    lines += [
        "",
        "Paired differences of lip sync r (mean over clips, 95% cluster-bootstrap interval; "
        "'ahead on': clips where the row is higher):",
        "",
        "| | difference [95% CI] | ahead on |",
        "|---|---|---|",
    ]
    for name, d in summary["paired"].items():
        lines.append(
            f"| {name} | {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | {d['ahead_on']} of {d['of']} |"
        )
    if summary["train_seconds"]:
        lines += ["", "Retrained variants (params overrides; train_talker's time on this machine):", ""]
        lines += [
            f"- `{n}`: {json.dumps(summary['overrides'][n])}, {s:.0f} s" for n, s in summary["train_seconds"].items()
        ]
    lines += [
        "",
        f"Machine: {summary['machine']}. Models (sha256 of model.safetensors, first 12 digits): "
        + ", ".join(f"{k} {v}" for k, v in summary["models"].items())
        + ".",
        "",
        "Rows: `dae` is the shipped talker as `sclmd talk` runs it (shared Gaussian code, seed 0); "
        f"`{SEED_MEAN}` averages each clip's r over the codes of seeds 0-{NOISE_SEEDS - 1}; `autoencoder` "
        "is the clip's own frames through the face autoencoder; `oracle` is the clip's own z against its frame 0, "
        "decoded on frame 0 from the same code; `<variant>:regression` is a retrained variant's own regression.",
    ]
    return "\n".join(lines) + "\n"


def plot_rows(table: dict[str, dict], png: Path, n_clips: int) -> Path:
    """Mean lip sync per row with its interval, and every clip's value as a dot (the spread the mean hides)."""
    from matplotlib.figure import Figure

    from sclmd.evaluate.plots import _save

    names = list(table)
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 2), 4))
    ax = fig.add_subplot()
    for i, name in enumerate(names):
        row = table[name]
        ax.bar(i, row["lipsync"], color="tab:blue", alpha=0.6)
        ax.plot([i, i], row["lipsync_ci"], color="k", lw=1.5)
        values = list(row["per_clip"].values())
        ax.plot(i + np.linspace(-0.25, 0.25, len(values)), values, ".", color="k", ms=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("lip sync r")
    ax.set_ylim(min(-0.1, min(min(r["per_clip"].values()) for r in table.values()) - 0.05), 1.0)
    ax.set_title(f"talker ablations on {n_clips} {SPLIT} clips: mean, 95% interval, each clip", fontsize=9)
    fig.tight_layout()
    return _save(fig, png)


def log_reports(root: Path, summary: dict) -> None:
    """One MLflow run `talker_ablations` with every row's lip sync and the report files."""
    import mlflow

    from sclmd.stages import logged_metrics
    from sclmd.tracking import stage_run

    with stage_run("talker_ablations", root, {"rows": list(summary["rows"]), "overrides": summary["overrides"]}):
        mlflow.log_metrics(
            logged_metrics(
                {
                    n.replace(":", "_"): {k: r[k] for k in ("lipsync", "lipsync_median")}
                    for n, r in summary["rows"].items()
                }
            )
        )
        mlflow.log_artifacts(str(root / REPORT_DIR), artifact_path=str(REPORT_DIR))


if __name__ == "__main__":
    sclmd_talker_ablations()
