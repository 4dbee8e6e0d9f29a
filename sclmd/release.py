"""`sclmd release`: the shipped models, trained long by the project's own stages in their own workspace.

The workspace (`release/` by default) gets the project's params.yaml with `release.yaml`'s
overrides merged in; every stage runs there (`sclmd stage NAME` with that folder as the root),
so `make run`'s outputs are never touched and a killed release resumes from the stages'
checkpoints. MLflow runs go to the project's store (or MLFLOW_TRACKING_URI), tagged
sclmd.release, so the curves sit beside every other run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sclmd.errors import SclmdError

OVERRIDES = Path("release.yaml")
WORKSPACE = Path("release")


def merge_params(base: dict, override: dict) -> dict:
    """`base` with `override`'s keys set, section by section (nested dicts merged, not replaced)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merge_params(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def release_params(root: Path, overrides: Path = OVERRIDES) -> dict:
    """The project's params with the release overrides, validated (a bad key names the file)."""
    from pydantic import ValidationError

    from sclmd.config import Params, format_validation_error, read_sections

    path = overrides if overrides.is_absolute() else root / overrides
    extra = read_sections(
        path,
        "the release overrides file is missing. Restore it from git "
        "(`git checkout -- release.yaml`) or pass --overrides FILE.",
    )
    merged = merge_params(yaml.safe_load((root / "params.yaml").read_text()) or {}, extra)
    try:
        Params.model_validate(merged)
    except ValidationError as e:
        raise SclmdError(format_validation_error(e, f"{path} merged into params.yaml")) from None
    return merged


def prepare_workspace(root: Path, workspace: Path = WORKSPACE, overrides: Path = OVERRIDES) -> Path:
    """The release workspace with its params.yaml (rewritten only when it changed)."""
    from sclmd.io import write_text

    work = workspace if workspace.is_absolute() else root / workspace
    work.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(release_params(root, overrides), sort_keys=False)
    target = work / "params.yaml"
    if not target.is_file() or target.read_text() != text:
        write_text(target, text)
    voices = work / "real_voices"  # the shipped real voices: reporting only, as in make run's workspace
    if (root / "real_voices").is_dir() and not voices.exists():
        voices.symlink_to((root / "real_voices").resolve())
    # the project's shipped weights: the release SCLDM starts from the first stage its first part just shipped
    if not (work / "weights").is_symlink():  # (dangling until the first part ships into root/weights)
        (work / "weights").symlink_to((root / "weights").resolve())
    return work


FIRST_STAGE_COMMAND = "sclmd release --part first-stage"


def files_and_command(sums: dict[str, str], commit: str, command: str, overrides: str) -> list[str]:
    """A model card's closing sections: every file's sha256, and the command that reproduces the folder."""
    return [
        "## Files",
        "",
        "| file | sha256 |",
        "|---|---|",
        *[f"| {n} | `{d}` |" for n, d in sums.items()],
        "",
        "## Reproduce",
        "",
        "```bash",
        f"git checkout {commit.removesuffix('-dirty')}",
        f"{command}     # overrides: {overrides}; resumes after a kill",
        "```",
    ]


