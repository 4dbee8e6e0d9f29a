"""Does a model carry a real speaker's gender to the face it draws?  A labelled voice folder, checked.

A voice folder holds audio files and `labels.csv` with columns `file` (a path relative to the
folder), `gender` (`f` or `m`) and, optionally, `age` (years); other columns are kept as they
are.  The project ships one (`real_voices/`, nine voices of real speakers; see its README), and
`sclmd check-voices DIR` runs the same check on any folder a user labels.

For each usable voice the model draws K faces; the run's judges read each face's gender and
age.  A voice's *agreement* is the share of its K faces judged the labelled gender;
`gender_agreement` is the mean over voices, with a 95% percentile bootstrap interval over
voices (the voices are the sample; a voice's faces are not independent of each other).

A voice that cannot be used (unreadable, silent, too short) is a counted skip.  A labels file
that is missing or malformed, an unknown gender, an age that is not a number, or a listed file
that does not exist is an error naming the row: those are mistakes in the folder, which a
person should fix rather than have quietly left out of a reported number.

These voices are for reporting and model selection, never for training.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sclmd.errors import ClipRejected, SclmdError

LABELS = "labels.csv"
GENDERS = ("f", "m")
SHIPPED = Path("real_voices")  # the project's own labelled real-voice folder
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class LabelledVoice:
    line: int  # line of labels.csv (the header is line 1)
    file: str  # as written in labels.csv
    path: Path
    gender: str  # "f" | "m"
    age: float | None


@dataclass
class Voices:
    """The usable voices of a folder, as waves ready for the speech encoder, and the skipped ones."""

    voices: list[LabelledVoice]
    waves: "object"  # torch.Tensor [N, samples], float32 in [-1, 1]
    skipped: list[tuple[LabelledVoice, str]] = field(default_factory=list)

    @property
    def genders(self) -> np.ndarray:
        return np.array([v.gender for v in self.voices])


def _labels_error(path: Path, what: str) -> SclmdError:
    return SclmdError(
        f"{path}: {what}. A voice folder needs {LABELS} with a header line and the columns "
        f"`file` (audio path relative to the folder), `gender` (f or m) and optionally `age` (years)."
    )


def read_labels(directory: Path) -> list[LabelledVoice]:
    """The rows of DIR/labels.csv, checked; SclmdError naming the line for anything a person must fix."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SclmdError(f"{directory}: no such folder. Pass a folder that holds the voices and {LABELS}.")
    path = directory / LABELS
    if not path.is_file():
        raise _labels_error(path, "not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as e:
        raise _labels_error(path, f"not a readable CSV file ({e})") from None
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise _labels_error(path, "empty")
    header = [cell.strip().lower() for cell in lines[0]]
    missing = [c for c in ("file", "gender") if c not in header]
    if missing:
        raise _labels_error(
            path, f"no column {' or '.join(repr(c) for c in missing)} in its header ({', '.join(header)})"
        )
    col = {name: header.index(name) for name in ("file", "gender", "age") if name in header}
    root = directory.resolve()
    voices: list[LabelledVoice] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        where = f"{path} line {number}"
        if len(cells) != len(header):
            raise SclmdError(
                f"{where}: {len(cells)} fields, but the header has {len(header)}. Quote a value that contains a comma."
            )
        file = cells[col["file"]].strip()
        if not file:
            raise SclmdError(f"{where}: the `file` column is empty.")
        target = (directory / file).resolve()
        if not target.is_relative_to(root):
            raise SclmdError(f"{where}: file '{file}' is outside {directory}. List files relative to the folder.")
        if not target.is_file():
            raise SclmdError(f"{where}: file '{file}' does not exist in {directory}. Fix the name or remove the row.")
        if str(target) in seen:
            raise SclmdError(f"{where}: file '{file}' is listed twice (also on line {seen[str(target)]}).")
        seen[str(target)] = number
        gender = cells[col["gender"]].strip().lower()
        if gender not in GENDERS:
            raise SclmdError(f"{where}: gender '{cells[col['gender']].strip()}' for '{file}' is not f or m.")
        age = None
        if "age" in col and cells[col["age"]].strip():
            raw = cells[col["age"]].strip()
            try:
                age = float(raw)
            except ValueError:
                age = float("nan")
            if not math.isfinite(age) or not 0 <= age <= 120:
                raise SclmdError(
                    f"{where}: age '{raw}' for '{file}' is not a number of years (0-120). "
                    "Leave it empty when it is not known."
                )
        voices.append(LabelledVoice(number, file, target, gender, age))
    if not voices:
        raise _labels_error(path, "no voices listed under the header")
    return voices


def load_voices(directory: Path, sample_rate: int, clip_seconds: float) -> Voices:
    """The folder's voices decoded exactly as `sclmd generate` decodes a file; unusable ones skipped."""
    import torch

    from sclmd.generate import load_wave

    usable, waves, skipped = [], [], []
    for voice in read_labels(directory):
        try:
            waves.append(torch.from_numpy(load_wave(voice.path, sample_rate, clip_seconds)))
            usable.append(voice)
        except ClipRejected as e:
            skipped.append((voice, e.reason))
    stacked = torch.stack(waves) if waves else torch.zeros(0, int(round(sample_rate * clip_seconds)))
    return Voices(usable, stacked, skipped)


def agreement_interval(agreement: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean agreement, voices resampled."""
    from sclmd.evaluate.bootstrap import ClusterBootstrap

    boot = ClusterBootstrap(np.arange(len(agreement)), resamples, seed)
    return boot.mean_ci(agreement)


def judge_voices(faces, voices: Voices, judges, *, seed: int = 0) -> dict:
    """Faces [N voices, K, 3, H, W] in [-1, 1] -> the check's result (JSON-ready)."""
    n, k = faces.shape[:2]
    if n != len(voices.voices):
        raise ValueError(f"{n} rows of faces for {len(voices.voices)} voices")
    rows: list[dict] = []
    agreement = np.zeros(0)
    if n:
        verdicts = judges(faces.reshape(n * k, *faces.shape[2:]))
        judged_male = (verdicts.male_probability > 0.5).reshape(n, k)
        judged_age = verdicts.age.reshape(n, k)
        is_male = voices.genders == "m"
        agreement = (judged_male == is_male[:, None]).mean(axis=1)
        for i, voice in enumerate(voices.voices):
            rows.append(
                {
                    "file": voice.file,
                    "gender": voice.gender,
                    "age": voice.age,
                    "share_judged_male": float(judged_male[i].mean()),
                    "mean_judged_age": float(judged_age[i].mean()),
                    "agreement": float(agreement[i]),
                }
            )
    aged = [(r["mean_judged_age"], r["age"]) for r in rows if r["age"] is not None]
    # No number is better than NaN in a JSON file (strict parsers reject NaN): None when undefined.
    interval = (
        [v if math.isfinite(v) else None for v in agreement_interval(agreement, seed=seed)] if n else [None, None]
    )
    return {
        "gender_agreement": float(agreement.mean()) if n else None,
        "gender_agreement_ci": interval,
        "n_voices": n,
        "n_skipped": len(voices.skipped),
        "samples_per_voice": int(k),
        "age_mae": float(np.mean([abs(a - b) for a, b in aged])) if aged else None,
        "voices": rows,
        "skipped": [{"file": v.file, "reason": reason} for v, reason in voices.skipped],
    }


def scldm_faces(pipeline, voices: Voices, samples: int, seed: int = 0):
    """K faces per voice from a SpeechToFacePipeline: [N, K, 3, H, W] (per-voice seeds: batch-independent)."""
    import torch

    out = []
    for i, voice in enumerate(voices.voices):  # a voice's seed is its labels line: skips elsewhere change nothing
        emb = pipeline.speech_embedding(voices.waves[i : i + 1])
        out.append(pipeline(emb, seed=seed + voice.line, samples=samples))
    if not out:
        size = int(pipeline.data.get("image_size", 64))
        return torch.zeros(0, samples, 3, size, size)
    return torch.stack(out)


def check_voices(
    directory: Path, pipeline, judges, samples: int = 8, seed: int = 0, faces_of: Callable | None = None
) -> tuple[dict, "object", Voices]:
    """(result, faces [N, K, 3, H, W], voices) for a voice folder and a trained pipeline."""
    if samples < 1:
        raise SclmdError(f"--samples must be 1 or more, got {samples}")
    voices = load_voices(directory, int(pipeline.data["sample_rate"]), float(pipeline.data["clip_seconds"]))
    faces = (faces_of or scldm_faces)(pipeline, voices, samples, seed)
    return judge_voices(faces, voices, judges, seed=seed), faces, voices


def format_table(result: dict) -> str:
    """The per-voice table and the summary, as plain text for a terminal."""
    rows = result["voices"]
    width = max([len("voice")] + [len(r["file"]) for r in rows])
    lines = [
        f"{'voice':<{width}}  label  age   judged male  judged age  agreement",
        f"{'-' * width}  -----  ----  -----------  ----------  ---------",
    ]
    for r in rows:
        age = "" if r["age"] is None else f"{r['age']:g}"
        lines.append(
            f"{r['file']:<{width}}  {r['gender']:^5}  {age:>4}  {r['share_judged_male']:>11.2f}  "
            f"{r['mean_judged_age']:>10.1f}  {r['agreement']:>9.2f}"
        )
    for s in result["skipped"]:
        lines.append(f"{s['file']:<{width}}  skipped: {s['reason']}")
    low, high = (f"{v:.3f}" if v is not None else "n/a" for v in result["gender_agreement_ci"])
    agreement = result["gender_agreement"]
    lines.append("")
    lines.append(
        f"gender_agreement {'n/a' if agreement is None else f'{agreement:.3f}'} (95% interval {low}-{high}) over "
        f"{result['n_voices']} voices, {result['samples_per_voice']} faces each"
        + (f"; {result['n_skipped']} skipped" if result["n_skipped"] else "")
    )
    return "\n".join(lines)
