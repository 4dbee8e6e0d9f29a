"""The perceptual user study (paper Figure 4): an offline page, an answer key, and the tally.

`build_study` draws clips, shuffles and anonymises one image per method beside the true
face, and returns a self-contained HTML page (images inline as data: URIs, no scripts
or styles from anywhere else, so it works from a file:// URL) plus the answer key, which
is written apart from the page.  An evaluator picks, per clip, the best image for
realism and for identity match and saves the answers as a JSON file from the page.

`tally` turns any number of answer files into the mean and standard deviation, over
evaluators, of the share of clips on which each method was picked.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sclmd.errors import SclmdError

CRITERIA = ("realism", "identity")
QUESTIONS = {
    "realism": "Which image looks most like a real photo of a face?",
    "identity": "Which image looks most like the same person as the true face?",
}
ANSWERS_FORMAT = "sclmd-user-study-answers/1"
KEY_FORMAT = "sclmd-user-study-key/1"


def _png_uri(pixels: np.ndarray, scale: int = 2) -> str:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def study_id(key_items: list[dict]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(key_items, sort_keys=True).encode()).hexdigest()[:16]


def build_study(
    faces: dict[str, np.ndarray], clip_ids, methods: list[str], n_clips: int, seed: int
) -> tuple[str, dict]:
    """(page HTML, answer key) for `n_clips` clips drawn from `clip_ids` (capped by what there is).

    `faces` holds uint8 [N, H, W, 3] arrays: "true" and one per method, row-aligned with clip_ids.
    """
    rng = np.random.default_rng(seed)
    clip_ids = np.asarray(clip_ids).astype(str)
    missing = [m for m in ["true", *methods] if m not in faces]
    if missing:
        raise SclmdError(f"the evaluated faces lack {', '.join(missing)}: re-run `sclmd stage evaluate`.")
    chosen = np.sort(rng.choice(len(clip_ids), size=min(n_clips, len(clip_ids)), replace=False))
    letters = [chr(ord("A") + i) for i in range(len(methods))]
    items, blocks = [], []
    for number, row in enumerate(chosen, start=1):
        order = rng.permutation(len(methods))
        options = {letters[i]: methods[j] for i, j in enumerate(order)}
        items.append({"item": number, "clip_id": clip_ids[row], "options": options})
        cells = "".join(
            f'<figure><img src="{_png_uri(faces[options[letter]][row])}" alt="option {letter}">'
            f"<figcaption>{letter}</figcaption></figure>"
            for letter in letters
        )
        questions = "".join(
            f"<fieldset><legend>{html.escape(QUESTIONS[c])}</legend>"
            + "".join(
                f'<label><input type="radio" name="q{number}-{c}" value="{letter}"> {letter}</label>'
                for letter in letters
            )
            + "</fieldset>"
            for c in CRITERIA
        )
        blocks.append(
            f'<section class="item" id="item{number}"><h2>Clip {number} of {len(chosen)}</h2>'
            f'<div class="row"><figure class="true"><img src="{_png_uri(faces["true"][row])}" alt="true face">'
            f"<figcaption>true face</figcaption></figure>{cells}</div>{questions}</section>"
        )
    key = {"format": KEY_FORMAT, "methods": list(methods), "criteria": list(CRITERIA), "items": items}
    key["study_id"] = study_id(items)
    page = PAGE.format(
        study_id=key["study_id"],
        n_items=len(items),
        items="\n".join(blocks),
        criteria=json.dumps(list(CRITERIA)),
        answers_format=ANSWERS_FORMAT,
    )
    return page, key


# The page: plain HTML, inline CSS and JS, nothing fetched.  Saving uses a Blob download,
# which browsers allow from file:// URLs.
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sclmd user study {study_id}</title>
<style>
body {{ font-family: sans-serif; max-width: 980px; margin: 2em auto; color: #222; }}
.item {{ border-top: 1px solid #ccc; padding: 1em 0; }}
.row {{ display: flex; gap: 12px; align-items: flex-end; }}
figure {{ margin: 0; text-align: center; }}
figure.true img {{ outline: 3px solid #2e7d32; }}
img {{ width: 128px; height: 128px; image-rendering: pixelated; }}
fieldset {{ margin-top: .6em; border: 1px solid #ddd; }}
label {{ margin-right: 1.2em; }}
#status {{ font-weight: bold; }}
</style></head>
<body>
<h1>Which generated face is best?</h1>
<p>For each of the {n_items} clips below, the green-framed image is the speaker's true face; the others were
generated from the speaker's voice by different methods, in random order. For each clip, pick the best image
for each question. When done, enter your name or an ID and press <em>Save answers</em>; send the downloaded
file back. Nothing leaves this page otherwise.</p>
<p><label>Evaluator: <input id="evaluator" type="text" placeholder="name or ID"></label></p>
{items}
<p><button id="save" type="button">Save answers</button> <span id="status"></span></p>
<script>
(function () {{
  var criteria = {criteria};
  document.getElementById("save").addEventListener("click", function () {{
    var evaluator = document.getElementById("evaluator").value.trim();
    var answers = [], missing = 0;
    for (var n = 1; n <= {n_items}; n++) {{
      var entry = {{item: n}};
      criteria.forEach(function (c) {{
        var picked = document.querySelector('input[name="q' + n + '-' + c + '"]:checked');
        entry[c] = picked ? picked.value : null;
        if (!picked) missing++;
      }});
      answers.push(entry);
    }}
    var status = document.getElementById("status");
    if (!evaluator) {{ status.textContent = "Please enter your name or ID first."; return; }}
    var payload = {{format: "{answers_format}", study_id: "{study_id}", evaluator: evaluator,
                   saved: new Date().toISOString(), answers: answers}};
    var blob = new Blob([JSON.stringify(payload, null, 2)], {{type: "application/json"}});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "answers-" + evaluator.replace(/[^A-Za-z0-9_-]+/g, "_") + ".json";
    document.body.appendChild(link); link.click(); link.remove();
    status.textContent = "Saved" + (missing ? " (" + missing + " questions unanswered)" : "") + ".";
  }});
}})();
</script>
</body></html>
"""