def _fmt_ci(value: float, ci: list[float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def first_stage_card(
    config: dict,
    sums: dict[str, str],
    machine: dict,
    commit: str,
    overrides: str,
    curve: dict[str, list[float]] | None = None,
) -> str:
    """The model card (README.md) of weights/face-autoencoder, from what the stage recorded."""
    from sclmd.machine import line

    m = config["metrics"]
    p = config["params"]["first_stage"]
    synth = config["params"]["synth"]
    val, test = m["val"], m["test"]
    faces = m["faces"]
    rows = [
        (
            "reconstructions vs real faces, C2ST (0.5 = indistinguishable) [95% Wilson]",
            _fmt_ci(val["c2st"], val["c2st_ci"]),
            _fmt_ci(test["c2st"], test["c2st_ci"]),
        ),
        ("MAE (faces in [-1, 1])", f"{val['mae']:.4f}", f"{test['mae']:.4f}"),
        ("DSSIM", f"{val['dssim']:.4f}", f"{test['dssim']:.4f}"),
    ]
    side = config["face_config"]["image_size"] // 2 ** config["face_config"]["latent_blocks"]
    param_lines = "\n".join(f"    {k}: {v}" for k, v in p.items())
    return "\n".join(
        [
            "# face-autoencoder: sclmd's first stage",
            "",
            "The face encoder's latent blocks (VGG-Face layout, to z = "
            f"{config['face_config']['latent_channels']} x {side} x {side}) and the face decoder, "
            "trained once and long by `sclmd release`, so that every `make run` starts from them "
            "(`pretrain.face_init`) instead of training an autoencoder in minutes.",
            "",
            "## Data",
            "",
            f"VoxSynth's face renderer (`sclmd/data/voxsynth/face.py`, framing {synth['face_framing']}, supersampling "
            f"{synth['supersample']}), identities of its own (`first_stage.data_seed` {p['data_seed']}; "
            "none of them is a "
            f"speaker of any pipeline split): {faces['train']:,} training faces ({p['train_speakers']:,} identities x "
            f"{p['faces_per_speaker']}), {faces['val']} val and {faces['test']} test faces (identities of their own).",
            "",
            "| split | faces | sha256 of the uint8 faces |",
            "|---|---|---|",
            *[f"| {s} | {faces[s]:,} | `{m['data_sha256'][s]}` |" for s in ("train", "val", "test")],
            "",
            "## Training",
            "",
            f"- steps: {m['steps']:,} at batch {p['batch_size']} (the checkpoint kept: step {m['chosen_step']:,}, "
            "the best val C2ST of the evaluations every "
            f"{p['evaluate_every']:,} steps)",
            f"- wall time: {m['train_hours']:.2f} h of training on {line(machine)}",
            f"- perceptual term: {m['perceptual']['perceptual']}"
            + (
                " (LPIPS' backbone file was absent: DSSIM substituted)"
                if m["perceptual"].get("perceptual_substitute")
                else ""
            ),
            f"- git commit: `{commit}`",
            "- params (`first_stage`, from params.yaml with release.yaml's overrides):",
            "",
            "```yaml",
            "first_stage:",
            param_lines.replace("    ", "  "),
            "```",
            "",
            "## Metrics",
            "",
            "| | val (choice) | test |",
            "|---|---|---|",
            *[f"| {name} | {v} | {t} |" for name, v, t in rows],
            "",
            "The same classifier on real test faces against other real test faces reads "
            f"{m['test_real_vs_real_c2st']:.3f}"
            " (the test's own floor on this sample). The C2ST's interval counts the test faces, not how the small "
            "classifier happened to train (README: its noise is a few points wider).",
            "",
            "![reconstructions](reconstructions.png)",
            "",
            "## Quality against hours (val, every evaluation)",
            "",
            "| step | training hours | C2ST | MAE | DSSIM |",
            "|---|---|---|---|---|",
            *[
                f"| {st:,} | {h:.2f} | {c:.3f} | {a:.4f} | {d:.4f} |"
                for st, h, c, a, d in zip(
                    *[(curve or {}).get(k, []) for k in ("step", "hours", "c2st", "mae", "dssim")]
                )
            ],
            "",
            "![quality against hours](quality_vs_hours.png)",
            "",
            "![curves](curves.png)",
            "",
            *files_and_command(sums, commit, FIRST_STAGE_COMMAND, overrides),
            "",
            f"It took {m['train_hours']:.2f} h of training here; a GPU worker runs the same command "
            "(`prefect deployment run sclmd-release/gpu`).",
            "",
        ]
    )


def quality_against_hours(history: dict) -> dict[str, list[float]]:
    """The val evaluations against cumulative training hours: {hours, c2st, mae, dssim} (one entry each)."""
    seconds = dict((int(step), value) for step, value in history.get("seconds", []))
    steps = [int(step) for step, _ in history.get("val_c2st", [])]
    known = sorted(seconds)
    out: dict[str, list[float]] = {"step": [], "hours": [], "c2st": [], "mae": [], "dssim": []}
    for i, step in enumerate(steps):
        at = max((k for k in known if k <= step), default=None)
        if at is None:
            continue
        out["step"].append(step)
        out["hours"].append(seconds[at] / 3600)
        for key in ("c2st", "mae", "dssim"):
            out[key].append(history[f"val_{key}"][i][1])
    return out


def plot_quality_against_hours(history: dict, path: Path) -> Path | None:
    from sclmd.evaluate.plots import plot_sweep

    curve = quality_against_hours(history)
    if not curve["hours"]:
        return None
    return plot_sweep(
        curve["hours"],
        {"val C2ST (0.5 = real)": curve["c2st"], "val MAE": curve["mae"], "val DSSIM": curve["dssim"]},
        path,
        "first stage: val quality against training hours",
        "training hours",
        references={"val C2ST (0.5 = real)": 0.5},
    )


def ship_first_stage(work: Path, root: Path, target: Path | None = None, overrides: Path = OVERRIDES) -> Path:
    """Copy the workspace's trained first stage into weights/face-autoencoder/ with checksums and its card."""
    import json
    import shutil

    from sclmd.io import atomic_dir, write_text
    from sclmd.machine import describe
    from sclmd.models.shipped import CARD, FACE_AUTOENCODER, write_checksums
    from sclmd.stages.first_stage import MODEL_DIR, REPORT_DIR
    from sclmd.tracking import git_commit

    source = work / MODEL_DIR
    if not (source / "model.safetensors").is_file():
        raise SclmdError(f"{source}: no trained first stage to ship. Run `{FIRST_STAGE_COMMAND}` first.")
    target = target or root / FACE_AUTOENCODER
    with atomic_dir(target) as tmp:
        for name in ("model.safetensors", "config.json"):
            shutil.copy2(source / name, tmp / name)
        for name in ("curves.png", "reconstructions.png"):
            if (work / REPORT_DIR / name).is_file():
                shutil.copy2(work / REPORT_DIR / name, tmp / name)
        history = work / REPORT_DIR / "history.json"
        curve = None
        if history.is_file():
            curve = quality_against_hours(json.loads(history.read_text()))
            plot_quality_against_hours(json.loads(history.read_text()), tmp / "quality_vs_hours.png")
        sums = write_checksums(tmp)
        config = json.loads((tmp / "config.json").read_text())
        machine = config["metrics"].get("machine") or describe()
        write_text(
            tmp / CARD,
            first_stage_card(config, sums, machine, git_commit(root, RELEASE_OUTPUTS), str(overrides), curve),
        )
    return target


# --- the release SCLDM: baselines over seeds, and reports/release/ -------------------------------------------

BASELINES = ("speech2face", "ar_spm", "wav2pix", "wen")
SEED_DIR = Path("seeds")  # release/seeds/baselines<seed>/: the baselines retrained with another seed
# What a baseline-seed folder shares with the release workspace (symlinks): everything but the baselines.
SHARED_WITH_SEEDS = (
    "data/prepared",
    "data/encoded",
    "models/pretrain",
    "models/prior",
    "models/ldm",
    "models/judges",
    "real_voices",
)
SEED_KEYS = ("cos", "best_of_k_cos", "l1", "l2", "gender_acc", "age_acc", "two_sample_acc", "frechet")


def seed_workspace(work: Path, seed: int) -> Path:
    """release/seeds/baselines<seed>/: the workspace's params with baselines.seed = seed, the rest linked."""
    import os

    from sclmd.io import write_text

    params = yaml.safe_load((work / "params.yaml").read_text())
    params = merge_params(params, {"baselines": {"seed": seed}})
    folder = work / SEED_DIR / f"baselines{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(params, sort_keys=False)
    if not (folder / "params.yaml").is_file() or (folder / "params.yaml").read_text() != text:
        write_text(folder / "params.yaml", text)
    for rel in SHARED_WITH_SEEDS:
        link, source = folder / rel, (work / rel).resolve()
        if not source.exists() or (link.is_symlink() and link.resolve() == source):
            continue
        if link.is_symlink():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source, link)
    return folder


def _verdict(row: dict) -> str:
    low, high = row["ci"]
    if high < 0:
        return "ahead"
    if low > 0:
        return "behind"
    return "level"


def seed_summary(evaluations: dict[int, dict]) -> dict:
    """The baselines over their seeds (mean, spread, each seed) and SCLDM's paired verdicts against each seed."""
    import numpy as np

    out: dict = {"seeds": sorted(evaluations), "baselines": {}, "verdicts": {}}
    for name in BASELINES:
        runs = {s: m["methods"][name] for s, m in evaluations.items() if name in m["methods"]}
        if not runs:
            continue
        out["baselines"][name] = {
            key: {
                "mean": float(np.mean([r[key] for r in runs.values()])),
                "std": float(np.std([r[key] for r in runs.values()], ddof=1)) if len(runs) > 1 else 0.0,
                "per_seed": {str(s): float(r[key]) for s, r in runs.items()},
            }
            for key in SEED_KEYS
            if all(key in r for r in runs.values())
        }
        out["verdicts"][name] = {
            key: {
                str(s): {
                    "diff": m["comparisons"][name][key]["diff"],
                    "ci": m["comparisons"][name][key]["ci"],
                    "verdict": _verdict(m["comparisons"][name][key]),
                }
                for s, m in evaluations.items()
                if name in m.get("comparisons", {})
            }
            for key in ("best_of_k_cos", "cos")
        }
        out["verdicts"][name]["ahead_with_every_seed"] = all(
            v["verdict"] == "ahead" for key in ("best_of_k_cos", "cos") for v in out["verdicts"][name][key].values()
        )
    return out


# The release model's targets (issue 31), each read from the summary write_release_report builds:
# name -> (what it says, how to read the measured value, at_least | at_most | true, level)
RELEASE_TARGETS = {
    "first_stage_c2st": ("first stage: reconstructions told from real faces (C2ST), test", 0.65),
    "first_stage_gender_age": (
        "first stage: gender and age read from reconstructions minus the judges' on the real faces (the worse), test",
        -0.02,
    ),
    "c2st": ("SCLDM's faces told from real faces (C2ST), test", 0.75),
    "gender_gap": ("SCLDM's gender accuracy minus the judges' on the real faces, test", -0.02),
    "retrieval_r1": ("speaker retrieval R@1 among the test speakers", 0.10),
    "ahead_of_every_seed": ("best-of-K and single-sample cos ahead of every baseline, every seed", None),
    "real_voices": ("gender agreement on the shipped real voices", 0.90),
}


def release_targets(summary: dict) -> dict[str, dict]:
    """Each release target's measured value and whether it is met ({value, met}; value None: not measured),
    with, where the evaluation has VoxSynth's attribute oracle, what the oracle scores on the same measure
    (`oracle`) and whether the level is within its reach (`reachable`; None: the oracle does not bound it).

    The oracle knows all a VoxSynth voice carries (gender, age, size) and draws the rest: a target that the
    oracle misses asks for information the voices do not hold, so no model can meet it on this data."""
    scldm, refs = summary["scldm"], summary["references"]
    oracle = refs.get("attribute_oracle") or {}
    first = (summary.get("first_stage") or {}).get("test", {})
    real_gender = refs.get("real", {}).get("gender_acc")
    voices = (summary.get("real_voices") or {}).get("methods", {}).get("scldm", {})
    verdicts = summary["baseline_seeds"]["verdicts"]
    recon = refs.get("reconstruction", {})
    gaps = [recon[k] - refs["real"][k] for k in ("gender_acc", "age_acc") if k in recon and k in refs.get("real", {})]
    values = {
        "first_stage_c2st": first.get("c2st"),
        "first_stage_gender_age": min(gaps) if gaps else None,
        "c2st": scldm.get("two_sample_acc"),
        "gender_gap": None if real_gender is None else scldm.get("gender_acc", float("nan")) - real_gender,
        "retrieval_r1": scldm.get("retrieval_r1"),
        "ahead_of_every_seed": bool(verdicts) and all(v.get("ahead_with_every_seed") for v in verdicts.values()),
        "real_voices": voices.get("gender_agreement"),
    }
    # The baselines' lowest single-sample cos over every seed: the oracle's single sample must beat it too.
    baseline_cos = [
        stats["cos"]["mean"] for stats in summary["baseline_seeds"].get("baselines", {}).values() if "cos" in stats
    ]
    oracle_values = {
        "gender_gap": None if not oracle or real_gender is None else oracle["gender_acc"] - real_gender,
        "retrieval_r1": oracle.get("retrieval_r1"),
        "ahead_of_every_seed": (
            None if not oracle or not baseline_cos else {"cos": oracle["cos"], "best_baseline_cos": min(baseline_cos)}
        ),
    }
    out = {}
    for key, (_, level) in RELEASE_TARGETS.items():
        value = values[key]
        if isinstance(value, bool) or value is None:
            met = bool(value)
        elif key in ("first_stage_c2st", "c2st"):
            met = value <= level
        else:
            met = value >= level
        row = {"value": value, "met": met}
        reach = oracle_values.get(key)
        if reach is not None:
            row["oracle"] = reach
            if key == "ahead_of_every_seed":
                row["reachable"] = reach["cos"] < reach["best_baseline_cos"]
            else:
                ci = oracle.get(f"{key}_ci") if key == "retrieval_r1" else None
                row["reachable"] = (ci[1] if ci else reach) >= level  # within the oracle's interval counts
        out[key] = row
    return out


def _target_lines(targets: dict[str, dict]) -> list[str]:
    with_oracle = any("oracle" in row for row in targets.values())
    lines = [
        "## Targets",
        "",
        "| target | level | measured | met |" + (" the attribute oracle (VoxSynth's ceiling) |" if with_oracle else ""),
        "|---|---|---|---|" + ("---|" if with_oracle else ""),
    ]
    for key, row in targets.items():
        text, level = RELEASE_TARGETS[key]
        how = "" if level is None else ("<= " if key in ("first_stage_c2st", "c2st") else ">= ") + f"{level:g}"
        value = row["value"]
        shown = (
            "not measured"
            if value is None
            else ("yes" if value else "no")
            if isinstance(value, bool)
            else f"{value:+.3f}"
            if key in ("gender_gap", "first_stage_gender_age")
            else f"{value:.3f}"
        )
        met = "yes" if row["met"] else "**no**"
        if row.get("reachable") is False and not row["met"]:
            met += " (out of reach on this data)"
        line = f"| {text} | {how or 'all ahead'} | {shown} | {met} |"
        if with_oracle:
            reach = row.get("oracle")
            line += (
                ""
                if reach is None
                else f" single-sample cos {reach['cos']:.2f} vs the best baseline's {reach['best_baseline_cos']:.2f} |"
                if key == "ahead_of_every_seed"
                else f" {reach:+.3f} |"
                if key == "gender_gap"
                else f" {reach:.3f} |"
            )
            if reach is None:
                line += " |"
        lines.append(line)
    lines += ["", "Chosen on val; nothing here was tuned on the test split.", ""]
    if with_oracle:
        lines += [
            "The attribute oracle renders, for each test clip, faces of new identities with the speaker's gender, "
            "age and size: all a VoxSynth voice carries (the rest of a VoxSynth face is drawn independently of the "
            "voice). No model that hears only the voice can know more, so a level the oracle misses asks for "
            "information the data does not hold: *out of reach on this data*.",
            "",
        ]
    return lines


def first_stage_metrics(work: Path) -> dict | None:
    """The first stage's numbers: this workspace's own run when it trained one, else the model card of the
    first stage it started from (`pretrain.face_init`), so `--part scldm` alone still reports them."""
    import json

    from sclmd.models.shipped import resolve

    own = work / "reports/first_stage/metrics.json"
    if own.is_file():
        return json.loads(own.read_text())
    init = (yaml.safe_load((work / "params.yaml").read_text()).get("pretrain") or {}).get("face_init")
    config = resolve(Path(init), work) / "config.json" if init else None  # null: trained in the run, no card
    if config is not None and config.is_file():
        return json.loads(config.read_text()).get("metrics")
    return None


def write_release_report(work: Path, out_dir: Path, seed_dirs: dict[int, Path]) -> dict:
    """reports/release/: metrics.json, report.md (the paper's Tables 2-3 layout, the baselines over seeds,
    the paired verdicts per seed, the targets), the comparison and real-voice grids, the first stage's card numbers."""
    import json
    import shutil

    from sclmd.evaluate.report import BEYOND, paper_layout, real_voice_section, table
    from sclmd.io import atomic_dir, write_json
    from sclmd.machine import describe
    from sclmd.stages.evaluate import METHOD_NAMES, PAPER_TABLE_2, PAPER_TABLE_3

    main = json.loads((work / "reports/eval/metrics.json").read_text())
    evaluations = {
        int(yaml.safe_load((d / "params.yaml").read_text())["baselines"]["seed"]): json.loads(
            (d / "reports/eval/metrics.json").read_text()
        )
        for d in seed_dirs.values()
    }
    evaluations[int(yaml.safe_load((work / "params.yaml").read_text())["baselines"]["seed"])] = main
    seeds = seed_summary(evaluations)
    summary = {
        "scldm": main["methods"]["scldm"],
        "references": main["references"],
        "judges": main["judges"],
        "targets": main.get("targets", {}),
        "baseline_seeds": seeds,
        "real_voices": main.get("real_voices"),
        "first_stage": first_stage_metrics(work),
        "machine": describe(),
    }
    summary["targets"] = release_targets(summary)
    names = {**METHOD_NAMES}
    lines = [
        "# The release model (sclmd release): SCLDM on the shipped first stage",
        "",
        f"Test split, {main['n_clips']} clips of {main['n_speakers']} speakers; judged by the run's judges. "
        "95% intervals with speakers resampled. The baselines are the seed-"
        f"{min(evaluations)} run in the tables; every seed's numbers follow.",
        "",
        *paper_layout(main["methods"], names, {"2": PAPER_TABLE_2, "3": PAPER_TABLE_3}),
        "",
        "## Beyond the paper",
        "",
        table({**main["methods"], **main["references"]}, names, BEYOND),
        "",
        "## The baselines over their seeds",
        "",
        "| baseline | " + " | ".join(SEED_KEYS) + " |",
        "|---|" + "---|" * len(SEED_KEYS),
    ]
    for name, stats in seeds["baselines"].items():
        lines.append(
            f"| {names[name]} | "
            + " | ".join(f"{stats[k]['mean']:.3f} ± {stats[k]['std']:.3f}" if k in stats else "" for k in SEED_KEYS)
            + " |"
        )
    lines += [
        "",
        "SCLDM's paired difference to each seed (negative = SCLDM closer; **ahead** = interval below 0):",
        "",
        "| baseline | seed | best-of-K cos | cos |",
        "|---|---|---|---|",
    ]
    for name, verdicts in seeds["verdicts"].items():
        for seed in sorted(verdicts["cos"], key=int):
            cells = [
                f"{v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}] {v['verdict']}"
                for v in (verdicts["best_of_k_cos"][seed], verdicts["cos"][seed])
            ]
            lines.append(f"| {names[name]} | {seed} | {cells[0]} | {cells[1]} |")
    lines += ["", *real_voice_section(summary["real_voices"], names), *_target_lines(summary["targets"])]
    lines += ["![comparison](comparison.png)", "", "![real voices](real_voices.png)", ""]
    with atomic_dir(out_dir) as tmp:
        for name, source in (
            ("comparison.png", "comparison.png"),
            ("real_voices.png", "real_voices.png"),
            ("methods.png", "methods.png"),
        ):
            path = work / "reports/eval/plots" / source
            if path.is_file():
                shutil.copy2(path, tmp / name)
        write_json(tmp / "metrics.json", summary)
        (tmp / "report.md").write_text("\n".join(lines))
    return summary


SCLDM_COMMAND = "sclmd release --part scldm"
# What a release writes into the checkout: a change there is a result, not the code the card names.
RELEASE_OUTPUTS = ("weights", "reports/release")


def scldm_card(summary: dict, params: dict, sums: dict[str, str], machine: dict, commit: str, hours: float) -> str:
    """The model card (README.md) of weights/scldm-voxsynth, from reports/release/metrics.json."""
    from sclmd.machine import line

    s, refs, seeds = summary["scldm"], summary["references"], summary["baseline_seeds"]

    def ci(row: dict, key: str) -> str:
        interval = row.get(f"{key}_ci")
        return f"{row[key]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    oracle = refs.get("attribute_oracle")  # VoxSynth's: the voice's gender, age and size exact, the rest drawn
    measures = [
        ("two-sample accuracy (C2ST; 0.5 = real)", "two_sample_acc", True),
        ("gender accuracy (judges)", "gender_acc", True),
        ("age within 10 years", "age_acc", True),
        ("R@1 among the test speakers", "retrieval_r1", True),
        ("cos distance (first sample)", "cos", False),
        ("best-of-K cos distance", "best_of_k_cos", False),
    ]
    rows = [
        (name, ci(s, key), ci(refs["real"], key) if real else "", ci(oracle, key) if oracle and key in oracle else "")
        for name, key, real in measures
    ]
    targets = summary["targets"]  # release_targets(): the real-voice number and the seeds' verdict, read once
    agreement = targets["real_voices"]["value"]
    return "\n".join(
        [
            "# scldm-voxsynth: the release SCLDM",
            "",
            "The speech-conditioned latent diffusion model trained long by `sclmd release` on VoxSynth, on the "
            "shipped first stage (`weights/face-autoencoder`). `sclmd generate`, `demo`, `check-voices` and `talk` "
            "use it when the registry has no champion; `sclmd promote` gates a first challenger against it. The "
            "folder is a pipeline folder (`SpeechToFacePipeline.from_pretrained`) with the judges it was measured by.",
            "",
            "## Data",
            "",
            f"VoxSynth as `make run` generates it (synth seed {params['synth']['seed']}, "
            f"{params['synth']['n_speakers']} "
            "speakers, split by speaker 80/10/10).",
            "",
            "## Training",
            "",
            f"- pre-training {params['pretrain']['max_steps']} joint steps from the first stage; LDM "
            f"{params['ldm']['max_steps']:,} steps at batch {params['ldm']['batch_size']}",
            f"- wall time: {hours:.2f} h of the release's stages on {line(machine)}",
            f"- git commit: `{commit}`",
            "",
            "## Metrics (test split, 95% intervals, speakers resampled)",
            "",
            "| | SCLDM | real faces (judges' ceiling) |"
            + (" attribute oracle (the data's ceiling) |" if oracle else ""),
            "|---|---|---|" + ("---|" if oracle else ""),
            *[f"| {name} | {a} | {b} |" + (f" {c} |" if oracle else "") for name, a, b, c in rows],
            "",
            f"Real voices (`sclmd check-voices real_voices`): gender agreement {agreement:.2f}."
            if agreement is not None
            else "Real voices: not measured.",
            "",
            *_target_lines(targets),
            "Baselines over seeds " + ", ".join(map(str, seeds["seeds"])) + ": SCLDM ahead of every seed of every "
            "baseline on best-of-K and single-sample cos: "
            + ("yes" if targets["ahead_of_every_seed"]["met"] else "no")
            + " (reports/release/report.md).",
            "",
            *files_and_command(sums, commit, SCLDM_COMMAND, "release.yaml"),
            "",
        ]
    )


def ship_scldm(work: Path, root: Path, summary: dict, hours: float, target: Path | None = None) -> Path:
    """models/ldm (+ its judges) of the workspace -> weights/scldm-voxsynth/ with checksums and its card."""
    import shutil

    from sclmd.io import atomic_dir, write_text
    from sclmd.machine import describe
    from sclmd.models.shipped import CARD, RELEASE_SCLDM, write_checksums
    from sclmd.tracking import git_commit

    source = work / "models/ldm"
    if not (source / "sclmd.json").is_file():
        raise SclmdError(f"{source}: no trained release model to ship. Run `{SCLDM_COMMAND}` first.")
    target = target or root / RELEASE_SCLDM
    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, symlinks=False)
        shutil.copytree(work / "models/judges", tmp / "judges")
        # its evaluation, for `sclmd promote`: what a first challenger must beat
        shutil.copy2(work / "reports/eval/metrics.json", tmp / "evaluation.json")
        sums = write_checksums(tmp)
        params = yaml.safe_load((work / "params.yaml").read_text())
        write_text(tmp / CARD, scldm_card(summary, params, sums, describe(), git_commit(root, RELEASE_OUTPUTS), hours))
    return target


