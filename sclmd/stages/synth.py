"""Stage `synth`: generate VoxSynth, the embedded paired voice-face data set.

Reads params sections `data` and `synth`.  Writes `data/raw/voxsynth/` (atomically)
and, for people to look at and listen to, a contact sheet and a few wavs under
`reports/synth/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sclmd.config import Params
from sclmd.data.voxsynth import generate_voxsynth, make_contact_sheet, pick_sample_wavs
from sclmd.io import atomic_dir, write_json

OUT_DIR = Path("data/raw/voxsynth")
REPORT_DIR = Path("reports/synth")
METRICS = REPORT_DIR / "metrics.json"
CONTACT_SHEET = REPORT_DIR / "contact_sheet.png"
SAMPLES = REPORT_DIR / "samples"
PARAM_SECTIONS = ("data", "synth")
ARTIFACTS = (CONTACT_SHEET, SAMPLES, METRICS)


def run(params: Params, root: Path) -> dict:
    out = root / OUT_DIR
    with atomic_dir(out) as tmp:
        stats = generate_voxsynth(tmp, params.synth, params.data)
    with atomic_dir(root / REPORT_DIR) as report:
        make_contact_sheet(out, report / CONTACT_SHEET.name)
        samples = report / SAMPLES.name
        samples.mkdir()
        for wav in pick_sample_wavs(out, params.synth.sample_wavs):
            shutil.copy2(wav, samples / f"{wav.parent.name}_{wav.name}")
        # Timings go to MLflow only: the DVC metrics file stays identical for identical params.
        write_json(report / METRICS.name, {k: v for k, v in stats.items() if k != "elapsed_s"})
    return stats
