"""The documentation site's generated pages: nothing measured is typed by hand.

    python -m sclmd.docs            # what `make docs` runs before `mkdocs build --strict`

- `docs/reference/cli.md`: every `sclmd` command and option, from the Typer app itself;
- `docs/reference/params.md`: every params.yaml key, its default (from the typed config) and its
  meaning (params.yaml's comment on the key, else the one above it);
- `docs/results/*.md`: the committed reports (reports/release, eval, talker, ablations) and
  benchmarks/results rendered as pages, their PNGs copied beside them, each page saying which
  machine and commit measured it;
- the README's results table between its `<!-- results:start -->` / `<!-- results:end -->` markers.

A command, option or params key without a description is an error listing them (tests/test_docs.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DOCS = Path("docs")
GENERATED = ("reference/cli.md", "reference/params.md", "results")
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


# --- the CLI --------------------------------------------------------------------------------------------------


def _commands(group, prefix: str = "sclmd"):
    """(full name, click command) for every leaf command, depth first."""
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        if getattr(command, "commands", None):  # a group (Typer vendors its own click: no isinstance)
            yield from _commands(command, full)
        else:
            yield full, command


def cli_reference() -> tuple[str, list[str]]:
    """(markdown, what lacks a description)."""
    from typer.main import get_command

    from sclmd.cli import app

    missing: list[str] = []
    lines = [
        "# Command reference",
        "",
        "Generated from the `sclmd` command itself (`python -m sclmd.docs`); `sclmd COMMAND --help` prints the same.",
        "",
    ]
    for full, command in _commands(get_command(app)):
        doc = (command.help or "").strip()
        if not doc:
            missing.append(full)
        lines += [f"## `{full}`", "", doc.split("\n\n")[0].replace("\n", " "), ""]
        rest = doc.split("\n\n")[1:]
        if rest:
            lines += [" ".join(r.split()) for r in rest] + [""]
        rows = []
        for param in command.params:
            if param.name == "help":
                continue
            help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
            if not help_text:
                missing.append(f"{full} {'/'.join(param.opts)}")
            if param.param_type_name == "argument":
                name = param.name.upper() + ("..." if param.nargs == -1 else "")
                default = "required" if param.required else ""
            else:
                name = " / ".join(o for o in (*param.opts, *param.secondary_opts))
                default = "" if param.default is None or callable(param.default) else f"`{param.default}`"
            rows.append(f"| `{name}` | {default} | {help_text} |")
        if rows:
            lines += ["| argument / option | default | meaning |", "|---|---|---|", *rows, ""]
    return "\n".join(lines), missing


# --- params.yaml ----------------------------------------------------------------------------------------------


@dataclass
class ParamDoc:
    key: str  # dotted
    default: object
    meaning: str


def _yaml_comments(path: Path) -> dict[str, str]:
    """dotted key -> its comment in params.yaml: inline after the value, else the comment lines just above."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            above = []
            continue
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z_0-9]+):(.*)$", line)
        if not match:
            above = []
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        value, _, inline = rest.partition("#")
        text = inline.strip() or " ".join(above)
        if text:
            comments[dotted] = text
            if value.strip().startswith("{"):  # an inline mapping: its keys share the comment
                for child in re.findall(r"([A-Za-z_0-9]+)\s*:", value):
                    comments[f"{dotted}.{child}"] = f"{child} (of {key}): {text}"
        if not value.strip():
            stack.append((indent, key))
        above = []
    return comments


