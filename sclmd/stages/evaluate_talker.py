"""Stage `evaluate_talker`: the talking face on the test speakers, against two references.

Reads `data` and `evaluate_talker`. For each test speaker's clip, the voice drives:

- `DAE-Talker (photo)`: the talker animating the speaker's VoxSynth portrait (a face image
  it never saw: a test speaker, and not a video frame), every frame decoded from one shared
  Gaussian code;
- `DAE-Talker (photo, inverted code)`: the same, from the portrait's DDIM inversion instead
  (the ablation of that choice);
- `DAE-Talker (SCLDM face)`: the talker animating the face SCLDM drew from the same voice
  (what `sclmd talk VOICE` does with no --face);
- `regression`: the regression reference (speech + reference -> latent in one pass, no diffusion);
- `still`: the portrait, unmoving (lip sync 0 by construction).

`real` (the clip's own frames) and `real via autoencoder` (those frames through the face
autoencoder every generated frame passes through) are the ceilings.

Lip sync: per clip, Pearson's r between the mouth opening the probe reads and the true
opening of the phones; identity drift: judge identity features' cosine distance from a
clip's first frame, beside the same distance between different test speakers, and from the
face it was given (the portrait or SCLDM's face through the autoencoder); realism:
Fréchet distance of judge features against the real test frames; pose: the pose head's
and the generated frames' pose against the truth. Writes `reports/talker/` (metrics,
report, a side-by-side sample video with the voice, a frame strip, bars).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

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
BARS = REPORT_DIR / "metrics.png"
PARAM_SECTIONS = ("data", "evaluate_talker")
ARTIFACTS = (METRICS, REPORT, SAMPLE_VIDEO, STRIP, BARS)
METHODS = {
    "dae_photo": "DAE-Talker (photo)",
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
    scldm_faces = _scldm_faces(root, test.waves, p.seed)
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in (*CEILINGS, *METHODS)}
    predicted_pose = []
    given = {"photo": [], "scldm": []}  # the face each clip animates, as the autoencoder shows it (uint8 [H, W, 3])
    for i in range(n_clips):
        wave, photo = test.waves[i], portrait(root, test.speakers[i])
        outputs["real"].append(test.frames[i].numpy())
        with torch.no_grad():
            recon = talker.decode_latents(encode_frames(talker.face.face_encoder, test.frames[i][None], desc=None)[0])
        outputs["real_autoencoder"].append(to_uint8(recon))
        frames_dae, pose = talker.speak(wave, photo, n_frames=n_frames)
        outputs["dae_photo"].append(to_uint8(frames_dae))
        predicted_pose.append(pose.numpy())
        outputs["dae_photo_inversion"].append(
            to_uint8(talker.speak(wave, photo, n_frames=n_frames, code="inversion")[0])
        )
        outputs["dae_scldm"].append(to_uint8(talker.speak(wave, scldm_faces[i], n_frames=n_frames)[0]))
        outputs["regression"].append(to_uint8(talker.speak(wave, photo, method="regression", n_frames=n_frames)[0]))
        outputs["still"].append(to_uint8(talker.speak(wave, photo, method="still", n_frames=n_frames)[0]))
        given["photo"].append(outputs["still"][-1][0])
        given["scldm"].append(to_uint8(talker.speak(wave, scldm_faces[i], method="still", n_frames=1)[0])[0])
        print(f"evaluate_talker: clip {i + 1}/{n_clips} ({test.speakers[i]}) generated", flush=True)

    truth_opening = test.tracks["opening"].numpy()
    truth_pose = test.pose.numpy()
    boot = ClusterBootstrap(test.speakers, p.bootstrap_resamples, p.seed)
    real_features = judges(to_unit(torch.from_numpy(np.concatenate(outputs["real"])))).features
    given_features = {k: judges(to_unit(torch.from_numpy(np.stack(v)))).features for k, v in given.items()}
    table: dict[str, dict] = {}
    readings: dict[str, np.ndarray] = {}
    sync_of: dict[str, np.ndarray] = {}  # per-clip lip sync and opening error of each row, for the paired differences
    error_of: dict[str, np.ndarray] = {}
    for key, clips in outputs.items():
        flat = np.concatenate(clips)
        images = to_unit(torch.from_numpy(flat))
        read = probe_read(probe, images).reshape(n_clips, n_frames, 4)
        readings[key] = read
        features = judges(images).features.reshape(n_clips, n_frames, -1)
        sync = np.array([correlation(read[i, :, 0], truth_opening[i]) for i in range(n_clips)])
        drift = np.array([identity_drift(features[i]) for i in range(n_clips)])
        face = given_features["scldm" if key == "dae_scldm" else "photo"]
        to_face = np.array([distance_to_face(features[i], face[i]) for i in range(n_clips)])
        pose_r = np.array(
            [[correlation(read[i, :, 1 + a], truth_pose[i, :, a]) for a in range(3)] for i in range(n_clips)]
        )
        # How far the mouth moves, not only when: the read opening's spread over the true one's (1: as much
        # as the phones ask), and the mean absolute error of the read opening (0.0-1.0 scale).
        gain = np.array([read[i, :, 0].std() / max(truth_opening[i].std(), 1e-6) for i in range(n_clips)])
        error = np.abs(read[..., 0] - truth_opening).mean(1)
        sync_of[key], error_of[key] = sync, error
        row = {
            "lipsync": round(float(sync.mean()), 4),
            "lipsync_ci": _ci(boot, sync),
            "opening_gain": round(float(gain.mean()), 3),
            "opening_mae": round(float(error.mean()), 4),
            "opening_mae_ci": _ci(boot, error),
            "identity_drift": round(float(drift.mean()), 4),
            "identity_drift_ci": _ci(boot, drift),
            "between_speakers": round(between_speakers(features.mean(1)), 4),
            "distance_to_face": round(float(to_face.mean()), 4),
            "distance_to_face_ci": _ci(boot, to_face),
            "frechet": round(frechet_distance(features.reshape(-1, features.shape[-1]), real_features), 3),
            "pose_read_r": {a: round(float(pose_r[:, k].mean()), 3) for k, a in enumerate(POSE_TRACKS)},
            "lipsync_per_clip": {s: round(float(v), 3) for s, v in zip(test.speakers, sync)},
        }
        table[key] = row
    predicted = np.stack(predicted_pose)
    pose = {
        "true_std_deg": {a: round(float(truth_pose[..., k].std(1).mean()), 3) for k, a in enumerate(POSE_TRACKS)},
        "predicted_std_deg": {a: round(float(predicted[..., k].std(1).mean()), 3) for k, a in enumerate(POSE_TRACKS)},
        "predicted_r": {
            a: round(float(np.mean([correlation(predicted[i, :, k], truth_pose[i, :, k]) for i in range(n_clips)])), 3)
            for k, a in enumerate(POSE_TRACKS)
        },
        "predicted_mae_deg": {
            a: round(float(np.abs(predicted[..., k] - truth_pose[..., k]).mean()), 3) for k, a in enumerate(POSE_TRACKS)
        },
    }

    def paired(a: np.ndarray, b: np.ndarray) -> dict:  # mean of a - b over clips, with its cluster-bootstrap interval
        return {
            k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
            for k, v in boot.paired_difference(a, b).items()
        }

    metrics = {
        "n_clips": n_clips,
        "frames_per_clip": n_frames,
        "methods": table,
        "pose": pose,
        "dae_minus_regression_opening_mae": paired(error_of["dae_photo"], error_of["regression"]),
        "dae_minus_regression_lipsync": paired(sync_of["dae_photo"], sync_of["regression"]),
        "noise_minus_inverted_code_lipsync": paired(sync_of["dae_photo"], sync_of["dae_photo_inversion"]),
    }
    write_json(root / METRICS, metrics)

    # Pictures: a side-by-side video of the first test clip with its voice, and a frame strip.
    shown = ["real", "dae_photo", "dae_scldm", "regression"]
    write_mp4(
        root / SAMPLE_VIDEO,
        side_by_side([outputs[k][0] for k in shown]),
        test.waves[0].numpy(),
        params.data.sample_rate,
        talker.cfg.fps,
    )
    names = {**CEILINGS, **METHODS}
    frame_strip(
        {names[k]: outputs[k][0] for k in ("real", "real_autoencoder", *METHODS)},
        truth_opening[0],
        {names[k]: readings[k][0, :, 0] for k in ("real", "dae_photo", "dae_scldm", "regression")},
        root / STRIP,
        p.strip_frames,
        2 * talker.cfg.fps,
        f"{test.speakers[0]} ({test.genders[0]}, {test.ages[0]}): the first 2 s of a test clip; "
        f"sample video: {SAMPLE_VIDEO.name} (real | DAE photo | DAE SCLDM face | regression)",
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
    lines = [
        f"# Talking face on {metrics['n_clips']} test speakers ({metrics['frames_per_clip']} frames each)",
        "",
        "| | lip sync r [95% CI] | opening gain | opening MAE [95% CI] | identity drift [95% CI] | between speakers "
        "| distance to the face [95% CI] | Fréchet vs real | pose read r (yaw/pitch/roll) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in t.items():
        pr = row["pose_read_r"]
        lines.append(
            f"| {names[key]} | {row['lipsync']:.3f} [{row['lipsync_ci'][0]:.3f}, {row['lipsync_ci'][1]:.3f}] | "
            f"{row['opening_gain']:.2f} | "
            f"{row['opening_mae']:.3f} [{row['opening_mae_ci'][0]:.3f}, {row['opening_mae_ci'][1]:.3f}] | "
            f"{row['identity_drift']:.4f} [{row['identity_drift_ci'][0]:.4f}, {row['identity_drift_ci'][1]:.4f}] | "
            f"{row['between_speakers']:.4f} | "
            f"{row['distance_to_face']:.4f} "
            f"[{row['distance_to_face_ci'][0]:.4f}, {row['distance_to_face_ci'][1]:.4f}] | "
            f"{row['frechet']:.2f} | "
            f"{pr['yaw']:.2f} / {pr['pitch']:.2f} / {pr['roll']:.2f} |"
        )
    pose = metrics["pose"]
    d = metrics["dae_minus_regression_lipsync"]
    m = metrics["dae_minus_regression_opening_mae"]
    c = metrics["noise_minus_inverted_code_lipsync"]
    lines += [
        "",
        f"DAE-Talker (photo) minus regression, lip sync: {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]; "
        f"opening MAE: {m['diff']:+.4f} [{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}] (negative: the DAE is closer).",
        "",
        f"Shared Gaussian code minus inverted code, lip sync: {c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}].",
        "",
        "Pose head against the truth (degrees):",
        "",
        "| | yaw | pitch | roll |",
        "|---|---|---|---|",
    ]
    for label, key in [
        ("true std", "true_std_deg"),
        ("predicted std", "predicted_std_deg"),
        ("predicted r", "predicted_r"),
        ("predicted MAE", "predicted_mae_deg"),
    ]:
        lines.append(f"| {label} | " + " | ".join(f"{pose[key][a]:.2f}" for a in POSE_TRACKS) + " |")
    lines += [
        "",
        "Lip sync: Pearson's r per clip between the mouth opening the probe reads off the frames and the "
        "phones' true opening. Opening gain: the read opening's spread over the true one's, per clip (1: the "
        "mouth moves as much as the phones ask). Opening MAE: mean absolute error of the read opening (0-1). "
        "Identity drift: cosine distance of judge identity features from the clip's first "
        "frame; 'between speakers': the same distance between different test speakers' mean features; "
        "'distance to the face': the same distance from the face the clip was given (the portrait, or SCLDM's "
        "face for that row), as the autoencoder shows it.",
    ]
    return "\n".join(lines) + "\n"