# --- the release talker: weights/dae-talker and reports/release/talker/ -------------------------------------------

TALKER_COMMAND = "sclmd release --part talker"
TALKER_STAGES = ("synth_video", "train_talker", "evaluate_talker")
RELEASE_TALKER_REPORTS = Path("reports/release/talker")
# what of the workspace's talker reports the release keeps (evaluate_talker's, then train_talker's)
TALKER_REPORT_FILES = {
    "reports/talker/report.md": "report.md",
    "reports/talker/metrics.json": "metrics.json",
    "reports/talker/frame_strip.png": "frame_strip.png",
    "reports/talker/frame_strip_bearded.png": "frame_strip_bearded.png",
    "reports/talker/metrics.png": "metrics.png",
    "reports/talker/sample.mp4": "sample.mp4",
    "reports/talker_train/metrics.json": "train_metrics.json",
    "reports/talker_train/losses.png": "losses.png",
    "reports/talker_train/val_reconstructions.png": "val_reconstructions.png",
}


def write_talker_report(work: Path, out_dir: Path) -> dict:
    """reports/release/talker/: the release talker's evaluation (the Table of reports/talker/ on its test
    speakers), its training curves and pictures, copied from the workspace. Returns its metrics."""
    import json
    import shutil

    from sclmd.io import atomic_dir

    metrics = work / "reports/talker/metrics.json"
    if not metrics.is_file():
        raise SclmdError(f"{metrics}: the release talker was not evaluated. Run `{TALKER_COMMAND}` first.")
    with atomic_dir(out_dir) as tmp:
        for source, name in TALKER_REPORT_FILES.items():
            if (work / source).is_file():
                shutil.copy2(work / source, tmp / name)
    return json.loads(metrics.read_text())


