"""The documentation site: generated reference pages that miss nothing, a strict offline build, and
internal links that resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The docs built as `make docs` builds them, in a copy of the repository's docs (the checkout stays as it is)."""
    root = tmp_path_factory.mktemp("docs") / "project"
    root.mkdir()
    generated = {"cli.md", "params.md", "results"}  # what the generator writes: made afresh below
    for rel in ("docs", "reports", "benchmarks/results", "weights"):
        if (REPO / rel).exists():
            shutil.copytree(
                REPO / rel,
                root / rel,
                ignore=lambda folder, names: [n for n in names if n in generated and "docs" in folder],
            )
    for rel in ("mkdocs.yml", "params.yaml", "README.md"):
        shutil.copy2(REPO / rel, root / rel)
    (root / "sclmd").symlink_to(REPO / "sclmd")  # mkdocstrings reads the package's source
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    generated = subprocess.run(
        [sys.executable, "-m", "sclmd.docs"], cwd=root, capture_output=True, text=True, env=env, timeout=300
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    built = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict"], cwd=root, capture_output=True, text=True, env=env, timeout=600
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return root / "site"


def test_every_command_option_and_params_key_has_a_description():
    from sclmd.docs import cli_reference, params_reference

    cli, missing_cli = cli_reference()
    params, missing_params = params_reference(REPO / "params.yaml")
    assert missing_cli == [] and missing_params == [], (missing_cli, missing_params)
    for command in ("sclmd release", "sclmd generate", "sclmd infra up", "sclmd user-study tally"):
        assert f"## `{command}`" in cli
    for key in ("pretrain.face_init", "first_stage.max_steps", "ldm.guidance", "prepare.split.train"):
        assert f"| `{key}` |" in params


def test_a_new_key_without_a_description_is_reported(tmp_path):
    from sclmd.docs import params_reference

    text = (
        (REPO / "params.yaml")
        .read_text()
        .replace("  seed: 0           # the data set's seed: same seed, byte-identical files", "  seed: 0")
    )
    (tmp_path / "params.yaml").write_text(text)
    _, missing = params_reference(tmp_path / "params.yaml")
    assert missing == ["synth.seed"]


def test_the_site_builds_offline_and_its_links_resolve(site):
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html").is_file() and (site / "reference/cli/index.html").is_file()
    assert (site / "reference/api/index.html").read_text().count("SpeechToFacePipeline") > 2  # mkdocstrings ran
    broken = []
    for page in (p for p in pages if p.name != "404.html"):  # 404.html's links are absolute by design
        html = page.read_text()
        # nothing fetched from elsewhere: no fonts or scripts from a CDN
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html), page
        for href in re.findall(r'(?:href|src)="([^"#?]+)', html):
            url = urlparse(href)
            if url.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue
            target = (page.parent / href).resolve()
            if href.endswith("/"):
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {href}")
    assert broken == []


def test_the_readme_is_short_and_its_results_come_from_the_reports(tmp_path):
    from sclmd.docs import README_END, README_START, results_glance

    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert block == results_glance(REPO).strip()  # `python -m sclmd.docs` wrote it; nothing typed by hand
    assert "make run" in readme and "make test" in readme and "make docs" in readme


def test_the_glance_reads_the_release_report_targets_included(tmp_path):
    """The README's rows for the release model come from reports/release/metrics.json, its targets counted."""
    import json

    from sclmd.docs import results_glance

    (tmp_path / "reports/release").mkdir(parents=True)
    metrics = {
        "scldm": {"two_sample_acc": 0.8, "gender_acc": 0.9, "retrieval_r1": 0.125, "retrieval_r1_ci": [0.05, 0.2]},
        "targets": {"c2st": {"value": 0.8, "met": False}, "real_voices": {"value": 0.95, "met": True}},
    }
    (tmp_path / "reports/release/metrics.json").write_text(json.dumps(metrics))
    glance = results_glance(tmp_path)
    assert "| release SCLDM: C2ST of its faces, test | 0.800 |" in glance
    assert "speaker retrieval R@1, test | 0.125 [0.050, 0.200]" in glance
    assert "real voices | 0.95 |" in glance and "| release targets met | 1 of 2 |" in glance
    # with VoxSynth's attribute oracle: its row, and the targets it shows out of reach counted apart
    metrics["references"] = {"attribute_oracle": {"retrieval_r1": 0.006, "retrieval_r1_ci": [0.0, 0.019], "cos": 58.6}}
    metrics["targets"]["retrieval_r1"] = {"value": 0.125, "met": False, "reachable": False}
    (tmp_path / "reports/release/metrics.json").write_text(json.dumps(metrics))
    glance = results_glance(tmp_path)
    assert "R@1 / single-sample cos, test | 0.006 [0.000, 0.019] / 58.6 |" in glance
    assert "| release targets met | 1 of 3; 1 out of reach on this data (oracle) |" in glance
