"""Stage `evaluate`: SCLDM against the baselines on the test speakers (paper Tables 2-3).

Reads params sections `data` and `evaluate`, the trained pipeline in `models/ldm/`, the
baselines in `models/baselines/`, the judges in `models/judges/` and the test split.
For every test clip it draws `samples` SCLDM faces (the first is "the" generated face;
all of them give diversity and the paper's best-of-3 cosine distance) and one face per
baseline, and judges them against the true face and the speaker's labels.

Writes `reports/eval/metrics.json` (shape in the README), `reports/eval/report.md` (the
tables beside the paper's numbers), PNGs in `reports/eval/plots/` (comparison grid,
metric bars) and `data/evaluated/faces.npz` (every face shown, for the user study).
Two reference rows are not methods: `real` (the judges on the true faces: the ceiling)
and `reconstruction` (the decoder drawing each true face's own latent: the ceiling of
any method that works through this decoder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sclmd.config import Params
from sclmd.io import atomic_file, write_json

PREPARED = Path("data/prepared")
LDM_DIR = Path("models/ldm")
BASELINES_DIR = Path("models/baselines")
JUDGES_DIR = Path("models/judges")
REPORT_DIR = Path("reports/eval")
METRICS = REPORT_DIR / "metrics.json"
REPORT = REPORT_DIR / "report.md"
PLOTS = REPORT_DIR / "plots"
FACES = Path("data/evaluated/faces.npz")
PARAM_SECTIONS = ("data", "evaluate")
ARTIFACTS = (METRICS, REPORT, PLOTS)
METHODS = ("scldm", "speech2face", "ar_spm")
METHOD_NAMES = {"scldm": "SCLDM (ours)", "speech2face": "Speech2Face-style", "ar_spm": "AR-SPM",
                "real": "real faces (judges' ceiling)", "reconstruction": "autoencoder reconstruction (decoder ceiling)"}
# The paper's AVSpeech numbers (Table 2; Table 4 for the ablations), for reference only: other
# data, VGG-Face features and Face++ judges.
PAPER_TABLE_2 = {"speech2face": {"l1": 67.18, "l2": 3.94, "cos": 46.97, "gender_acc": 0.956, "age_acc": 0.652},
                 "scldm": {"l1": 35.01, "l2": 1.48, "cos": 12.81, "gender_acc": 0.988, "age_acc": 0.845}}
PAPER_TABLE_4 = {"base": {"l1": 56.39, "l2": 3.30, "cos": 29.83, "gender_acc": 0.959, "age_acc": 0.747},
                 "cp": {"l1": 47.61, "l2": 2.69, "cos": 21.79, "gender_acc": 0.972, "age_acc": 0.826},
                 "pn": {"l1": 44.27, "l2": 2.38, "cos": 20.41, "gender_acc": 0.964, "age_acc": 0.803},
                 "full": {"l1": 35.01, "l2": 1.48, "cos": 12.81, "gender_acc": 0.988, "age_acc": 0.845}}


def to_uint8(images) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return np.round((images.clamp(-1, 1).permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)


def chosen_rows(n: int, max_clips: int) -> np.ndarray:
    """All rows, or `max_clips` spread evenly over the split (deterministic)."""
    if not max_clips or max_clips >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_clips).round().astype(np.int64))


def method_metrics(verdicts, true_verdicts, samples_features, rows, real_features, gallery_speakers,
                   real_faces: bool = False) -> dict:
    """Every number for one method: feature similarity, identity preservation, realism, retrieval,
    diversity and best-of-K, against the true faces and labels of `rows`.  `real_faces`: the
    faces judged are the gallery's own, so each is left out of its speaker's gallery entry."""
    from sclmd.evaluate.judges import AGE_TOLERANCE, judge_accuracy
    from sclmd.evaluate.metrics import (
        best_of_k_cos,
        diversity,
        feature_distances,
        frechet_distance,
        speaker_retrieval,
    )

    speakers = rows["speaker_id"].astype(str).to_numpy()
    accuracy = judge_accuracy(verdicts, rows["gender"], rows["age"], AGE_TOLERANCE)
    best = best_of_k_cos(samples_features, true_verdicts.features)
    return {
        **feature_distances(verdicts.features, true_verdicts.features),
        "gender_acc": accuracy["gender_acc"],
        "age_acc": accuracy["age_acc"],
        "age_mae": accuracy["age_mae"],
        "frechet": frechet_distance(verdicts.features, real_features) if len(rows) >= 2 else float("nan"),
        **{k: v for k, v in speaker_retrieval(verdicts.features, speakers, real_features, gallery_speakers,
                                              leave_one_out=real_faces).items() if k.startswith("retrieval_r")},
        "diversity": diversity(samples_features),
        "best_of_k_cos": best["mean"],
        "best_of_k_cos_std": best["std"],
    }


# Issue targets on the embedded default (the paper reports 98.8 % gender and 84.5 % age on AVSpeech).
TARGETS = {"gender_acc": 0.98, "age_acc": 0.85}


def targets(methods: dict) -> dict:
    """Is each target met?  Absolute levels for SCLDM, and SCLDM ahead of both baselines on the
    cosine and Fréchet distances (lower is better)."""
    scldm = methods["scldm"]
    others = [m for m in methods if m != "scldm"]
    out = {f"{key}_at_least_{level:g}": bool(scldm[key] >= level) for key, level in TARGETS.items()}
    for key in ("cos", "frechet"):
        out[f"{key}_ahead_of_baselines"] = bool(all(scldm[key] < methods[m][key] for m in others))
    return out


def run(params: Params, root: Path) -> dict:
    import torch
    from tqdm import tqdm

    from sclmd.data.store import PackedClips
    from sclmd.evaluate.judges import Judges, Verdicts, as_judge_input
    from sclmd.evaluate.plots import plot_face_grid, plot_metric_comparison
    from sclmd.evaluate.report import eval_report
    from sclmd.models.baselines import load_baselines
    from sclmd.models.pipeline import SpeechToFacePipeline
    from sclmd.train.ldm import encode_split

    cfg = params.evaluate
    pipeline = SpeechToFacePipeline.from_pretrained(root / LDM_DIR)
    baselines = load_baselines(root / BASELINES_DIR)
    judges = Judges.from_pretrained(root / JUDGES_DIR)
    test_set = PackedClips(root / PREPARED, "test")
    positions = chosen_rows(len(test_set), cfg.max_clips)
    rows = test_set.rows.iloc[positions].reset_index(drop=True)
    test = encode_split(pipeline.encoders, test_set, 128, "evaluate: encoding test")
    speech, latents = test.speech[positions], test.latents[positions]
    true_faces = as_judge_input(test_set.faces(positions))
    all_real = as_judge_input(test_set.faces(np.arange(len(test_set))))

    k = cfg.samples
    scldm = []
    for start in tqdm(range(0, len(positions), 64), desc="evaluate: SCLDM samples", unit="batch", leave=False):
        scldm.append(pipeline(speech[start : start + 64], seed=cfg.seed + start, samples=k))
    scldm_faces = torch.cat(scldm).view(len(positions), k, *true_faces.shape[1:])
    faces = {"scldm": scldm_faces[:, 0]}
    with torch.no_grad():
        for name, model in baselines.items():
            faces[name] = pipeline.encoders.face_decoder(model(speech) / model.config.latent_scale).clamp(-1, 1)
        reconstruction = pipeline.encoders.face_decoder(latents).clamp(-1, 1)

    true_verdicts = judges(true_faces)
    real_all = judges(all_real)
    gallery_speakers = test_set.rows["speaker_id"].astype(str).to_numpy()
    scldm_samples = judges(scldm_faces.flatten(0, 1))
    scldm_sample_features = scldm_samples.features.reshape(len(positions), k, -1)
    first = slice(0, None, k)  # sample 0 of each clip: the face judged as SCLDM's
    methods = {}
    for name in METHODS:
        verdicts = (Verdicts(scldm_samples.male_probability[first], scldm_samples.age[first],
                             scldm_samples.features[first]) if name == "scldm" else judges(faces[name]))
        samples = scldm_sample_features if name == "scldm" else verdicts.features[:, None]
        methods[name] = method_metrics(verdicts, true_verdicts, samples, rows, real_all.features, gallery_speakers)
    recon_verdicts = judges(reconstruction)
    references = {
        "real": method_metrics(true_verdicts, true_verdicts, true_verdicts.features[:, None], rows,
                               real_all.features, gallery_speakers, real_faces=True),
        "reconstruction": method_metrics(recon_verdicts, true_verdicts, recon_verdicts.features[:, None], rows,
                                         real_all.features, gallery_speakers),
    }
    sampling = pipeline.defaults.__dict__
    metrics = {
        "split": "test",
        "n_clips": len(positions),
        "n_speakers": int(rows["speaker_id"].nunique()),
        "judges": {"gender_acc_real": references["real"]["gender_acc"], "age_acc_real": references["real"]["age_acc"],
                   "retrieval_r1_real": references["real"]["retrieval_r1"], "source": judges.source},
        "sampling": {**sampling, "samples_per_clip": k},
        "methods": methods,
        "references": references,
        "targets": targets(methods),
    }

    plots = root / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    shown = chosen_rows(len(positions), min(cfg.grid_clips, len(positions)))
    grid = torch.stack([true_faces[shown]] + [faces[m][shown] for m in METHODS], dim=1)
    plot_face_grid(grid, [f"{r.speaker_id} {r.gender} {r.age:g}" for r in rows.iloc[shown].itertuples()],
                   ["true face"] + [METHOD_NAMES[m] for m in METHODS], plots / "comparison.png",
                   f"test speakers: SCLDM ({sampling['sampler']}-{sampling['steps']}, guidance "
                   f"{sampling['guidance']:g}) vs baselines")
    bars = {METHOD_NAMES[m]: {key: methods[m][key] for key in ("cos", "gender_acc", "age_acc", "frechet",
                                                               "retrieval_r1", "retrieval_r5")} for m in METHODS}
    plot_metric_comparison(bars, plots / "methods.png", f"test split, {len(positions)} clips, judged by our judges")

    face_file = root / FACES
    face_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(face_file) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, clip_id=rows["clip_id"].to_numpy().astype("U"),
                                speaker_id=rows["speaker_id"].to_numpy().astype("U"), true=to_uint8(true_faces),
                                **{m: to_uint8(faces[m]) for m in METHODS})
    write_json(root / METRICS, metrics)
    with atomic_file(root / REPORT) as tmp:
        tmp.write_text(eval_report(metrics, METHOD_NAMES, PAPER_TABLE_2))
    return metrics