def talker_targets(metrics: dict) -> dict[str, dict]:
    """issue 32's targets, read off an evaluate_talker metrics.json: each {value, level, met}."""
    t, pose = metrics["methods"], metrics["pose"]
    d = metrics["dae_minus_regression_lipsync"]
    first = t.get("dae_first_frame", {})
    ratio = pose.get("sampled_std_ratio", {})
    spread = min(ratio.get("yaw", 0.0), ratio.get("roll", 0.0)) if ratio else None
    drift = first.get("identity_drift")
    between = first.get("between_speakers")
    rows = {
        "lipsync_vs_regression": (d["ci"][0], 0.0, d["ci"][0] > 0),
        "autoencoder_lipsync": (t["real_autoencoder"]["lipsync"], 0.94, t["real_autoencoder"]["lipsync"] >= 0.94),
        "frechet": (first.get("frechet"), 0.10, first.get("frechet") is not None and first["frechet"] <= 0.10),
        "identity_drift": (
            None if drift is None else drift / max(between, 1e-9),
            0.1,
            drift is not None and drift < 0.1 * between,
        ),
        "pose_spread": (spread, 0.5, spread is not None and spread >= 0.5),
    }
    return {k: {"value": v, "level": level, "met": bool(met)} for k, (v, level, met) in rows.items()}


