"""Stage `user_study`: the anonymised perceptual study (paper Figure 4).

Reads the params section `user_study` and the faces the evaluate stage drew
(`data/evaluated/faces.npz`).  Writes `reports/user_study/page/index.html`, a
self-contained page to send to evaluators (works offline, from a file:// URL), and
`reports/user_study/answer_key.json` apart from it.  `sclmd user-study tally ANSWERS...`
then turns the saved answers into preferences per method.
"""

from __future__ import annotations

from pathlib import Path

from sclmd.config import Params
from sclmd.io import atomic_dir, write_json

FACES = Path("data/evaluated/faces.npz")
STUDY_DIR = Path("reports/user_study")
PAGE_DIR = STUDY_DIR / "page"
KEY = STUDY_DIR / "answer_key.json"
PARAM_SECTIONS = ("user_study",)
ARTIFACTS = (PAGE_DIR,)  # the key stays out of MLflow's artifacts, apart from the page
METHODS = ("scldm", "speech2face", "ar_spm")


def run(params: Params, root: Path) -> dict:
    import numpy as np

    from sclmd.errors import SclmdError
    from sclmd.evaluate.user_study import build_study

    cfg = params.user_study
    try:
        data = np.load(root / FACES)
    except FileNotFoundError:
        raise SclmdError(f"{root / FACES}: no evaluated faces. Run `sclmd stage evaluate` first.") from None
    faces = {name: data[name] for name in data.files if name not in ("clip_id", "speaker_id")}
    page, key = build_study(faces, data["clip_id"], list(METHODS), cfg.n_clips, cfg.seed)
    with atomic_dir(root / PAGE_DIR) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
    write_json(root / KEY, key)
    return {"clips": len(key["items"]), "methods": len(METHODS), "study_id": key["study_id"]}
