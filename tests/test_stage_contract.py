"""The stage contract: every stage's dvc.yaml dependencies cover the project modules its code imports
(directly or through other modules, lazily inside functions included), so a change there re-runs the
stage instead of leaving a stale output that `dvc repro` calls up to date."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

# Modules that decide where and how a stage runs, not what it computes (errors, atomic writes,
# MLflow tags, process launching, the params loader whose values DVC tracks as params).
NOT_OUTPUTS = {
    "sclmd/__init__.py",
    "sclmd/errors.py",
    "sclmd/io.py",
    "sclmd/env.py",
    "sclmd/tracking.py",
    "sclmd/launch.py",
    "sclmd/orchestration.py",
    "sclmd/machine.py",
    "sclmd/config.py",
    "sclmd/stages/__init__.py",
}


def module_file(name: str) -> Path | None:
    for candidate in (REPO / (name.replace(".", "/") + ".py"), REPO / name.replace(".", "/") / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sclmd")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.startswith("sclmd"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
    return found


def closure(module: str) -> set[str]:
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += sorted(imported_modules(path))
    return {p.relative_to(REPO).as_posix() for p in seen}


def uncovered(stage: dict) -> list[str]:
    deps = [str(d) for d in stage.get("deps", [])]
    module = "sclmd.stages." + stage["cmd"].split()[-1]
    return sorted(
        f for f in closure(module) - NOT_OUTPUTS if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    )


def test_every_stage_depends_on_the_code_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = {name: uncovered(stage) for name, stage in stages.items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_a_dropped_dependency_is_caught():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    ldm = dict(stages["train_ldm"])
    ldm["deps"] = [d for d in ldm["deps"] if d != "sclmd/train/pretrain.py"]
    assert "sclmd/train/pretrain.py" in uncovered(ldm)
