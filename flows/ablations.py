"""The ablations of the paper's Table 4 and the prior-weight sweep of its Figure 6, as one flow.

Every variant is the project's own params with a few switches set (params, not code
copies), run by the same stages in a folder of its own under `ablations/<variant>/`:

- `base`: no collaborative pre-training and no prior normalisation;
- `cp`:   + collaborative pre-training (CP), still no prior normalisation;
- `pn`:   + prior normalisation (PN), no CP;
- `full`: CP + PN, the project's own params (its outputs are reused, not retrained);
- `pw<lambda>`: the sweep, lambda at training and inference (0 is `cp`, 0.01 is `full`);
- `scratch`: `full` with the face autoencoder trained in the run (`pretrain.face_init: null`) instead of
  started from the shipped first stage.

"Without CP" means `pretrain.contrastive_weight: 0`: the face autoencoder is pre-trained by
reconstruction alone, and the speech encoder gets no training signal, so it stays at its
random initialisation; the LDM is then conditioned on that untrained speech embedding.
There is no other speech encoder to fall back on, so this is the honest "no CP".

Variants share what they can: the data, and the judges, always; the pre-training, prior
and baselines whenever their params match another variant's (symlinked, not retrained).
Each variant's SCLDM metrics are collected into `reports/ablations/` (metrics.json,
report.md, ablation bars and sweep curve PNGs), which is committed with the code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from prefect import flow, task

from sclmd.config import load_params
from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.orchestration import stale_stages

NO_CP = {"pretrain": {"contrastive_weight": 0.0}}
TABLE_4 = {
    "base": {**NO_CP, "ldm": {"prior_weight": 0.0}},
    "cp": {"ldm": {"prior_weight": 0.0}},
    "pn": NO_CP,
    "full": {},
}
# The shipped first stage against training the face autoencoder inside the run, as every run did before
# it shipped: the autoencoder phase back on, at the width those runs used (3.0 triples its step time).
FIRST_STAGE = {"scratch": {"pretrain": {"face_init": None, "decoder_width": 1.0}}}
SWEEP = (0.0, 0.001, 0.01, 0.1, 1.0)
# Variants only need their own metrics, not the val check of every guidance scale (with
# `guidance: auto` they take the scale the project's own model chose; see run_variant).
VARIANT_DEFAULTS = {"ldm": {"guidance_check": []}}
SHARED = ("data/prepared", "models/judges")  # never depend on a variant's params
UPSTREAM = {  # what a stage reads from params (besides `data`) -> the outputs it writes
    "pretrain": (("pretrain",), ("models/pretrain", "data/encoded")),
    "prior": (("pretrain", "prior"), ("models/prior",)),
    "baselines": (("pretrain", "prior", "baselines"), ("models/baselines",)),
}
WORK_DIR = Path("ablations")
REPORT_DIR = Path("reports/ablations")
NAMES = {
    "base": "base",
    "cp": "+CP",
    "pn": "+PN",
    "full": "full (CP + PN)",
    "scratch": "full, autoencoder trained in the run (face_init: null)",
}


def sweep_name(weight: float) -> str:
    return f"pw{weight:g}"


def sweep_variant(weight: float, project_weight: float) -> str:
    """Which variant holds the sweep point `weight`: `cp` at 0, `full` at the project's own lambda."""
    if weight == 0.0:
        return "cp"
    if weight == project_weight:
        return "full"
    return sweep_name(weight)


def variants(project_weight: float, sweep: tuple[float, ...] = SWEEP) -> dict[str, dict]:
    """Every variant's param overrides; sweep points that a Table 4 variant already is are not repeated."""
    out = dict(TABLE_4) | FIRST_STAGE
    for weight in sweep:
        name = sweep_variant(weight, project_weight)
        if name not in out:
            out[name] = {"ldm": {"prior_weight": weight}}
    return out


