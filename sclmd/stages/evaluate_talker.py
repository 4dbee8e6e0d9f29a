"""Stage `evaluate_talker`: the talking face on the test speakers, against two references.

Reads `data` and `evaluate_talker`. For each test speaker's clip, the voice drives:

- `DAE-Talker (photo)`: the talker animating the speaker's VoxSynth portrait (a face image
  it never saw: a test speaker, and not a video frame), every frame decoded from one shared
  Gaussian code; averaged over `noise_codes` codes (seeds 0..n-1, each with its own sampled
  head drift), never one chosen code;
- `DAE-Talker (the clip's first frame)`: the talker animating the clip's own first frame, as
  DAE-Talker does (the realism row: a portrait is not a frame of the clip; one code, the
  evaluation's seed: its Fréchet distance pools every frame of every clip);
- `DAE-Talker (photo, inverted code)`: the same, from the portrait's DDIM inversion instead
  (the ablation of that choice; with `inversion_row`, as the release does);
- `DAE-Talker (SCLDM face)`: the talker animating the face SCLDM drew from the same voice
  (what `sclmd talk VOICE` does with no --face);
- `regression`: the regression reference (speech + reference -> latent in one pass, no diffusion);
- `still`: the portrait, unmoving (lip sync 0 by construction).

`real` (the clip's own frames) and `real via autoencoder` (those frames through the face
autoencoder every generated frame passes through) are the ceilings.

Lip sync: per clip, Pearson's r between the mouth opening the probe reads and the true
opening of the phones; identity drift: judge identity features' cosine distance from a
clip's first frame, beside the same distance between different test speakers, and from the
face it was given (the portrait, first frame or SCLDM's face through the autoencoder); realism:
Fréchet distance of judge features against the real test frames; pose: the pose head's mean,
the sampled pose and the generated frames' pose against the truth. Writes `reports/talker/` (metrics,
report, a side-by-side sample video with the voice, a frame strip, bars).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sclmd.config import Params
from sclmd.data.video import write_mp4
from sclmd.evaluate.bootstrap import ClusterBootstrap
from sclmd.evaluate.judges import Judges
from sclmd.evaluate.metrics import frechet_distance
from sclmd.evaluate.talker import (
    between_speakers,
    correlation,
    distance_to_face,
    fit_probe,
    frame_strip,
    identity_drift,
    metric_bars,
    probe_read,
    side_by_side,
    to_uint8,
)
from sclmd.io import write_json, write_text
from sclmd.models.talker import TalkingFace
from sclmd.train.talker import POSE_TRACKS, encode_frames, load_clips, to_unit

VIDEO_DIR = Path("data/talker/videos")
TALKER_DIR = Path("models/talker")
LDM_DIR = Path("models/ldm")
JUDGES_DIR = Path("models/judges")
FACES_DIR = Path("data/raw/voxsynth/faces")
REPORT_DIR = Path("reports/talker")
METRICS = REPORT_DIR / "metrics.json"
REPORT = REPORT_DIR / "report.md"
SAMPLE_VIDEO = REPORT_DIR / "sample.mp4"
STRIP = REPORT_DIR / "frame_strip.png"
BEARDED_STRIP = REPORT_DIR / "frame_strip_bearded.png"  # a beard is where an autoencoder loses the mouth first
SPEAKERS = Path("data/raw/voxsynth/speakers.csv")
BARS = REPORT_DIR / "metrics.png"
PARAM_SECTIONS = ("data", "evaluate_talker")
ARTIFACTS = (METRICS, REPORT, SAMPLE_VIDEO, STRIP, BEARDED_STRIP, BARS)
METHODS = {
    "dae_photo": "DAE-Talker (photo)",
    "dae_first_frame": "DAE-Talker (the clip's first frame)",
    "dae_photo_inversion": "DAE-Talker (photo, inverted code)",
    "dae_scldm": "DAE-Talker (SCLDM face)",
    "regression": "regression",
    "still": "still face",
}
CEILINGS = {"real": "real frames", "real_autoencoder": "real via autoencoder"}


def portrait(root: Path, speaker: str) -> torch.Tensor:
    """uint8 [H, W, 3]: the speaker's VoxSynth portrait, the still face a clip animates."""
    from PIL import Image

    with Image.open(root / FACES_DIR / speaker / "00.png") as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())


