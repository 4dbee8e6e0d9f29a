"""The data contract: a Great Expectations suite over a prepared folder.

GX checks a table, so what lives in files (is the shard there, inside the data
root, of the right shape and dtype, is the clip audible) is first measured into
columns of one row per clip; the suite then holds expectations on the manifest's
own columns and on those measured ones.  A failure names the expectation, the
column, how many rows, and the first clip ids with their offending values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sclmd.config import DataParams, ValidateParams
from sclmd.data.store import MANIFEST, SPLITS, read_manifest
from sclmd.io import is_inside

REQUIRED_COLUMNS = [
    "clip_id",
    "speaker_id",
    "split",
    "source",
    "audio_file",
    "audio_index",
    "face_file",
    "face_index",
    "sample_rate",
    "duration_s",
]
OPTIONAL_COLUMNS = ["gender", "age"]  # unknown for some sources (AVSpeech has no labels)
SUITE_NAME = "sclmd_data_contract"


def _shard_facts(prepared: Path, rel: str) -> dict:
    """What a shard file is: present, inside the root, its shape and dtype (read from the header only)."""
    path = prepared / rel
    facts = {"inside": is_inside(path, prepared), "exists": False, "rows": -1, "shape": "", "dtype": ""}
    if not facts["inside"]:
        return facts  # never open a file outside the data root
    try:
        arr = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return facts
    except (ValueError, OSError) as e:
        facts.update(exists=True, shape=f"unreadable: {e}")
        return facts
    facts.update(exists=True, rows=int(arr.shape[0]), shape="x".join(map(str, arr.shape[1:])), dtype=str(arr.dtype))
    return facts


def _rms_dbfs(prepared: Path, frame: pd.DataFrame, facts: dict[str, dict]) -> np.ndarray:
    """Loudness of every clip, shard by shard (sequential reads, bounded memory)."""
    out = np.full(len(frame), np.nan)
    for rel, group in frame.groupby("audio_file", sort=False):
        f = facts[rel]
        if not (f["inside"] and f["exists"] and f["dtype"] == "int16"):
            continue
        audio = np.load(prepared / rel, mmap_mode="r")
        idx = group["audio_index"].to_numpy()
        ok = (idx >= 0) & (idx < f["rows"])
        for pos, row in zip(group.index[ok], idx[ok]):
            x = audio[row].astype(np.float32) / 32768.0
            out[pos] = 10 * np.log10(np.mean(x * x) + 1e-12)
    return out


def measure(prepared: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus one measured column per file-level check."""
    frame = manifest.reset_index(drop=True).copy()
    for column in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    facts: dict[str, dict] = {}
    for column in ("audio_file", "face_file"):
        for rel in frame[column].dropna().unique():
            facts.setdefault(str(rel), _shard_facts(prepared, str(rel)))
    for kind in ("audio", "face"):
        rel = frame[f"{kind}_file"].astype(str)
        fact = rel.map(lambda r: facts.get(r, {"inside": False, "exists": False, "rows": -1, "shape": "", "dtype": ""}))
        index = pd.to_numeric(frame[f"{kind}_index"], errors="coerce")
        frame[f"{kind}_inside_root"] = fact.map(lambda f: f["inside"])
        frame[f"{kind}_file_exists"] = fact.map(lambda f: f["exists"])
        frame[f"{kind}_index_in_range"] = (index >= 0) & (index < fact.map(lambda f: f["rows"]))
        frame[f"{kind}_shape"] = fact.map(lambda f: f["shape"])
        frame[f"{kind}_dtype"] = fact.map(lambda f: f["dtype"])
    frame["audio_rms_dbfs"] = _rms_dbfs(prepared, frame, facts)
    frame["speaker_splits"] = frame.groupby("speaker_id")["split"].transform("nunique")
    is_female = frame["gender"].map({"f": 1.0, "m": 0.0})
    for split in SPLITS:
        frame[f"is_female_{split}"] = is_female.where(frame["split"] == split)
    return frame


@dataclass(frozen=True)
class ContractResult:
    success: bool
    n_rows: int
    checks: list[dict]

    @property
    def failures(self) -> list[dict]:
        return [c for c in self.checks if not c["success"]]

    def to_dict(self, prepared: Path) -> dict:
        return {
            "prepared": str(prepared),
            "success": self.success,
            "n_rows": self.n_rows,
            "n_expectations": len(self.checks),
            "n_failed": len(self.failures),
            "failures": self.failures,
            "checks": self.checks,
        }

    def summary(self, prepared: Path) -> str:
        head = f"data contract on {prepared / MANIFEST}: " + (
            f"PASSED ({len(self.checks)} expectations, {self.n_rows} clips)"
            if self.success
            else f"FAILED {len(self.failures)} of {len(self.checks)} expectations"
        )
        lines = [head]
        for c in self.failures:
            lines.append(f"  x {c['expectation']} on '{c['column']}' ({c['why']}): {c['unexpected_count']} row(s)")
            if c.get("error"):
                lines.append(f"      could not evaluate: {c['error']}")
            for ex in c["examples"]:
                lines.append(f"      clip {ex['clip_id']!s}: {ex['value']!r}")
        if not self.success:
            lines.append("Fix the inputs (or re-run `sclmd stage prepare`) and validate again.")
        return "\n".join(lines)