def merge_params(base: dict, override: dict) -> dict:
    """`base` with `override`'s keys set, section by section (nested dicts merged, not replaced)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merge_params(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _section_key(params: dict, sections: tuple[str, ...]) -> str:
    return json.dumps({s: params.get(s) for s in ("data", *sections)}, sort_keys=True)


@task(task_run_name="ablation-{name}")
def run_variant(name: str, overrides: dict, root: str, done: dict[str, str]) -> dict:
    """Run one variant's stages in ablations/<name>/; returns its SCLDM metrics and params keys."""
    from sclmd.stages import run_stage
    from sclmd.tracking import VARIANT_ENV

    root_path = Path(root)
    base = yaml.safe_load((root_path / "params.yaml").read_text())
    if not overrides:  # the project's own params: its outputs already are this variant
        metrics = json.loads((root_path / "reports/eval/metrics.json").read_text())
        return {"dir": str(root_path), "params": base, "metrics": metrics["methods"]["scldm"]}
    params = merge_params(merge_params(base, VARIANT_DEFAULTS), overrides)
    if params.get("ldm", {}).get("guidance", "auto") == "auto":
        # Variants skip the guidance check: they sample at the scale the project's model chose on val.
        chosen = json.loads((root_path / "reports/ldm/metrics.json").read_text())["guidance"]
        params.setdefault("ldm", {})["guidance"] = float(chosen)
    work = root_path / WORK_DIR / name
    if work.exists():
        shutil.rmtree(work)
    (work / "models").mkdir(parents=True)
    (work / "data").mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load_params(work / "params.yaml")  # a bad override fails here, with the key named
    for rel in SHARED:
        os.symlink(root_path / rel, work / rel)
    stages = []
    for stage, (sections, outs) in UPSTREAM.items():
        key = _section_key(params, sections)
        source = done.get(f"{stage}:{key}")
        if source is None and key == _section_key(base, sections):
            source = str(root_path)  # same params as the project: reuse its outputs
        if source is None:
            stages.append(stage)
            done[f"{stage}:{key}"] = str(work)
        else:
            for rel in outs:
                os.symlink(Path(source) / rel, work / rel)
    stages += ["train_ldm", "evaluate"]
    cwd = os.getcwd()
    os.environ[VARIANT_ENV] = name
    try:
        os.chdir(work)
        for stage in stages:
            print(f"ablation {name}: {stage}")
            run_stage(stage, work)
    finally:
        os.chdir(cwd)
        os.environ.pop(VARIANT_ENV, None)
    metrics = json.loads((work / "reports/eval/metrics.json").read_text())
    return {"dir": str(work), "params": params, "metrics": metrics["methods"]["scldm"], "ran": stages}


@flow(name="sclmd-ablations", log_prints=True)
def sclmd_ablations(only: list[str] | None = None, root: str | None = None) -> dict:
    """Table 4 ablations and the prior-weight sweep; writes reports/ablations/."""
    from sclmd.tracking import tracking_uri

    root_path = Path(root).resolve() if root else project_root()
    if not (root_path / "reports/eval/metrics.json").exists():
        raise SclmdError(
            f"{root_path}: no evaluated model yet. Run `make run` (or `sclmd pipeline`) first: "
            "the ablations reuse its data, judges and, for `full`, its model."
        )
    stale = stale_stages(root_path)
    if stale:
        raise SclmdError(
            f"{root_path}: stage(s) {', '.join(stale)} are out of date with params.yaml or the code; "
            "the ablations would reuse stale outputs. Run `make run` first."
        )
    # Every variant logs to the project's MLflow store, tagged with its name.
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(root_path))
    project_weight = load_params(root_path / "params.yaml").ldm.prior_weight
    wanted = variants(project_weight)
    if only:
        unknown = [n for n in only if n not in wanted]
        if unknown:
            raise SclmdError(f"unknown variant(s) {', '.join(unknown)}. Variants: {', '.join(wanted)}")
        wanted = {n: o for n, o in wanted.items() if n in only}
    done: dict[str, str] = {}
    results = {}
    for name, overrides in wanted.items():
        results[name] = run_variant(name, overrides, str(root_path), done)
    summary = write_reports(root_path, results, project_weight)
    log_reports(root_path, summary)
    print(f"ablations done: {', '.join(results)} -> {REPORT_DIR}/")
    return summary


