"""Markdown reports: the evaluation tables in the paper's layout, beside the paper's numbers."""

from __future__ import annotations

import math

COLUMNS = (("l1", "L1 ↓", "{:.2f}"), ("l2", "L2 ↓", "{:.3f}"), ("cos", "cos ↓", "{:.2f}"),
           ("gender_acc", "gender % ↑", "pct"), ("age_acc", "age % ↑", "pct"))
BEYOND = (("frechet", "Fréchet ↓", "{:.3f}"), ("retrieval_r1", "R@1 ↑", "{:.3f}"), ("retrieval_r5", "R@5 ↑", "{:.3f}"),
          ("diversity", "diversity", "{:.2f}"), ("best_of_k_cos", "best-of-K cos ↓", "best"), ("age_mae", "age MAE", "{:.1f}"))

DIFFERENCES = (
    "What differs from the paper: the data (this run's data set, not AVSpeech; VoxSynth on the embedded "
    "default), the models' size and training budget, and the judges: ours are small networks trained on "
    "this run's real training faces instead of VGG-Face features and the Face++ API, so the absolute numbers "
    "are not comparable with the paper's; the ranking of methods judged by the same judges is. Features are "
    "unit-normalised before L1 and L2, so those scales differ from the paper's too."
)


def _cell(value, fmt: str, row: dict | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    if fmt == "best":
        std = (row or {}).get("best_of_k_cos_std")
        return f"{value:.2f} ± {std:.2f}" if std is not None else f"{value:.2f}"
    return fmt.format(value)


def table(rows: dict[str, dict], names: dict[str, str], columns=COLUMNS, first: str = "method") -> str:
    head = f"| {first} | " + " | ".join(c[1] for c in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    body = [f"| {names.get(key, key)} | " + " | ".join(_cell(row.get(c[0]), c[2], row) for c in columns) + " |"
            for key, row in rows.items()]
    return "\n".join([head, rule, *body])


def eval_report(metrics: dict, names: dict[str, str], paper: dict[str, dict]) -> str:
    methods, refs = metrics["methods"], metrics["references"]
    sampling = metrics["sampling"]
    best = max(methods, key=lambda m: -methods[m]["cos"])
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
        "## Feature similarity and identity preservation (paper Tables 2-3)",
        "",
        table(methods, names),
        "",
        "Ceilings (not methods): the judges on the true faces, and on the decoder's reconstruction of each "
        "true face's own latent (what any method drawing through this decoder can at best reach):",
        "",
        table(refs, names, first="reference"),
        "",
        "The paper's AVSpeech numbers (Table 2), for reference:",
        "",
        table(paper, {key: f"{names.get(key, key).removesuffix(' (ours)').removesuffix('-style')} (paper)"
                      for key in paper}, first="paper"),
        "",
        DIFFERENCES,
        "",
        "## Beyond the paper",
        "",
        table(methods, names, BEYOND),
        "",
        "- Fréchet: distance between the judge-feature distributions of generated and real test faces (realism).",
        "- R@k: the true speaker ranks in the top k of the test speakers by the generated face's features.",
        "- Diversity: mean pairwise (1 - cos) x 100 between a clip's samples (0 for deterministic methods).",
        "- best-of-K cos: per clip, the best of K samples; mean ± std over clips (paper Figure 6's number).",
        "",
        f"Lowest cosine distance here: **{names.get(best, best)}**.",
        "",
    ]
    if "targets" in metrics:
        lines += ["## Targets", "", "| target | met |", "|---|---|"]
        lines += [f"| {TARGET_TEXT.get(key, key)} | {'yes' if met else '**no**'} |"
                  for key, met in metrics["targets"].items()]
        lines += ["", "Any target not met is a finding, not a tuning target: nothing here was tuned on the "
                  "test split.", ""]
    return "\n".join(lines)


TARGET_TEXT = {
    "gender_acc_at_least_0.98": "SCLDM gender accuracy >= 0.98",
    "age_acc_at_least_0.85": "SCLDM age accuracy >= 0.85",
    "cos_ahead_of_baselines": "SCLDM's cosine distance below both baselines'",
    "frechet_ahead_of_baselines": "SCLDM's Fréchet distance below both baselines'",
}
