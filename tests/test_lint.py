"""ruff, configured in pyproject.toml, over the project's code: lint rules and the formatter's layout.

A failure prints ruff's own report (file, line, rule); `ruff check --fix` and `ruff format` mend most.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("sclmd", "flows", "tests", "benchmarks")


def ruff() -> list[str]:
    found = Path(sys.executable).with_name("ruff")
    if found.is_file():
        return [str(found)]
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.fail("ruff is not installed: `make install` puts it in .venv (it is in pyproject's dev extras)")
    return [on_path]


@pytest.mark.parametrize(
    "args",
    [["check", "--no-cache"], ["format", "--check", "--no-cache"]],
    ids=["lint", "format"],
)
def test_ruff_passes_on_the_project(args):
    result = subprocess.run(ruff() + args + list(CHECKED), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_ruff_is_configured_in_pyproject():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]
    assert config["line-length"] == 120
    assert set(config["lint"]["select"]) >= {"E", "F", "W", "I"}