def write_reports(root: Path, results: dict[str, dict], project_weight: float) -> dict:
    """reports/ablations/: metrics.json, report.md, ablations.png, sweep.png (kept in git)."""
    from sclmd.evaluate.plots import plot_metric_comparison
    from sclmd.evaluate.report import COLUMNS, table
    from sclmd.io import atomic_file, write_json
    from sclmd.stages.evaluate import PAPER_TABLE_4

    out = root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    table4 = {n: results[n]["metrics"] for n in TABLE_4 if n in results}
    first_stage = {n: results[n]["metrics"] for n in ("full", *FIRST_STAGE) if n in results and len(results) > 1}
    sweep = []
    for weight in SWEEP:
        name = sweep_variant(weight, project_weight)
        if name in results:
            m = results[name]["metrics"]
            sweep.append(
                {
                    "prior_weight": weight,
                    "variant": name,
                    "best_of_3_cos": m["best_of_k_cos"],
                    "best_of_3_cos_std": m["best_of_k_cos_std"],
                    "cos": m["cos"],
                }
            )
    summary = {
        "split": "test",
        "no_cp_means": "pretrain.contrastive_weight: 0 (autoencoder by reconstruction alone; speech encoder untrained)",
        "variants": {
            n: {"overrides": variants(project_weight).get(n, {}), "scldm": r["metrics"]} for n, r in results.items()
        },
        "table4": table4,
        "first_stage": first_stage,
        "sweep": sweep,
    }
    write_json(out / "metrics.json", summary)
    if table4:
        plot_metric_comparison(
            {
                NAMES[n]: {k: m[k] for k in ("cos", "gender_acc", "age_acc", "frechet", "retrieval_r1")}
                for n, m in table4.items()
            },
            out / "ablations.png",
            "Table 4 ablations: SCLDM on the test split",
        )
    if sweep:
        plot_prior_weight_sweep(sweep, out / "sweep.png")
    lines = [
        "# Ablations (paper Table 4) and the prior-weight sweep (paper Figure 6)",
        "",
        "Each variant is the project's params with switches set, trained and evaluated by the same stages "
        'on the same data and judged by the same judges (test split). "Without CP" means '
        "`pretrain.contrastive_weight: 0`: the face autoencoder is pre-trained by reconstruction alone and "
        "the speech encoder stays at its random initialisation.",
        "",
    ]
    if table4:
        lines += [
            "## Table 4",
            "",
            table(table4, NAMES, COLUMNS, first="variant"),
            "",
            "The paper's AVSpeech numbers, for reference (VGG-Face features, Face++):",
            "",
            table(
                {k: v for k, v in PAPER_TABLE_4.items() if k in table4},
                {k: f"{v} (paper)" for k, v in NAMES.items()},
                COLUMNS,
                first="variant",
            ),
            "",
        ]
    if len(first_stage) > 1:
        lines += [
            "## The shipped first stage (`pretrain.face_init`)",
            "",
            "`full` starts from `weights/face-autoencoder/` (trained once, long, by `sclmd release`); "
            "`scratch` trains the face autoencoder inside the run (`face_init: null`: `autoencoder_steps` face-only "
            "steps, then the joint phase trains it with the rest).",
            "",
            table(first_stage, NAMES, COLUMNS, first="variant"),
            "",
        ]
    if sweep:
        lines += [
            "## Prior-weight sweep (training and inference)",
            "",
            "| lambda | best-of-3 cos ↓ (mean ± std) | cos of the first sample |",
            "|---|---|---|",
        ]
        lines += [
            f"| {row['prior_weight']:g} | {row['best_of_3_cos']:.2f} ± {row['best_of_3_cos_std']:.2f} | "
            f"{row['cos']:.2f} |"
            for row in sweep
        ]
        lines.append("")
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    return summary


def log_reports(root: Path, summary: dict) -> None:
    """One MLflow run `ablations` with every variant's SCLDM metrics and the report files."""
    import mlflow

    from sclmd.stages import logged_metrics
    from sclmd.tracking import stage_run

    with stage_run("ablations", root, {"variants": {n: v["overrides"] for n, v in summary["variants"].items()}}):
        mlflow.log_metrics(logged_metrics({n: v["scldm"] for n, v in summary["variants"].items()}))
        mlflow.log_artifacts(str(root / REPORT_DIR), artifact_path=str(REPORT_DIR))


def plot_prior_weight_sweep(sweep: list[dict], path: Path) -> Path:
    """Best-of-3 cosine distance (mean ± std over test clips) against lambda (paper Figure 6)."""
    from matplotlib.figure import Figure

    from sclmd.evaluate.plots import ROW_COLOURS, _save

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    # lambda = 0 cannot sit on a log axis: draw it one decade left of the smallest positive value
    positive = [row["prior_weight"] for row in sweep if row["prior_weight"] > 0]
    zero_at = min(positive) / 10 if positive else 1e-3
    xs = [row["prior_weight"] or zero_at for row in sweep]
    ax.errorbar(
        xs,
        [r["best_of_3_cos"] for r in sweep],
        yerr=[r["best_of_3_cos_std"] for r in sweep],
        marker="o",
        capsize=4,
        color=ROW_COLOURS[0],
    )
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{r['prior_weight']:g}" for r in sweep])
    ax.set_xlabel("prior weight lambda (training and inference)")
    ax.set_ylabel("best-of-3 cosine distance x 100 (lower is better)")
    ax.set_title("prior-weight sweep, test split (mean ± std over clips)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


if __name__ == "__main__":
    sclmd_ablations()
