"""Stage `evaluate`: SCLDM against the baselines on the test speakers (paper Tables 2-3).

Reads params sections `data` and `evaluate`, the trained pipeline in `models/ldm/`, the
baselines in `models/baselines/`, the judges in `models/judges/` and the test split.
For every test clip it draws `samples` SCLDM faces (the first is "the" generated face;
all of them give diversity and the paper's best-of-3 cosine distance) and one face per
baseline (the regressions through the shared decoder, Wav2Pix and Wen et al. from the
waveform), and judges them against the true face and the speaker's labels.  A GAN whose
training collapsed or diverged keeps its row, marked (`training_status`), never passed off
as a working method.  The report lays the numbers out as the paper's Tables 2 and 3, its
published rows beside ours.

Writes `reports/eval/metrics.json` (shape in the README), `reports/eval/report.md` (the
tables beside the paper's numbers), PNGs in `reports/eval/plots/` (comparison grid,
metric bars) and `data/evaluated/faces.npz` (every face shown, for the user study).
Two reference rows are not methods: `real` (the judges on the true faces: the ceiling)
and `reconstruction` (the decoder drawing each true face's own latent: the ceiling of
any method that works through this decoder).  `real_voices` holds every method's gender
agreement on the project's labelled voices of real speakers (`real_voices/`, reporting only).

Every metric of every row carries a 95% interval `<key>_ci`: a percentile bootstrap over the
test clips, resampled by speaker (`evaluate.bootstrap_resamples` draws, seed `evaluate.seed`;
the Fréchet distance on the first `bootstrap_frechet_resamples` of them).  Realism is also
measured by a classifier two-sample test (`two_sample_acc`, Wilson interval): a small CNN
telling each row's faces from the true ones (SCLDM: its first sample; the real row: two
halves of the real faces, a sanity check near 0.5).  `comparisons` holds SCLDM minus each
baseline, clip by clip on the same draws, which the interval-aware `targets` read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sclmd.config import Params
from sclmd.evaluate.metrics import chosen_rows
from sclmd.evaluate.report import HIGHER_IS_BETTER  # compared clip by clip too: SCLDM - baseline > 0 is ahead
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
ENCODED = Path("data/encoded")  # the frozen encoders' outputs, written by pretrain
PARAM_SECTIONS = ("data", "evaluate")
ARTIFACTS = (METRICS, REPORT, PLOTS)
METHODS = ("scldm", "speech2face", "ar_spm", "wav2pix", "wen")
METHOD_NAMES = {
    "scldm": "SCLDM (ours)",
    "speech2face": "Speech2Face-style",
    "ar_spm": "AR-SPM",
    "wav2pix": "Wav2Pix",
    "wen": "Wen et al.",
    "real": "real faces (judges' ceiling)",
    "reconstruction": "autoencoder reconstruction (decoder ceiling)",
    "attribute_oracle": "attribute oracle (VoxSynth: the voice's gender, age, size exact, the rest drawn)",
}
# The paper's numbers (Table 2: AVSpeech; Table 3: VoxCeleb; Table 4: the ablations), for reference
# only: other data, VGG-Face features and Face++ judges.
PAPER_TABLE_2 = {
    "wav2pix": {"l1": 144.72, "l2": 24.32, "cos": 82.51, "gender_acc": 0.674, "age_acc": 0.413},
    "speech2face": {"l1": 67.18, "l2": 3.94, "cos": 46.97, "gender_acc": 0.956, "age_acc": 0.652},
    "scldm": {"l1": 35.01, "l2": 1.48, "cos": 12.81, "gender_acc": 0.988, "age_acc": 0.845},
}
PAPER_TABLE_3 = {
    "wav2pix": {"l1": 137.58, "l2": 22.19, "cos": 79.36, "gender_acc": 0.745, "age_acc": 0.496},
    "speech2face": {"l1": 66.46, "l2": 2.77, "cos": 44.38, "gender_acc": 0.961, "age_acc": 0.694},
    "wen": {"l1": 59.82, "l2": 2.41, "cos": 42.54, "gender_acc": 0.974, "age_acc": 0.725},
    "scldm": {"l1": 27.10, "l2": 1.09, "cos": 11.54, "gender_acc": 0.994, "age_acc": 0.886},
}
PAPER_TABLE_4 = {
    "base": {"l1": 56.39, "l2": 3.30, "cos": 29.83, "gender_acc": 0.959, "age_acc": 0.747},
    "cp": {"l1": 47.61, "l2": 2.69, "cos": 21.79, "gender_acc": 0.972, "age_acc": 0.826},
    "pn": {"l1": 44.27, "l2": 2.38, "cos": 20.41, "gender_acc": 0.964, "age_acc": 0.803},
    "full": {"l1": 35.01, "l2": 1.48, "cos": 12.81, "gender_acc": 0.988, "age_acc": 0.845},
}


def to_uint8(images) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return np.round((images.clamp(-1, 1).permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)


# Metrics with one value per test clip: their mean is the metric, their bootstrap its interval.
PER_CLIP = (
    "l1",
    "l2",
    "cos",
    "gender_acc",
    "age_acc",
    "age_mae",
    "retrieval_r1",
    "retrieval_r5",
    "diversity",
    "best_of_k_cos",
)
DISTANCES = ("cos", "l1", "l2")  # feature distances SCLDM is compared with the baselines on, clip by clip


def per_clip_metrics(
    verdicts, true_verdicts, samples_features, rows, real_features, gallery_speakers, real_faces: bool = False
) -> dict[str, np.ndarray]:
    """`method_metrics`' numbers before averaging: one value per clip of `rows` (NaN where a clip
    does not count, e.g. an unlabelled age), plus best-of-K L1 and L2 (`best_of_k_l1`, `_l2`)."""
    from sclmd.evaluate.judges import AGE_TOLERANCE, judge_accuracy_per_clip
    from sclmd.evaluate.metrics import (
        best_of_k_per_clip,
        diversity_per_clip,
        feature_distances_per_clip,
        speaker_retrieval_per_clip,
    )

    speakers = rows["speaker_id"].astype(str).to_numpy()
    best = best_of_k_per_clip(samples_features, true_verdicts.features)
    return {
        **feature_distances_per_clip(verdicts.features, true_verdicts.features),
        **judge_accuracy_per_clip(verdicts, rows["gender"], rows["age"], AGE_TOLERANCE),
        **speaker_retrieval_per_clip(
            verdicts.features, speakers, real_features, gallery_speakers, leave_one_out=real_faces
        ),
        "diversity": diversity_per_clip(samples_features),
        "best_of_k_cos": best["cos"],
        "best_of_k_l1": best["l1"],
        "best_of_k_l2": best["l2"],
    }


@dataclass
class MethodResult:
    metrics: dict  # the method's row of metrics.json
    per_clip: dict[str, np.ndarray]
    frechet_draws: np.ndarray | None  # the Fréchet distance in each of the first bootstrap resamples


def evaluate_method(
    verdicts,
    true_verdicts,
    samples_features,
    rows,
    real_features,
    gallery_speakers,
    real_faces: bool = False,
    bootstrap=None,
    frechet_resamples: int = 1000,
) -> MethodResult:
    """Every number for one method, with a `<key>_ci` interval beside each when `bootstrap` (a
    `ClusterBootstrap` over the clips of `rows`) is given.  The Fréchet distance's interval
    resamples the generated rows (the real ones stay) in the first `frechet_resamples` draws,
    bias-corrected (`ClusterBootstrap.bias_corrected`)."""
    from sclmd.evaluate.bootstrap import nan_mean
    from sclmd.evaluate.metrics import frechet_against, frechet_distance

    per_clip = per_clip_metrics(
        verdicts, true_verdicts, samples_features, rows, real_features, gallery_speakers, real_faces
    )
    generated = np.asarray(verdicts.features, dtype=np.float64)
    out = {key: nan_mean(per_clip[key]) for key in PER_CLIP}
    out["frechet"] = frechet_distance(generated, real_features) if len(rows) >= 2 else float("nan")
    out["best_of_k_cos_std"] = float(np.std(per_clip["best_of_k_cos"]))
    draws = None
    if bootstrap is not None:
        for key in PER_CLIP:
            out[f"{key}_ci"] = bootstrap.mean_ci(per_clip[key])
        if len(rows) >= 2 and frechet_resamples > 0:
            against_real = frechet_against(real_features)  # = frechet_distance(., real_features), faster
            draws = bootstrap.statistic_draws(lambda r: against_real(generated[r]), frechet_resamples)
            out["frechet_ci"] = bootstrap.bias_corrected(draws, out["frechet"], floor=0.0)
        else:
            out["frechet_ci"] = [float("nan"), float("nan")]
    return MethodResult(out, per_clip, draws)


def method_metrics(
    verdicts,
    true_verdicts,
    samples_features,
    rows,
    real_features,
    gallery_speakers,
    real_faces: bool = False,
    bootstrap=None,
    frechet_resamples: int = 1000,
) -> dict:
    """Every number for one method: feature similarity, identity preservation, realism, retrieval,
    diversity and best-of-K, against the true faces and labels of `rows`.  `real_faces`: the
    faces judged are the gallery's own, so each is left out of its speaker's gallery entry.
    With `bootstrap`, each number gets its 95% interval as `<key>_ci` (see `evaluate_method`)."""
    return evaluate_method(
        verdicts,
        true_verdicts,
        samples_features,
        rows,
        real_features,
        gallery_speakers,
        real_faces,
        bootstrap,
        frechet_resamples,
    ).metrics


def comparisons(results: dict[str, MethodResult], bootstrap, ours: str = "scldm") -> dict:
    """SCLDM minus each baseline, clip by clip, on the same bootstrap draws (a paired bootstrap):
    single-sample and best-of-K L1, L2 and cos (a deterministic baseline's best-of-K is its one
    face), and the Fréchet distance (its draws differenced).  Negative = SCLDM lower (better);
    an interval below 0 = ahead beyond the noise."""
    out = {}
    mine = results[ours]
    for name, other in results.items():
        if name == ours:
            continue
        row = {}
        for key in DISTANCES:
            row[key] = bootstrap.paired_difference(mine.per_clip[key], other.per_clip[key])
            row[f"best_of_k_{key}"] = bootstrap.paired_difference(
                mine.per_clip[f"best_of_k_{key}"], other.per_clip[f"best_of_k_{key}"]
            )
        for key in HIGHER_IS_BETTER:
            row[key] = bootstrap.paired_difference(mine.per_clip[key], other.per_clip[key])
        frechet = {"diff": mine.metrics["frechet"] - other.metrics["frechet"], "ci": [float("nan"), float("nan")]}
        if mine.frechet_draws is not None and other.frechet_draws is not None:
            frechet["ci"] = bootstrap.bias_corrected(mine.frechet_draws - other.frechet_draws, frechet["diff"])
        row["frechet"] = frechet
        out[name] = row
    return out


# Issue targets on the embedded default, set from the ceilings the judges and the decoder reach
# (the paper's 98.8 % gender and 84.5 % age on AVSpeech are out of reach of judges that place
# only 42 % of real faces within +-5 years).  SCLDM: key -> (at_least | at_most, level).
TARGETS = {"age_acc": ("at_least", 0.30), "retrieval_r1": ("at_least", 0.08), "two_sample_acc": ("at_most", 0.80)}
RECONSTRUCTION_TARGETS = {
    "two_sample_acc": ("at_most", 0.75),
    "gender_acc": ("at_least", 0.90),
    "age_acc": ("at_least", 0.35),
    "cos": ("at_most", 12.0),
}
GENDER_GAP = 0.03  # SCLDM's gender accuracy within this of the judges' own on the real test faces


def _meets(value, how: str, level: float) -> bool:
    if value is None or not np.isfinite(value):
        return False
    return bool(value >= level) if how == "at_least" else bool(value <= level)


def targets(methods: dict, references: dict | None = None, compared: dict | None = None) -> dict:
    """Is each target met?  Absolute levels for SCLDM (and, with `references`, for the decoder's
    reconstruction and SCLDM's gender accuracy against the judges' ceiling); with `compared`
    (`comparisons`' output), SCLDM against every baseline on cos, L1 and L2: its best-of-K
    ahead beyond the bootstrap interval (the paired difference's interval lies below 0) and
    its single sample at least level within it (the interval reaches 0 or below), and its
    Fréchet distance ahead (interval below 0; the point difference when there is none)."""
    scldm = methods["scldm"]
    out = {f"{key}_{how}_{level:g}": _meets(scldm.get(key), how, level) for key, (how, level) in TARGETS.items()}
    if references:
        real, recon = references.get("real", {}), references.get("reconstruction", {})
        gap = scldm.get("gender_acc", float("nan")) - real.get("gender_acc", float("nan"))
        out[f"gender_acc_within_{GENDER_GAP:g}_of_judges"] = bool(np.isfinite(gap) and gap >= -GENDER_GAP)
        out.update(
            {
                f"reconstruction_{key}_{how}_{level:g}": _meets(recon.get(key), how, level)
                for key, (how, level) in RECONSTRUCTION_TARGETS.items()
            }
        )
    if compared:
        for key in DISTANCES:
            out[f"{key}_best_of_k_ahead_of_baselines"] = bool(
                all(
                    np.isfinite(c[f"best_of_k_{key}"]["ci"][1]) and c[f"best_of_k_{key}"]["ci"][1] < 0
                    for c in compared.values()
                )
            )
            out[f"{key}_single_level_with_baselines"] = bool(
                all(np.isfinite(c[key]["ci"][0]) and c[key]["ci"][0] <= 0 for c in compared.values())
            )
        out["frechet_ahead_of_baselines"] = bool(
            all(
                (c["frechet"]["ci"][1] < 0) if np.isfinite(c["frechet"]["ci"][1]) else (c["frechet"]["diff"] < 0)
                for c in compared.values()
            )
        )
    return out


def baseline_faces(pipeline, model, speech, waves):
    """A baseline's one face per clip, [B, 3, H, W]: a regression's latent drawn by the pipeline's
    decoder, a GAN's pixels drawn from the waveform."""
    from sclmd.models.baselines import draw_baseline

    return draw_baseline(model, pipeline.encoders.face_decoder, speech, waves)


REAL_VOICE_AGREEMENT = 0.90  # SCLDM's faces follow a real voice's gender in at least this share


def real_voice_check(pipeline, baselines: dict, judges, root: Path, cfg) -> tuple[dict, dict, object]:
    """Real-speech gender agreement of every method on the shipped voices (`real_voices/`):
    SCLDM draws `real_voice_samples` faces per voice, a baseline its one face.  Reporting only:
    nothing is chosen or trained on these voices here."""
    import torch

    from sclmd.evaluate.real_voices import SHIPPED, judge_voices, load_voices, scldm_faces

    folder = root / SHIPPED
    if not (folder / "labels.csv").is_file():
        return {"folder": str(SHIPPED), "skipped": f"{SHIPPED}/labels.csv not found"}, {}, None
    voices = load_voices(folder, int(pipeline.data["sample_rate"]), float(pipeline.data["clip_seconds"]))
    if not voices.voices:
        return (
            {
                "folder": str(SHIPPED),
                "skipped": "no usable voice: " + "; ".join(f"{v.file}: {why}" for v, why in voices.skipped),
            },
            {},
            None,
        )
    faces = {"scldm": scldm_faces(pipeline, voices, cfg.real_voice_samples, cfg.seed)}
    with torch.no_grad():
        speech = pipeline.speech_embedding(voices.waves)
        for name, model in baselines.items():
            faces[name] = baseline_faces(pipeline, model, speech, voices.waves)[:, None]
    methods = {name: judge_voices(faces[name], voices, judges, seed=cfg.seed) for name in METHODS if name in faces}
    return (
        {"folder": str(SHIPPED), "n_voices": len(voices.voices), "n_skipped": len(voices.skipped), "methods": methods},
        faces,
        voices,
    )


def real_voice_targets(real_voices: dict) -> dict:
    if "methods" not in real_voices:
        return {}  # not measured (no real_voices/ folder): no target to report
    scldm = real_voices["methods"].get("scldm", {})
    return {
        f"real_voice_gender_agreement_at_least_{REAL_VOICE_AGREEMENT:g}": _meets(
            scldm.get("gender_agreement"), "at_least", REAL_VOICE_AGREEMENT
        )
    }


def two_sample(real, generated, speakers, cfg, notes: dict | None = None, name: str = "") -> dict:
    """The classifier two-sample test of `generated` against the `real` faces of the same clips
    (`generated` None: real against real, the sanity check); why it did not run goes to `notes`."""
    from sclmd.evaluate.two_sample import classifier_two_sample_test, real_vs_real

    options = dict(folds=cfg.two_sample_folds, epochs=cfg.two_sample_epochs, seed=cfg.seed)
    result = (
        real_vs_real(real, speakers, **options)
        if generated is None
        else classifier_two_sample_test(real, generated, speakers, speakers, **options)
    )
    if result.note and notes is not None:
        notes[name] = result.note
    return {"two_sample_acc": result.acc, "two_sample_acc_ci": result.ci}


def attribute_oracle(root: Path, speakers, samples: int, seed: int, notes: dict) -> np.ndarray | None:
    """The attribute oracle's faces (`sclmd/data/voxsynth/oracle.py`), uint8 [N, samples, H, W, 3],
    when the prepared data is VoxSynth and its folder is here; else None, with why in `notes`."""
    import json

    from sclmd.data.voxsynth.oracle import oracle_faces, render_settings

    info = json.loads((root / PREPARED / "info.json").read_text())
    prepare = info.get("params", {}).get("prepare", {})
    if prepare.get("source") != "voxsynth":
        notes["attribute_oracle"] = f"the data is {prepare.get('source')}, not VoxSynth: no oracle"
        return None
    raw = (root / prepare.get("voxsynth_dir", "data/raw/voxsynth")).resolve()
    if not raw.is_relative_to(root.resolve()) or render_settings(raw) is None:
        notes["attribute_oracle"] = f"{raw}: no VoxSynth folder with its render settings here (`dvc repro synth`)"
        return None
    return oracle_faces(raw, list(speakers), samples, seed)


def run(params: Params, root: Path) -> dict:
    import torch
    from tqdm import tqdm

    from sclmd.data.store import PackedClips
    from sclmd.evaluate.bootstrap import ClusterBootstrap
    from sclmd.evaluate.judges import Judges, Verdicts, as_judge_input
    from sclmd.evaluate.plots import plot_face_grid, plot_metric_comparison
    from sclmd.evaluate.report import eval_report
    from sclmd.models.baselines import baseline_runs, load_baselines
    from sclmd.models.pipeline import SpeechToFacePipeline
    from sclmd.train.ldm import load_encoding

    cfg = params.evaluate
    pipeline = SpeechToFacePipeline.from_pretrained(root / LDM_DIR)
    baselines = load_baselines(root / BASELINES_DIR)
    missing = [m for m in METHODS[1:] if m not in baselines]
    if missing:
        from sclmd.errors import SclmdError

        raise SclmdError(
            f"{root / BASELINES_DIR}: no {', '.join(missing)} (written before those baselines existed). "
            "Run `sclmd stage baselines` (or `dvc repro baselines`)."
        )
    runs = baseline_runs(root / BASELINES_DIR)
    judges = Judges.from_pretrained(root / JUDGES_DIR)
    test_set = PackedClips(root / PREPARED, "test")
    positions = chosen_rows(len(test_set), cfg.max_clips)
    rows = test_set.rows.iloc[positions].reset_index(drop=True)
    test = load_encoding(root / ENCODED, test_set, "test", root / LDM_DIR / "pretrain/model.safetensors")
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
        waves = test_set.audio(positions).float() / 32768.0
        for name, model in baselines.items():
            faces[name] = baseline_faces(pipeline, model, speech, waves)
        reconstruction = pipeline.encoders.face_decoder.decode(latents).clamp(-1, 1)

    true_verdicts = judges(true_faces)
    real_all = judges(all_real)
    gallery_speakers = test_set.rows["speaker_id"].astype(str).to_numpy()
    scldm_samples = judges(scldm_faces.flatten(0, 1))
    scldm_sample_features = scldm_samples.features.reshape(len(positions), k, -1)
    first = slice(0, None, k)  # sample 0 of each clip: the face judged as SCLDM's
    speakers = rows["speaker_id"].astype(str).to_numpy()
    # One set of bootstrap draws (speakers resampled) for every metric and row: paired comparisons.
    boot = ClusterBootstrap(speakers, cfg.bootstrap_resamples, cfg.seed)
    measure = dict(bootstrap=boot, frechet_resamples=cfg.bootstrap_frechet_resamples)
    results = {}
    for name in METHODS:
        verdicts = (
            Verdicts(scldm_samples.male_probability[first], scldm_samples.age[first], scldm_samples.features[first])
            if name == "scldm"
            else judges(faces[name])
        )
        samples = scldm_sample_features if name == "scldm" else verdicts.features[:, None]
        results[name] = evaluate_method(
            verdicts, true_verdicts, samples, rows, real_all.features, gallery_speakers, **measure
        )
    recon_verdicts = judges(reconstruction)
    reference_results = {
        "real": evaluate_method(
            true_verdicts,
            true_verdicts,
            true_verdicts.features[:, None],
            rows,
            real_all.features,
            gallery_speakers,
            real_faces=True,
            **measure,
        ),
        "reconstruction": evaluate_method(
            recon_verdicts,
            true_verdicts,
            recon_verdicts.features[:, None],
            rows,
            real_all.features,
            gallery_speakers,
            **measure,
        ),
    }
    not_run: dict[str, str] = {}  # what did not run, and why
    reference_notes: dict[str, str] = {}
    oracle = attribute_oracle(root, rows["speaker_id"].astype(str), k, cfg.seed, reference_notes)
    oracle_first = None
    if oracle is not None:
        oracle_all = as_judge_input(torch.from_numpy(oracle.reshape(-1, *oracle.shape[2:])))
        oracle_first = oracle_all[first]
        judged = judges(oracle_all)
        reference_results["attribute_oracle"] = evaluate_method(
            Verdicts(judged.male_probability[first], judged.age[first], judged.features[first]),
            true_verdicts,
            judged.features.reshape(len(positions), k, -1),
            rows,
            real_all.features,
            gallery_speakers,
            **measure,
        )
    methods = {name: r.metrics for name, r in results.items()}
    for name, run in runs.items():  # a collapsed or diverged GAN: its row is marked, not passed off as fine
        methods[name]["training_status"] = run.get("status", "ok")
        if run.get("status", "ok") != "ok":
            methods[name]["training_note"] = run.get("why", "")
            print(
                f"evaluate: {METHOD_NAMES[name]}'s training {run['status']} ({run.get('why', '')}): its row is "
                "marked in the report",
                flush=True,
            )
    references = {name: r.metrics for name, r in reference_results.items()}
    # Realism by a classifier two-sample test: each method's (SCLDM: first sample) faces against the
    # true faces of the same clips; the real row is real against real (two halves of the speakers).
    real_cpu = true_faces.detach().float().cpu()
    compared_faces = [*((m, faces[m]) for m in METHODS), ("reconstruction", reconstruction), ("real", None)]
    if oracle_first is not None:
        compared_faces.append(("attribute_oracle", oracle_first))
    for name, generated in compared_faces:
        row = methods[name] if name in methods else references[name]
        row.update(
            two_sample(
                real_cpu, None if generated is None else generated.detach().float().cpu(), speakers, cfg, not_run, name
            )
        )
    compared = comparisons(results, boot)
    real_voices, voice_faces, voices = real_voice_check(pipeline, baselines, judges, root, cfg)
    sampling = pipeline.defaults.__dict__
    metrics = {
        "split": "test",
        "n_clips": len(positions),
        "n_speakers": int(rows["speaker_id"].nunique()),
        "judges": {
            "gender_acc_real": references["real"]["gender_acc"],
            "age_acc_real": references["real"]["age_acc"],
            "retrieval_r1_real": references["real"]["retrieval_r1"],
            "source": judges.source,
        },
        "sampling": {**sampling, "samples_per_clip": k},
        "bootstrap": {
            "resamples": cfg.bootstrap_resamples,
            "frechet_resamples": min(cfg.bootstrap_frechet_resamples, cfg.bootstrap_resamples),
            "seed": cfg.seed,
            "unit": "speaker",
            "level": 0.95,
            "interval": "percentile",
        },
        "two_sample": {
            "folds": cfg.two_sample_folds,
            "epochs": cfg.two_sample_epochs,
            "interval": "wilson",
            "scldm_faces": "first sample of each clip",
            "real_row": "real vs real: the test faces in two halves by speaker",
            **({"not_run": not_run} if not_run else {}),
        },
        "methods": methods,
        "references": references,
        **({"reference_notes": reference_notes} if reference_notes else {}),
        "comparisons": compared,
        "real_voices": real_voices,
        "targets": {**targets(methods, references, compared), **real_voice_targets(real_voices)},
    }

    plots = root / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    shown = chosen_rows(len(positions), min(cfg.grid_clips, len(positions)))
    grid = torch.stack([true_faces[shown]] + [faces[m][shown] for m in METHODS], dim=1)
    plot_face_grid(
        grid,
        [f"{r.speaker_id} {r.gender} {r.age:g}" for r in rows.iloc[shown].itertuples()],
        ["true face"] + [METHOD_NAMES[m] for m in METHODS],
        plots / "comparison.png",
        f"test speakers: SCLDM ({sampling['sampler']}-{sampling['steps']}, guidance "
        f"{sampling['guidance']:g}) vs baselines",
    )
    bars = {
        METHOD_NAMES[m]: {
            key: methods[m][key] for key in ("cos", "gender_acc", "age_acc", "frechet", "retrieval_r1", "retrieval_r5")
        }
        for m in METHODS
    }
    plot_metric_comparison(bars, plots / "methods.png", f"test split, {len(positions)} clips, judged by our judges")
    if voices is not None and len(voices.voices):
        shown_samples = min(4, cfg.real_voice_samples)
        voice_grid = torch.cat([voice_faces["scldm"][:, :shown_samples]] + [voice_faces[m] for m in METHODS[1:]], 1)
        plot_face_grid(
            voice_grid,
            [f"{v.file.rsplit('.', 1)[0]} ({v.gender})" for v in voices.voices],
            [f"SCLDM {k + 1}" for k in range(shown_samples)] + [METHOD_NAMES[m] for m in METHODS[1:]],
            plots / "real_voices.png",
            "real speakers' voices (real_voices/): faces drawn from real speech",
        )

    face_file = root / FACES
    face_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(face_file) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                clip_id=rows["clip_id"].to_numpy().astype("U"),
                speaker_id=rows["speaker_id"].to_numpy().astype("U"),
                true=to_uint8(true_faces),
                **{m: to_uint8(faces[m]) for m in METHODS},
            )
    write_json(root / METRICS, metrics)
    with atomic_file(root / REPORT) as tmp:
        tmp.write_text(eval_report(metrics, METHOD_NAMES, {"2": PAPER_TABLE_2, "3": PAPER_TABLE_3}))
    return metrics
