"""The evaluation end to end with the pretrained judges (`judges.kind: auto` on a real source), on a
VoxCeleb1-format tree of real photos (tests/media.py: `make_real_photo_voxceleb1_tree`)."""

from __future__ import annotations

import json
import os

import pytest

from sclmd.evaluate.judges import Judges
from sclmd.evaluate.pretrained_judges import NAME, AlignedFaceJudges
from tests.conftest import make_project
from tests.media import make_real_photo_voxceleb1_tree

pytestmark = pytest.mark.slow


def test_evaluation_runs_with_the_pretrained_judges_on_real_photos(tmp_path):
    from sclmd.config import load_params
    from sclmd.stages import prepare, run_stage

    tree = make_real_photo_voxceleb1_tree(tmp_path / "raw", n_speakers=12)
    root = make_project(
        tmp_path / "project", {"prepare": {"source": "voxceleb1", "workers": 1, "voxceleb1": tree.model_dump()}}
    )
    prepare.run(load_params(root / "params.yaml"), root)  # faces detected and aligned (auto on a real source)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name in ("pretrain", "prior", "train_ldm", "judges", "baselines", "evaluate"):
            run_stage(name, root)
    finally:
        os.chdir(cwd)

    judges = Judges.from_pretrained(root / "models/judges")  # auto -> pretrained on a real source
    assert isinstance(judges, AlignedFaceJudges) and judges.padding == 0.3
    judged = json.loads((root / "reports/judges/metrics.json").read_text())
    assert judged["kind"] == "pretrained" and judged["source"] == NAME
    # on the real test faces, identity retrieval finds the right person among the test speakers
    assert judged["test"]["retrieval_r1"] >= 0.5
    report = json.loads((root / "reports/eval/metrics.json").read_text())
    assert report["judges"]["source"] == NAME  # the report names its judges
    assert 0.0 <= report["methods"]["scldm"]["gender_acc"] <= 1.0
    assert "pretrained" in (root / "reports/eval/report.md").read_text()