def _expectations(data: DataParams, params: ValidateParams, frame: pd.DataFrame):
    import great_expectations as gx

    E = gx.expectations
    size = data.image_size
    checks: list[tuple[object, str]] = [
        *[(E.ExpectColumnValuesToNotBeNull(column=c), "required column") for c in REQUIRED_COLUMNS],
        (E.ExpectColumnValuesToBeUnique(column="clip_id"), "clip ids are unique"),
        (E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)), "known split names"),
        (E.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)), "every split present"),
        (E.ExpectColumnValuesToBeInSet(column="speaker_splits", value_set=[1]), "each speaker in exactly one split"),
        (E.ExpectColumnValuesToBeInSet(column="gender", value_set=["f", "m"]), "gender labels are f/m (or unknown)"),
        (E.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120), "plausible ages"),
        *[
            (E.ExpectColumnValuesToBeInSet(column=f"{k}_{what}", value_set=[True]), why.format(k=k))
            for k in ("audio", "face")
            for what, why in (
                ("inside_root", "{k} path inside the data root"),
                ("file_exists", "{k} file present"),
                ("index_in_range", "{k} index within its shard"),
            )
        ],
        (
            E.ExpectColumnValuesToBeInSet(column="audio_shape", value_set=[str(data.clip_samples)]),
            "clip length in samples",
        ),
        (E.ExpectColumnValuesToBeInSet(column="audio_dtype", value_set=["int16"]), "audio dtype"),
        (E.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[data.sample_rate]), "sample rate"),
        (E.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, strict_min=True), "source duration > 0"),
        (E.ExpectColumnValuesToBeInSet(column="face_shape", value_set=[f"{size}x{size}x3"]), "face image shape"),
        (E.ExpectColumnValuesToBeInSet(column="face_dtype", value_set=["uint8"]), "face dtype"),
        (E.ExpectColumnValuesToBeBetween(column="audio_rms_dbfs", min_value=params.min_rms_dbfs), "audible clips"),
    ]
    tol = params.gender_balance_tolerance
    for split in SPLITS:
        if frame[f"is_female_{split}"].notna().sum() == 0:
            continue  # no gender labels in this split (e.g. AVSpeech): nothing to balance
        checks.append(
            (
                E.ExpectColumnMeanToBeBetween(column=f"is_female_{split}", min_value=0.5 - tol, max_value=0.5 + tol),
                f"gender balance in {split} (share of women)",
            )
        )
    return checks


def _examples(frame: pd.DataFrame, column: str, result: dict, limit: int = 5) -> list[dict]:
    index = result.get("unexpected_index_list") or []
    rows = []
    for item in index[:limit]:
        pos = item.get("index") if isinstance(item, dict) else item
        if pos is None or pos not in frame.index:
            continue
        value = frame.at[pos, column] if column in frame.columns else None
        rows.append({"clip_id": frame.at[pos, "clip_id"], "value": None if pd.isna(value) else value})
    if not rows and result.get("observed_value") is not None:
        rows.append({"clip_id": "(whole column)", "value": result["observed_value"]})
    return rows


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    return x


def _exception_message(info: dict | None) -> str | None:
    """GX nests exception info per metric when a metric could not be computed."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def run_contract(prepared: Path, data: DataParams, params: ValidateParams) -> ContractResult:
    """Measure, then validate with Great Expectations.  Raises SclmdError if no manifest."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    prepared = Path(prepared).resolve()
    frame = measure(prepared, read_manifest(prepared))
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for number, (expectation, why) in enumerate(_expectations(data, params, frame)):
        expectation.meta = {"why": why, "number": number}
        suite.add_expectation(expectation)
    batch = (
        context.data_sources.add_pandas("prepared")
        .add_dataframe_asset(name="manifest")
        .add_batch_definition_whole_dataframe("all_rows")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    checks = []
    for item in sorted(outcome.results, key=lambda r: r.expectation_config.meta["number"]):
        config = item.expectation_config
        column = config.kwargs.get("column")
        result = item.result or {}
        failed = not item.success
        checks.append(
            {
                "expectation": config.type,
                "column": column,
                "why": config.meta["why"],
                "success": bool(item.success),
                "unexpected_count": int(result.get("unexpected_count") or (1 if failed else 0)),
                "examples": [{k: _jsonable(v) for k, v in e.items()} for e in _examples(frame, column, result)]
                if failed
                else [],
                "error": _exception_message(item.exception_info) if failed else None,
            }
        )
    return ContractResult(all(c["success"] for c in checks), len(frame), checks)
