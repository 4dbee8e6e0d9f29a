"""Stage `prior`: the statistical face prior p and how it converges (paper Table 1).

Reads params sections `data` and `prior`, the pre-trained face encoder from
`models/pretrain/` and the training split.  Writes `models/prior/` (prior.safetensors,
prior.json, prior_face.png: the decoded prior), `reports/prior/metrics.json` (faces
used, whether the data capped N, the convergence table) and
`reports/prior/convergence.png`.
"""

from __future__ import annotations

from pathlib import Path

from sclmd.config import Params
from sclmd.io import write_json

PREPARED = Path("data/prepared")
PRETRAINED = Path("models/pretrain")
PRIOR_DIR = Path("models/prior")
REPORT_DIR = Path("reports/prior")
METRICS = REPORT_DIR / "metrics.json"
CONVERGENCE_PNG = REPORT_DIR / "convergence.png"
PRIOR_FACE = "prior_face.png"
PARAM_SECTIONS = ("data", "prior")
ARTIFACTS = (METRICS, CONVERGENCE_PNG, PRIOR_DIR / PRIOR_FACE)


def decoded_png(decoder, latent) -> bytes:
    """The decoder's picture of one latent [C, h, w], as PNG bytes."""
    import torch

    from sclmd.evaluate.plots import face_png

    with torch.no_grad():
        decoder.eval()
        return face_png(decoder(latent[None].float())[0])


def run(params: Params, root: Path) -> dict:
    from sclmd.data.store import PackedClips
    from sclmd.evaluate.plots import plot_convergence
    from sclmd.models.speech_face import SpeechFaceModel
    from sclmd.train.prior import fit_prior

    cfg = params.prior
    model = SpeechFaceModel.from_pretrained(root / PRETRAINED)
    prior, table = fit_prior(
        model.face_encoder,
        PackedClips(root / PREPARED, "train"),
        cfg.n_faces,
        cfg.seed,
        cfg.batch_size,
        cfg.ladder_start,
    )
    if prior.capped:
        print(
            f"prior: asked for {cfg.n_faces} faces, the training split has {prior.n_faces} gender-balanced ones; "
            "using all of them (the cap is in the metrics)"
        )
    prior.save(root / PRIOR_DIR, extra_files={PRIOR_FACE: decoded_png(model.face_decoder, prior.mean)})
    plot_convergence(
        table, root / CONVERGENCE_PNG, f"face prior convergence ({prior.n_faces} training faces, gender-balanced)"
    )
    metrics = {**prior.info(), "convergence": table, "final_relative_change": table[-1]["relative"] if table else None}
    write_json(root / METRICS, metrics)
    return metrics