def params_docs(path: Path = Path("params.yaml")) -> list[ParamDoc]:
    """Every key of the typed config (sections, nested sections and leaves) with default and meaning."""
    from pydantic import BaseModel

    from sclmd.config import Params

    comments = _yaml_comments(path) if path.is_file() else {}
    out: list[ParamDoc] = []

    def walk(model: type[BaseModel], instance: BaseModel, prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = field.alias or name
            dotted = f"{prefix}{key}"
            value = getattr(instance, name)
            meaning = comments.get(dotted) or (field.description or "")
            if isinstance(value, BaseModel):
                doc = (type(value).__doc__ or "").strip().split("\n")[0]
                out.append(ParamDoc(dotted, None, meaning or doc))
                walk(type(value), value, dotted + ".")
            else:
                out.append(ParamDoc(dotted, value, meaning))

    walk(Params, Params(), "")
    return out


def params_reference(path: Path = Path("params.yaml")) -> tuple[str, list[str]]:
    docs = params_docs(path)
    missing = [d.key for d in docs if not d.meaning]
    lines = [
        "# params.yaml reference",
        "",
        "Every key, its default (the typed config, `sclmd/config.py`) and what it does (params.yaml's "
        "comment). Each stage reads only its own section plus `data`; a misspelled key is an error "
        "listing the valid ones. `sclmd check-params` prints the resolved values.",
        "",
    ]
    section = None
    for d in docs:
        top = d.key.split(".")[0]
        if top != section:
            section = top
            lines += [
                f"## `{top}`",
                "",
                next((x.meaning for x in docs if x.key == top), ""),
                "",
                "| key | default | meaning |",
                "|---|---|---|",
            ]
            continue
        default = (
            ""
            if d.default is None and "." in d.key and any(x.key.startswith(d.key + ".") for x in docs)
            else f"`{json.dumps(d.default, default=str)}`"
        )
        meaning = d.meaning.replace("|", "\\|")
        lines.append(f"| `{d.key}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n", missing


# --- results --------------------------------------------------------------------------------------------------


def _last_commit(path: Path) -> str:
    out = subprocess.run(["git", "log", "-1", "--format=%h (%cs)", "--", str(path)], capture_output=True, text=True)
    return out.stdout.strip() or "uncommitted"


def _machine(folder: Path) -> str:
    """The machine a report says it was measured on (a `machine` in its metrics.json), or that it does not say."""
    metrics = folder / "metrics.json"
    if metrics.is_file():
        found = _find_key(json.loads(metrics.read_text()), "machine")
        if found:
            from sclmd.machine import line

            return line(found) if isinstance(found, dict) else str(found)
    return "not recorded in this report (see the report's text)"


def _find_key(payload, key: str):
    if isinstance(payload, dict):
        if key in payload:
            return payload[key]
        for value in payload.values():
            found = _find_key(value, key)
            if found:
                return found
    return None


def _page(out_dir: Path, name: str, title: str, source: Path, body: list[str]) -> None:
    machine = _machine(source.parent if source.is_file() else source)
    header = [
        f"# {title}",
        "",
        f"Rendered from `{source}`, last changed in commit {_last_commit(source)}; measured on: {machine}.",
        "",
    ]
    (out_dir / f"{name}.md").write_text("\n".join(header + body) + "\n")


def _report_page(out_dir: Path, name: str, title: str, folder: Path) -> bool:
    """A report folder (report.md + PNGs) as a page; False when the folder is not there."""
    report = folder / "report.md"
    if not report.is_file():
        return False
    images = out_dir / name
    images.mkdir(parents=True, exist_ok=True)
    body = report.read_text().splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    text = "\n".join(body)
    for png in sorted(folder.rglob("*.png")):
        if any((d / "report.md").is_file() for d in png.parents if d != folder and folder in d.parents):
            continue  # a sub-report (reports/release/talker/) has a page of its own
        shutil.copy2(png, images / png.name)
        text = text.replace(f"]({png.relative_to(folder).as_posix()})", f"]({name}/{png.name})")
    shown = set(re.findall(rf"\]\({name}/([^)]+)\)", text))
    extra = [f"![{p.stem}]({name}/{p.name})" for p in sorted(images.iterdir()) if p.name not in shown]
    _page(out_dir, name, title, report, [text, "", *extra])
    return True


def results_pages(root: Path, out_dir: Path) -> list[tuple[str, str]]:
    """(file, title) of every results page written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title, folder in (
        ("release", "The release model", root / "reports/release"),
        ("first-stage", "The first stage (face autoencoder)", root / "weights/face-autoencoder"),
        ("eval", "The quick run's evaluation (make run)", root / "reports/eval"),
        ("ablations", "Ablations and the prior-weight sweep", root / "reports/ablations"),
        ("release-talker", "The release talker", root / "reports/release/talker"),
        ("talker", "The quick talker (make talker)", root / "reports/talker"),
        ("talker-ablations", "The talker's variants (val)", root / "reports/talker_ablations"),
    ):
        if name == "first-stage" and (folder / "README.md").is_file():
            images = out_dir / name
            images.mkdir(parents=True, exist_ok=True)
            text = (folder / "README.md").read_text().split("\n", 1)[1]
            for png in sorted(folder.glob("*.png")):
                shutil.copy2(png, images / png.name)
                text = text.replace(f"]({png.name})", f"]({name}/{png.name})")
            _page(out_dir, name, title, folder / "README.md", [text])
            written.append((f"{name}.md", title))
        elif _report_page(out_dir, name, title, folder):
            written.append((f"{name}.md", title))
    bench = root / "benchmarks/results"
    body = []
    for md in sorted(bench.glob("*.md")):
        lines = md.read_text().splitlines()
        body += ["## " + (lines[0].lstrip("# ") if lines else md.stem), "", *lines[1:], ""]
    if body:
        _page(out_dir, "benchmarks", "Benchmarks", bench, body)
        written.append(("benchmarks.md", "Benchmarks"))
    index = [
        "# Results",
        "",
        "Every page here is rendered from a committed report or benchmark result by "
        "`python -m sclmd.docs`; no number is typed by hand. A report that this checkout has not produced "
        "yet (`reports/eval/` is made by `make run`) has no page.",
        "",
    ]
    index += [f"- [{title}]({file})" for file, title in written]
    (out_dir / "index.md").write_text("\n".join(index) + "\n")
    return written


# --- README ---------------------------------------------------------------------------------------------------


def _ci(value: float, ci) -> str:
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and len(ci) == 2 else "")


def results_glance(root: Path) -> str:
    """The README's small results table, from the committed reports (each row names its source and commit)."""
    rows = ["| what | measured | from |", "|---|---|---|"]

    def source(path: Path, label: str) -> str:
        return f"[{label}]({path.relative_to(root).as_posix()}), {_last_commit(path)}"

    card = root / "weights/face-autoencoder/config.json"
    if card.is_file():
        m = json.loads(card.read_text())["metrics"]
        t = m["test"]
        where = source(root / "weights/face-autoencoder/README.md", "model card")
        rows.append(
            f"| first stage: reconstructions told from real faces (C2ST; 0.5 = never, 1 = always), test | "
            f"{_ci(t['c2st'], t['c2st_ci'])} after {m['train_hours']:.1f} h | {where} |"
        )
    release = root / "reports/release/metrics.json"
    if release.is_file():
        release = json.loads(release.read_text())
        s = release["scldm"]
        where = source(root / "reports/release/report.md", "release report")
        rows.append(
            f"| release SCLDM: C2ST of its faces, test | {_ci(s['two_sample_acc'], s.get('two_sample_acc_ci'))} "
            f"| {where} |"
        )
        rows.append(
            f"| release SCLDM: gender accuracy, test | {_ci(s['gender_acc'], s.get('gender_acc_ci'))} | {where} |"
        )
        oracle = (release.get("references") or {}).get("attribute_oracle")
        if "retrieval_r1" in s:
            rows.append(
                f"| release SCLDM: speaker retrieval R@1, test | {_ci(s['retrieval_r1'], s.get('retrieval_r1_ci'))} "
                f"| {where} |"
            )
        if oracle and "retrieval_r1" in oracle:
            rows.append(
                "| the attribute oracle (VoxSynth's ceiling: the voice's gender, age, size exact, the rest drawn): "
                f"R@1 / single-sample cos, test | {_ci(oracle['retrieval_r1'], oracle.get('retrieval_r1_ci'))} / "
                f"{oracle['cos']:.1f} | {where} |"
            )
        targets = release.get("targets") or {}
        voices = targets.get("real_voices", {}).get("value")
        if voices is not None:
            rows.append(f"| release SCLDM: gender agreement on the shipped real voices | {voices:.2f} | {where} |")
        if targets:
            met = sum(bool(t.get("met")) for t in targets.values())
            beyond = sum(t.get("reachable") is False and not t.get("met") for t in targets.values())
            said = f"{met} of {len(targets)}" + (f"; {beyond} out of reach on this data (oracle)" if beyond else "")
            rows.append(f"| release targets met | {said} | {where} |")
    ablations = root / "reports/ablations/metrics.json"
    if ablations.is_file():
        variants = json.loads(ablations.read_text())["variants"]
        where = source(root / "reports/ablations/report.md", "ablations")
        for name, label in (("full", "full"), ("scratch", "autoencoder trained in the run")):
            if name in variants:
                v = variants[name]["scldm"]
                rows.append(
                    f"| `make run`'s SCLDM ({label}): cos distance / gender accuracy, test | "
                    f"{v['cos']:.2f} / {v['gender_acc']:.3f} | {where} |"
                )
    release_talker = root / "reports/release/talker/metrics.json"
    if release_talker.is_file():
        from sclmd.release import talker_targets

        t = json.loads(release_talker.read_text())
        where = source(root / "reports/release/talker/report.md", "release talker report")
        rows += talker_rows(t, "release talker", where)
        targets = talker_targets(t)
        met = sum(v["met"] for v in targets.values())
        rows.append(f"| release talker targets met | {met} of {len(targets)} | {where} |")
    talker = root / "reports/talker/metrics.json"
    if talker.is_file():
        t = json.loads(talker.read_text())
        rows += talker_rows(t, "`make talker`", source(root / "reports/talker/report.md", "talker report"))
    return "\n".join(rows)


def talker_rows(t: dict, label: str, where: str) -> list[str]:
    """The glance rows of one evaluate_talker metrics.json: lip sync against the regression, realism, pose."""
    rows = []
    methods = t.get("methods", {})
    if "dae_photo" in methods:
        draws = methods["dae_photo"].get("draws", 1)
        codes = f", mean of {draws} noise codes" if draws > 1 else ""
        rows.append(f"| {label}: lip sync r, test{codes} | {methods['dae_photo']['lipsync']:.3f} | {where} |")
    diff = t.get("dae_minus_regression_lipsync")
    if diff:
        rows.append(
            f"| {label}: lip sync minus the regression's | {diff['diff']:+.3f} "
            f"[{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}] | {where} |"
        )
    if "dae_first_frame" in methods and "real_autoencoder" in methods:
        rows.append(
            f"| {label}: Fréchet of its frames to real frames (the clip's first frame animated) / of the "
            f"clip's frames through the first stage | {methods['dae_first_frame']['frechet']:.3f} / "
            f"{methods['real_autoencoder']['frechet']:.3f} | {where} |"
        )
    ratio = t.get("pose", {}).get("sampled_std_ratio")
    if ratio:
        rows.append(
            f"| {label}: the head's sampled yaw / roll spread over the true spread | "
            f"{ratio['yaw']:.2f} / {ratio['roll']:.2f} | {where} |"
        )
    return rows


def _find(payload, key: str):
    """The first number under `key` (depth first) in a metrics payload."""
    if isinstance(payload, dict):
        for k, v in payload.items():
            if k == key and isinstance(v, (int, float)):
                return float(v)
            found = _find(v, key)
            if found is not None:
                return found
    return None


def update_readme(root: Path) -> bool:
    readme = root / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{results_glance(root)}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new)
    return True


def generate(root: Path = Path(".")) -> list[str]:
    """Write every generated page; returns what lacks a description (commands, options, params keys)."""
    docs = root / DOCS
    (docs / "reference").mkdir(parents=True, exist_ok=True)
    cli, missing_cli = cli_reference()
    (docs / "reference/cli.md").write_text(cli + "\n")
    params, missing_params = params_reference(root / "params.yaml")
    (docs / "reference/params.md").write_text(params)
    if (docs / "results").exists():
        shutil.rmtree(docs / "results")
    results_pages(root, docs / "results")
    update_readme(root)
    return missing_cli + [f"params.yaml: {k}" for k in missing_params]


if __name__ == "__main__":
    import sys

    missing = generate()
    if missing:
        print("no description for:\n  " + "\n  ".join(missing), file=sys.stderr)
        sys.exit(1)
    print("docs: generated reference/cli.md, reference/params.md, results/")
