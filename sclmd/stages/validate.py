"""Stage `validate`: the Great Expectations data contract on `data/prepared`.

Reads params sections `data` and `validate`.  Always writes
`reports/data_contract.json` (+ a readable `.md` and a PNG overview); exits
non-zero, stopping the pipeline, when any expectation fails.
"""

from __future__ import annotations

from pathlib import Path

from sclmd.config import DataParams, Params, ValidateParams
from sclmd.data.contract import ContractResult, run_contract
from sclmd.errors import SclmdError
from sclmd.io import atomic_file, write_json, write_text

PREPARED = Path("data/prepared")
REPORT = Path("reports/data_contract.json")
SUMMARY = Path("reports/data_contract.md")
FIGURE = Path("reports/data_contract.png")
PARAM_SECTIONS = ("data", "validate")
ARTIFACTS = (REPORT, SUMMARY, FIGURE)


class ContractFailed(SclmdError):
    """The prepared data broke its contract; the message is the readable summary."""


def plot_contract(result: ContractResult, frame_counts: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(12, max(4, 0.28 * len(result.checks))), gridspec_kw={"width_ratios": [3, 2]}
    )
    labels = [f"{c['why']} [{c['column']}]" for c in result.checks]
    colours = ["#2e7d32" if c["success"] else "#c62828" for c in result.checks]
    counts = [max(c["unexpected_count"], 0.3) if not c["success"] else 1 for c in result.checks]
    ax1.barh(range(len(labels)), counts, color=colours)
    ax1.set_yticks(range(len(labels)), labels, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("failing rows (red) / passed (green)")
    ax1.set_title("PASSED" if result.success else f"FAILED: {len(result.failures)} expectation(s)")
    splits = list(frame_counts)
    women = [frame_counts[s].get("f", 0) for s in splits]
    men = [frame_counts[s].get("m", 0) for s in splits]
    unknown = [frame_counts[s].get("?", 0) for s in splits]
    ax2.bar(splits, women, label="women", color="#ad1457")
    ax2.bar(splits, men, bottom=women, label="men", color="#1565c0")
    ax2.bar(splits, unknown, bottom=[w + m for w, m in zip(women, men)], label="unknown", color="#9e9e9e")
    ax2.set_ylabel("clips")
    ax2.set_title("clips per split and gender")
    ax2.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def shown(path: Path) -> Path:
    """`path` relative to the working folder when inside it: reports stay the same across clones."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def check(prepared: Path, data: DataParams, params: ValidateParams, report: Path | None = None) -> ContractResult:
    """Run the contract on any prepared folder; write the JSON report if asked."""
    prepared = Path(prepared)
    try:
        result = run_contract(prepared, data, params)
    except SclmdError as e:
        if report is not None:
            write_json(report, {"prepared": str(shown(prepared)), "success": False, "error": str(e)})
        raise
    if report is not None:
        write_json(report, result.to_dict(shown(prepared)))
    return result


def run(params: Params, root: Path) -> dict:
    from sclmd.data.store import read_manifest

    result = check(root / PREPARED, params.data, params.validate_, root / REPORT)
    write_text(root / SUMMARY, result.summary(PREPARED) + "\n")
    manifest = read_manifest(root / PREPARED)
    gender = manifest["gender"].fillna("?") if "gender" in manifest else "?"
    counts = manifest.assign(g=gender).groupby(["split", "g"]).size()
    per_split = {
        s: {g: int(n) for (sp, g), n in counts.items() if sp == s} for s in manifest["split"].dropna().unique()
    }
    plot_contract(result, per_split, root / FIGURE)
    metrics = {
        "contract_passed": int(result.success),
        "expectations": len(result.checks),
        "failed_expectations": len(result.failures),
        "clips": result.n_rows,
    }
    if not result.success:
        raise ContractFailed(result.summary(PREPARED) + f"\nFull report: {REPORT}")
    return metrics