TALKER_TARGET_NAMES = {
    "lipsync_vs_regression": "lip sync minus the regression's, lower 95% bound (averaged codes), > 0",
    "autoencoder_lipsync": "lip sync of the clip's own frames through the first stage, >= 0.94",
    "frechet": "Fréchet of the talker's frames (clip's first frame) to real frames, <= 0.10",
    "identity_drift": "identity drift over the between-speaker distance, < 0.1",
    "pose_spread": "sampled yaw and roll spread over the true spread (the lower), >= 0.5",
}


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def talker_card(
    metrics: dict, train: dict, params: dict, sums: dict[str, str], machine: dict, commit: str, hours: float
) -> str:
    """The model card (README.md) of weights/dae-talker."""
    from sclmd.machine import line

    t, p, video = metrics["methods"], params["talker"], params["talker_video"]
    targets = talker_targets(metrics)
    names = {
        "dae_first_frame": "DAE-Talker (the clip's first frame)",
        "dae_photo": "DAE-Talker (portrait)",
        "regression": "regression reference (portrait)",
        "real_autoencoder": "real frames through the first stage",
        "real": "real frames",
    }

    def ci(row: dict, key: str) -> str:
        return f"{row[key]:.3f} [{row[key + '_ci'][0]:.3f}, {row[key + '_ci'][1]:.3f}]"

    d = metrics["dae_minus_regression_lipsync"]
    pose = metrics["pose"]
    return "\n".join(
        [
            "# dae-talker: the release talking face",
            "",
            "DAE-Talker (a diffusion autoencoder on the shipped first stage's face latents, speech2latent with a "
            "pose head and a sampled head drift, and the regression reference it is measured against), trained "
            "by `sclmd release --part talker`. `sclmd talk VOICE -o OUT.mp4` uses it when this workspace has no "
            "`make talker`; the folder holds the face autoencoder it works in (`pretrain/`).",
            "",
            "## Data",
            "",
            f"VoxSynth talking videos (stage synth_video, seed {video['seed']}): {video['seconds']} s per clip at "
            f"{video['fps']} fps, {video['train_speakers']} training speakers, {video['val_speakers']} val and "
            f"{video['test_speakers']} test speakers (from the release SCLDM's speaker splits).",
            "",
            "## Training",
            "",
            f"- DAE {p['dae_steps']:,} steps at batch {p['dae_batch_size']}; speech2latent "
            f"{p['speech2latent_steps']:,}; regression reference {p['regressor_steps']:,}",
            f"- UNet channels {p['unet_channels']}, motion code {p['motion_dim']}, DDIM {p['ddim_steps']} steps",
            f"- head drift fitted on the training clips: spread {train.get('pose_drift', {}).get('std_deg')} deg, "
            f"correlation sigma {train.get('pose_drift', {}).get('sigma_frames')} frames",
            f"- wall time: {hours:.2f} h of the talker's stages on {line(machine)}",
            f"- git commit: `{commit}`",
            "",
            f"## Metrics ({metrics['n_clips']} test speakers, 95% intervals, speakers resampled; DAE rows "
            f"averaged over {metrics['noise_codes']} noise codes)",
            "",
            "| | lip sync r | identity drift | Fréchet vs real frames |",
            "|---|---|---|---|",
            *[
                f"| {label} | {ci(t[k], 'lipsync')} | {t[k]['identity_drift']:.4f} | {t[k]['frechet']:.3f} |"
                for k, label in names.items()
                if k in t
            ],
            "",
            f"DAE (portrait) minus regression, lip sync: {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}].",
            "",
            "Head pose (degrees, spread within a clip): true yaw/pitch/roll "
            + " / ".join(f"{pose['true_std_deg'][a]:.2f}" for a in ("yaw", "pitch", "roll"))
            + "; sampled "
            + " / ".join(f"{pose['sampled_std_deg'][a]:.2f}" for a in ("yaw", "pitch", "roll"))
            + f"; the pose head's pitch r {pose['predicted_r']['pitch']:.2f} (the voice's nods), yaw r "
            f"{pose['predicted_r']['yaw']:.2f} (a random drift in VoxSynth: nothing to predict).",
            "",
            "## Targets",
            "",
            "| target | value | met |",
            "|---|---|---|",
            *[
                f"| {TALKER_TARGET_NAMES[k]} | {_value(v['value'])} | {'yes' if v['met'] else 'no'} |"
                for k, v in targets.items()
            ],
            "",
            *files_and_command(sums, commit, TALKER_COMMAND, "release.yaml"),
            "",
        ]
    )


def ship_talker(work: Path, root: Path, metrics: dict, hours: float, target: Path | None = None) -> Path:
    """models/talker of the workspace -> weights/dae-talker/ with checksums and its card."""
    import json
    import shutil

    from sclmd.io import atomic_dir, write_text
    from sclmd.machine import describe
    from sclmd.models.shipped import CARD, RELEASE_TALKER, write_checksums
    from sclmd.models.talker import CONFIG
    from sclmd.tracking import git_commit

    source = work / "models/talker"
    if not (source / CONFIG).is_file():
        raise SclmdError(f"{source}: no trained release talker to ship. Run `{TALKER_COMMAND}` first.")
    train_metrics = work / "reports/talker_train/metrics.json"
    train = json.loads(train_metrics.read_text()) if train_metrics.is_file() else {}
    target = target or root / RELEASE_TALKER
    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, symlinks=False)
        shutil.copy2(work / "reports/talker/metrics.json", tmp / "evaluation.json")
        sums = write_checksums(tmp)
        params = yaml.safe_load((work / "params.yaml").read_text())
        card = talker_card(metrics, train, params, sums, describe(), git_commit(root, RELEASE_OUTPUTS), hours)
        write_text(tmp / CARD, card)
    return target