# --- tally -------------------------------------------------------------------------------------


@dataclass
class Tally:
    methods: list[str]
    evaluators: list[str]
    # criterion -> method -> (mean, std) over evaluators of the share of answered clips picking it
    preference: dict[str, dict[str, tuple[float, float]]]
    answered: dict[str, int]  # criterion -> answers counted over all evaluators

    def to_dict(self) -> dict:
        return {
            "methods": self.methods,
            "evaluators": self.evaluators,
            "answered": self.answered,
            "preference": {
                c: {m: {"mean": v[0], "std": v[1]} for m, v in per.items()} for c, per in self.preference.items()
            },
        }

    def table(self) -> str:
        head = "| method | " + " | ".join(f"{c} (mean ± std)" for c in CRITERIA) + " |"
        rows = [
            f"| {m} | "
            + " | ".join(
                f"{100 * self.preference[c][m][0]:.1f}% ± {100 * self.preference[c][m][1]:.1f}" for c in CRITERIA
            )
            + " |"
            for m in self.methods
        ]
        return "\n".join([head, "|---|" + "---|" * len(CRITERIA), *rows])


def read_key(path: Path) -> dict:
    try:
        key = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SclmdError(
            f"{path}: no answer key. Run `sclmd stage user_study` (it writes "
            "reports/user_study/answer_key.json) or pass --key."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SclmdError(f"{path}: not a JSON answer key ({e}).") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT or "items" not in key:
        raise SclmdError(f"{path}: not an sclmd user-study answer key (expected format '{KEY_FORMAT}').")
    return key


def _read_answers(path: Path, key: dict) -> tuple[str, list[dict]]:
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise SclmdError(f"{path}: no such answers file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SclmdError(
            f"{path}: not valid JSON ({e}). Answers files are what the study page's 'Save answers' button downloads."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != ANSWERS_FORMAT:
        raise SclmdError(f"{path}: not an sclmd user-study answers file (expected format '{ANSWERS_FORMAT}').")
    if payload.get("study_id") != key["study_id"]:
        raise SclmdError(
            f"{path}: answers to another study ({payload.get('study_id')!r}); this key is study "
            f"{key['study_id']!r}. Tally each study with its own answer key (--key)."
        )
    answers = payload.get("answers")
    evaluator = payload.get("evaluator")
    if not isinstance(answers, list) or not isinstance(evaluator, str) or not evaluator.strip():
        raise SclmdError(f"{path}: needs an 'evaluator' name and an 'answers' list.")
    n_items = len(key["items"])
    letters = set(key["items"][0]["options"]) if key["items"] else set()
    seen = set()
    for position, entry in enumerate(answers, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), int) or not 1 <= entry["item"] <= n_items:
            raise SclmdError(
                f"{path}: answer {position}: 'item' must be a clip number 1..{n_items}, got "
                f"{entry.get('item') if isinstance(entry, dict) else entry!r}."
            )
        if entry["item"] in seen:
            raise SclmdError(f"{path}: answer {position}: clip {entry['item']} is answered twice.")
        seen.add(entry["item"])
        for criterion in CRITERIA:
            choice = entry.get(criterion)
            if choice is not None and choice not in letters:
                raise SclmdError(
                    f"{path}: answer {position} (clip {entry['item']}): {criterion} must be one of "
                    f"{', '.join(sorted(letters))} or null, got {choice!r}."
                )
    return evaluator.strip(), answers


def tally(answer_files: list[Path], key: dict) -> Tally:
    """Mean and std over evaluators of each method's share of the answered clips, per criterion."""
    if not answer_files:
        raise SclmdError("no answers files given: pass the JSON files the study page saved.")
    methods = list(key["methods"])
    options = {item["item"]: item["options"] for item in key["items"]}
    shares: dict[str, dict[str, list[float]]] = {c: {m: [] for m in methods} for c in CRITERIA}
    answered = {c: 0 for c in CRITERIA}
    evaluators = []
    for path in answer_files:
        evaluator, answers = _read_answers(Path(path), key)
        evaluators.append(evaluator)
        for criterion in CRITERIA:
            picks = [options[a["item"]][a[criterion]] for a in answers if a.get(criterion) is not None]
            answered[criterion] += len(picks)
            for method in methods:
                shares[criterion][method].append(picks.count(method) / len(picks) if picks else math.nan)
    preference = {
        c: {
            m: (
                float(np.nanmean(v)) if not np.all(np.isnan(v)) else math.nan,
                float(np.nanstd(v)) if not np.all(np.isnan(v)) else math.nan,
            )
            for m, v in per.items()
        }
        for c, per in shares.items()
    }
    return Tally(methods, evaluators, preference, answered)


def plot_tally(result: Tally, path: Path, names: dict[str, str] | None = None) -> Path:
    """Bars of mean preference with std whiskers, one group per criterion (paper Figure 4)."""
    from matplotlib.figure import Figure

    from sclmd.evaluate.plots import ROW_COLOURS, _save

    names = names or {}
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(result.methods))
    for i, method in enumerate(result.methods):
        means = [100 * result.preference[c][method][0] for c in CRITERIA]
        stds = [100 * result.preference[c][method][1] for c in CRITERIA]
        ax.bar(
            np.arange(len(CRITERIA)) + i * width,
            means,
            width,
            yerr=stds,
            capsize=4,
            color=ROW_COLOURS[i % len(ROW_COLOURS)],
            label=names.get(method, method),
        )
    ax.set_xticks(np.arange(len(CRITERIA)) + width * (len(result.methods) - 1) / 2, list(CRITERIA))
    ax.set_ylabel("preferred, % of clips (mean ± std over evaluators)")
    ax.set_title(f"user study: {len(result.evaluators)} evaluator(s)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