@torch.no_grad()
def _scldm_faces(root: Path, waves: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 [N, H, W, 3]: SCLDM's face for each voice (looped to the pipeline's clip length, as `generate` does)."""
    from sclmd.models.pipeline import SpeechToFacePipeline

    pipeline = SpeechToFacePipeline.from_pretrained(root / LDM_DIR)
    need = int(round(pipeline.data["sample_rate"] * pipeline.data["clip_seconds"]))
    looped = torch.from_numpy(np.stack([np.resize(w.numpy(), need) for w in waves]))
    faces = pipeline(pipeline.speech_embedding(looped), seed=seed)
    return torch.from_numpy(to_uint8(faces))


def pose_table(truth: np.ndarray, head: np.ndarray, sampled: np.ndarray) -> dict[str, dict[str, float]]:
    """The pose against the truth [clips, T, 3] (degrees), per axis: the pose head's mean `head` [clips, T, 3]
    and the poses used with the sampled drift `sampled` [clips, codes, T, 3]. Spreads are within a clip
    (what a viewer sees move), averaged over clips; r and MAE are per clip (and draw), averaged."""

    def spread(x: np.ndarray) -> float:
        return float(x.std(-1).mean())

    def r(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean([correlation(a, b) for a, b in zip(x, y)]))

    out: dict[str, dict[str, float]] = {
        k: {}
        for k in (
            "true_std_deg",
            "predicted_std_deg",
            "predicted_r",
            "predicted_mae_deg",
            "sampled_std_deg",
            "sampled_std_ratio",
            "sampled_r",
            "sampled_mae_deg",
        )
    }
    for k, axis in enumerate(POSE_TRACKS):
        t, h, s = truth[..., k], head[..., k], sampled[..., k]
        true_spread = spread(t)
        draws = s.reshape(-1, s.shape[-1])
        repeated = np.repeat(t, s.shape[1], axis=0)
        values = {
            "true_std_deg": true_spread,
            "predicted_std_deg": spread(h),
            "predicted_r": r(h, t),
            "predicted_mae_deg": float(np.abs(h - t).mean()),
            "sampled_std_deg": spread(draws),
            "sampled_std_ratio": spread(draws) / max(true_spread, 1e-6),
            "sampled_r": r(draws, repeated),
            "sampled_mae_deg": float(np.abs(draws - repeated).mean()),
        }
        for name, value in values.items():
            out[name][axis] = round(value, 3)
    return out


def bearded(root: Path, speakers: list[str]) -> list[bool]:
    """Whether each VoxSynth speaker wears a beard (speakers.csv); all False where the file is absent."""
    import csv

    path = root / SPEAKERS
    if not path.is_file():
        return [False] * len(speakers)
    with path.open(newline="") as f:
        beards = {row["speaker_id"]: row.get("beard") == "True" for row in csv.DictReader(f)}
    return [beards.get(s, False) for s in speakers]


def _ci(boot: ClusterBootstrap, values) -> list[float]:
    return [round(v, 4) for v in boot.mean_ci(values)]


def run(params: Params, root: Path) -> dict:
    started = time.perf_counter()
    p = params.evaluate_talker
    torch.manual_seed(p.seed)
    video_dir = root / VIDEO_DIR
    talker = TalkingFace.from_pretrained(root / TALKER_DIR)
    judges = Judges.from_pretrained(root / JUDGES_DIR)

    probe = fit_probe(
        talker,
        video_dir,
        steps=p.probe_steps,
        batch_size=p.probe_batch_size,
        lr=p.probe_lr,
        max_blur=p.probe_max_blur,
        seed=p.seed,
    )

    test = load_clips(video_dir, "test")
    if p.max_speakers:
        test = test.take(p.max_speakers)
    n_clips, n_frames = test.frames.shape[:2]
    codes = list(range(p.noise_codes))
    scldm_faces = _scldm_faces(root, test.waves, p.seed)
    # outputs[row][clip]: uint8 [draws, T, H, W, 3]; the averaged rows hold one draw per noise code
    rows = [k for k in METHODS if p.inversion_row or k != "dae_photo_inversion"]
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in (*CEILINGS, *rows)}
    head_pose, sampled_pose = [], []  # the pose head's mean [T, 3], and the poses used with the drift [codes, T, 3]
    given = {"photo": [], "scldm": [], "first_frame": []}  # the face each clip animates, through the autoencoder

    def draws(wave, face, **kwargs) -> tuple[np.ndarray, list]:
        runs = [talker.speak(wave, face, n_frames=n_frames, seed=c, **kwargs) for c in codes]
        return np.stack([to_uint8(frames) for frames, _ in runs]), [pose for _, pose in runs]

    for i in tqdm(range(n_clips), desc="evaluate_talker: clips", unit="clip"):
        wave, photo, first = test.waves[i], portrait(root, test.speakers[i]), test.frames[i][0]
        outputs["real"].append(test.frames[i].numpy()[None])
        with torch.no_grad():
            recon = talker.decode_latents(encode_frames(talker.face.face_encoder, test.frames[i][None], desc=None)[0])
        outputs["real_autoencoder"].append(to_uint8(recon)[None])
        frames, poses = draws(wave, photo)
        outputs["dae_photo"].append(frames)
        sampled_pose.append(torch.stack(poses).numpy())
        head_pose.append(talker.predicted_pose(wave, n_frames).numpy())
        one = {"n_frames": n_frames, "seed": p.seed}
        outputs["dae_first_frame"].append(to_uint8(talker.speak(wave, first, **one)[0])[None])
        if p.inversion_row:
            outputs["dae_photo_inversion"].append(to_uint8(talker.speak(wave, photo, code="inversion", **one)[0])[None])
        outputs["dae_scldm"].append(to_uint8(talker.speak(wave, scldm_faces[i], **one)[0])[None])
        outputs["regression"].append(to_uint8(talker.speak(wave, photo, method="regression", **one)[0])[None])
        outputs["still"].append(to_uint8(talker.speak(wave, photo, method="still", **one)[0])[None])
        given["photo"].append(outputs["still"][-1][0, 0])
        given["scldm"].append(to_uint8(talker.speak(wave, scldm_faces[i], method="still", n_frames=1)[0])[0])
        given["first_frame"].append(to_uint8(talker.speak(wave, first, method="still", n_frames=1)[0])[0])

    truth_opening = test.tracks["opening"].numpy()
    truth_pose = test.pose.numpy()
    boot = ClusterBootstrap(test.speakers, p.bootstrap_resamples, p.seed)
    real_features = judges.identity_features(to_unit(torch.from_numpy(np.concatenate([c[0] for c in outputs["real"]]))))
    given_features = {k: judges.identity_features(to_unit(torch.from_numpy(np.stack(v)))) for k, v in given.items()}
    face_of = {"dae_scldm": "scldm", "dae_first_frame": "first_frame"}  # every other row was given the portrait
    table: dict[str, dict] = {}
    readings: dict[str, np.ndarray] = {}  # row -> the first draw's probe readings [clips, T, 4]
    sync_of: dict[str, np.ndarray] = {}  # per-clip lip sync and opening error of each row (mean over its draws),
    error_of: dict[str, np.ndarray] = {}  # for the paired differences
    for key, clips in outputs.items():
        n_draws = clips[0].shape[0]
        flat = np.concatenate([c.reshape(-1, *c.shape[2:]) for c in clips])  # clip-major, then draw, then frame
        images = to_unit(torch.from_numpy(flat))
        read = probe_read(probe, images).reshape(n_clips, n_draws, n_frames, 4)
        readings[key] = read[:, 0]
        features = judges.identity_features(images).reshape(n_clips, n_draws, n_frames, -1)
        face = given_features[face_of.get(key, "photo")]

        def per_clip(measure) -> np.ndarray:  # a clip's value: the mean over its draws
            return np.array([np.mean([measure(i, d) for d in range(n_draws)]) for i in range(n_clips)])

        sync = per_clip(lambda i, d: correlation(read[i, d, :, 0], truth_opening[i]))
        drift = per_clip(lambda i, d: identity_drift(features[i, d]))
        to_face = per_clip(lambda i, d: distance_to_face(features[i, d], face[i]))
        pose_r = np.stack(
            [per_clip(lambda i, d, a=a: correlation(read[i, d, :, 1 + a], truth_pose[i, :, a])) for a in range(3)], 1
        )
        read_std = np.stack([per_clip(lambda i, d, a=a: read[i, d, :, 1 + a].std()) for a in range(3)], 1)
        # How far the mouth moves, not only when: the read opening's spread over the true one's (1: as much
        # as the phones ask), and the mean absolute error of the read opening (0.0-1.0 scale).
        gain = per_clip(lambda i, d: read[i, d, :, 0].std() / max(truth_opening[i].std(), 1e-6))
        error = per_clip(lambda i, d: np.abs(read[i, d, :, 0] - truth_opening[i]).mean())
        sync_of[key], error_of[key] = sync, error
        row = {
            "draws": n_draws,
            "lipsync": round(float(sync.mean()), 4),
            "lipsync_ci": _ci(boot, sync),
            "opening_gain": round(float(gain.mean()), 3),
            "opening_mae": round(float(error.mean()), 4),
            "opening_mae_ci": _ci(boot, error),
            "identity_drift": round(float(drift.mean()), 4),
            "identity_drift_ci": _ci(boot, drift),
            "between_speakers": round(between_speakers(features.mean((1, 2))), 4),
            "distance_to_face": round(float(to_face.mean()), 4),
            "distance_to_face_ci": _ci(boot, to_face),
            "frechet": round(frechet_distance(features.reshape(-1, features.shape[-1]), real_features), 3),
            "pose_read_r": {a: round(float(pose_r[:, k].mean()), 3) for k, a in enumerate(POSE_TRACKS)},
            "pose_read_std_deg": {a: round(float(read_std[:, k].mean()), 3) for k, a in enumerate(POSE_TRACKS)},
            "lipsync_per_clip": {s: round(float(v), 3) for s, v in zip(test.speakers, sync)},
        }
        if n_draws > 1:  # how much one code's mean lip sync moves: what choosing a code could have shown
            by_code = [
                np.mean([correlation(read[i, d, :, 0], truth_opening[i]) for i in range(n_clips)]) for d in codes
            ]
            row["lipsync_by_code"] = [round(float(v), 4) for v in by_code]
        table[key] = row
    pose = pose_table(truth_pose, np.stack(head_pose), np.stack(sampled_pose))

    def paired(a: np.ndarray, b: np.ndarray) -> dict:  # mean of a - b over clips, with its cluster-bootstrap interval
        return {
            k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
            for k, v in boot.paired_difference(a, b).items()
        }

    beard = np.array(bearded(root, test.speakers))
    by_beard = {
        key: {
            "bearded": round(float(sync_of[key][beard].mean()), 4) if beard.any() else None,
            "beardless": round(float(sync_of[key][~beard].mean()), 4) if (~beard).any() else None,
        }
        for key in ("real", "real_autoencoder", "dae_photo", "dae_first_frame", "regression")
    }
    metrics = {
        "n_clips": n_clips,
        "bearded_clips": [s for s, b in zip(test.speakers, beard) if b],
        "lipsync_by_beard": by_beard,
        "frames_per_clip": n_frames,
        "methods": table,
        "pose": pose,
        "noise_codes": len(codes),
        "dae_minus_regression_opening_mae": paired(error_of["dae_photo"], error_of["regression"]),
        "dae_minus_regression_lipsync": paired(sync_of["dae_photo"], sync_of["regression"]),
    }
    if p.inversion_row:
        metrics["noise_minus_inverted_code_lipsync"] = paired(sync_of["dae_photo"], sync_of["dae_photo_inversion"])
    write_json(root / METRICS, metrics)

    # Pictures: a side-by-side video of the first test clip with its voice, and a frame strip.
    shown = ["real", "dae_first_frame", "dae_photo", "dae_scldm", "regression"]
    write_mp4(
        root / SAMPLE_VIDEO,
        side_by_side([outputs[k][0][0] for k in shown]),
        test.waves[0].numpy(),
        params.data.sample_rate,
        talker.cfg.fps,
    )
    names = {**CEILINGS, **METHODS}
    frame_strip(
        {names[k]: outputs[k][0][0] for k in ("real", "real_autoencoder", *rows)},
        truth_opening[0],
        {names[k]: readings[k][0, :, 0] for k in ("real", "dae_first_frame", "dae_photo", "regression")},
        root / STRIP,
        p.strip_frames,
        2 * talker.cfg.fps,
        f"{test.speakers[0]} ({test.genders[0]}, {test.ages[0]}): the first 2 s of a test clip; "
        f"sample video: {SAMPLE_VIDEO.name} (real | DAE first frame | DAE photo | DAE SCLDM face | regression)",
    )
    shown_rows = ("real", "real_autoencoder", "dae_first_frame", "dae_photo", "regression")
    strip_of = int(np.flatnonzero(beard)[0]) if beard.any() else 0  # the first bearded test speaker
    frame_strip(
        {names[k]: outputs[k][strip_of][0] for k in shown_rows},
        truth_opening[strip_of],
        {names[k]: readings[k][strip_of, :, 0] for k in ("real_autoencoder", "dae_first_frame", "dae_photo")},
        root / BEARDED_STRIP,
        p.strip_frames,
        2 * talker.cfg.fps,
        f"{test.speakers[strip_of]} ({test.genders[strip_of]}, {test.ages[strip_of]}"
        + (", bearded" if beard.any() else ", no bearded test speaker: the first clip")
        + "): is the mouth visible and moving?",
    )
    metric_bars({names[k]: v for k, v in table.items()}, root / BARS)
    write_text(root / REPORT, report(metrics, names))
    return {
        "lipsync_dae": table["dae_photo"]["lipsync"],
        "lipsync_regression": table["regression"]["lipsync"],
        "identity_drift_dae": table["dae_photo"]["identity_drift"],
        "between_speakers_dae": table["dae_photo"]["between_speakers"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def report(metrics: dict, names: dict[str, str]) -> str:
    t = metrics["methods"]
    n_codes = metrics["noise_codes"]
    lines = [
        f"# Talking face on {metrics['n_clips']} test speakers ({metrics['frames_per_clip']} frames each)",
        "",
        f"Rows marked x{n_codes} are the mean over {n_codes} shared noise codes (seeds 0-{n_codes - 1}), each with its "
        "own sampled head drift: never one chosen code.",
        "",
        "| | draws | lip sync r [95% CI] | opening gain | opening MAE [95% CI] | identity drift [95% CI] "
        "| between speakers | distance to the face [95% CI] | Fréchet vs real | pose read r (yaw/pitch/roll) "
        "| pose read spread, deg (yaw/pitch/roll) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in t.items():
        pr, ps = row["pose_read_r"], row["pose_read_std_deg"]
        lines.append(
            f"| {names[key]} | x{row['draws']} | "
            f"{row['lipsync']:.3f} [{row['lipsync_ci'][0]:.3f}, {row['lipsync_ci'][1]:.3f}] | "
            f"{row['opening_gain']:.2f} | "
            f"{row['opening_mae']:.3f} [{row['opening_mae_ci'][0]:.3f}, {row['opening_mae_ci'][1]:.3f}] | "
            f"{row['identity_drift']:.4f} [{row['identity_drift_ci'][0]:.4f}, {row['identity_drift_ci'][1]:.4f}] | "
            f"{row['between_speakers']:.4f} | "
            f"{row['distance_to_face']:.4f} "
            f"[{row['distance_to_face_ci'][0]:.4f}, {row['distance_to_face_ci'][1]:.4f}] | "
            f"{row['frechet']:.2f} | "
            f"{pr['yaw']:.2f} / {pr['pitch']:.2f} / {pr['roll']:.2f} | "
            f"{ps['yaw']:.2f} / {ps['pitch']:.2f} / {ps['roll']:.2f} |"
        )
    pose = metrics["pose"]
    d = metrics["dae_minus_regression_lipsync"]
    m = metrics["dae_minus_regression_opening_mae"]
    c = metrics.get("noise_minus_inverted_code_lipsync")
    by_code = t["dae_photo"].get("lipsync_by_code")
    lines += [
        "",
        f"DAE-Talker (photo, x{t['dae_photo']['draws']}) minus regression, lip sync: {d['diff']:+.3f} "
        f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]; opening MAE: {m['diff']:+.4f} [{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}] "
        "(negative: the DAE is closer).",
    ]
    if c:
        lines += [
            "",
            f"Shared Gaussian codes minus inverted code, lip sync: {c['diff']:+.3f} "
            f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}].",
        ]
    beard_rows = metrics.get("lipsync_by_beard", {})
    if metrics.get("bearded_clips"):
        lines += [
            "",
            f"Lip sync on the {len(metrics['bearded_clips'])} bearded test speakers (a beard is where an autoencoder "
            "loses the mouth first) against the others: "
            + "; ".join(
                f"{names[k]} {v['bearded']:.3f} vs {v['beardless']:.3f}"
                for k, v in beard_rows.items()
                if v["bearded"] is not None and v["beardless"] is not None
            )
            + " (frame_strip_bearded.png).",
        ]
    if by_code:
        lines += ["", "DAE-Talker (photo), mean lip sync of each noise code: " + ", ".join(f"{v:.3f}" for v in by_code)]
    lines += [
        "",
        "The head's pose against the truth (degrees; spreads within a clip). 'Pose head': its prediction from the "
        "voice (the mean); 'sampled': what the talker uses, the mean plus a drift sampled with the spread and "
        "correlation time of the pose head's residual on the training clips (the part speech does not predict).",
        "",
        "| | yaw | pitch | roll |",
        "|---|---|---|---|",
    ]
    for label, key in [
        ("true spread", "true_std_deg"),
        ("pose head spread", "predicted_std_deg"),
        ("pose head r", "predicted_r"),
        ("pose head MAE", "predicted_mae_deg"),
        ("sampled spread", "sampled_std_deg"),
        ("sampled spread / true", "sampled_std_ratio"),
        ("sampled r", "sampled_r"),
        ("sampled MAE", "sampled_mae_deg"),
    ]:
        lines.append(f"| {label} | " + " | ".join(f"{pose[key][a]:.2f}" for a in POSE_TRACKS) + " |")
    lines += [
        "",
        "Lip sync: Pearson's r per clip between the mouth opening the probe reads off the frames and the "
        "phones' true opening. Opening gain: the read opening's spread over the true one's, per clip (1: the "
        "mouth moves as much as the phones ask). Opening MAE: mean absolute error of the read opening (0-1). "
        "Identity drift: cosine distance of judge identity features from the clip's first "
        "frame; 'between speakers': the same distance between different test speakers' mean features; "
        "'distance to the face': the same distance from the face the clip was given (the portrait, the clip's "
        "first frame, or SCLDM's face for that row), as the autoencoder shows it. Fréchet: judge features of "
        "every frame against the real test frames; the portrait is not a frame of the clip (a still portrait "
        "scores as far as the rows that animate it), so the first-frame row is the talker's own realism. "
        "Pose read spread: the head pose the probe reads off the frames, its spread within a clip.",
    ]
    return "\n".join(lines) + "\n"
