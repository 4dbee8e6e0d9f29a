"""VoxSynth talking videos: the speaker's face moving with the speaker's synthesised voice.

The voice synthesiser knows which phone is spoken when, so the mouth follows it:
each phone has an articulatory target (jaw opening, lip rounding; bilabials close the
lips), frames sample the targets at 25 fps, and a short smoothing window stands in for
coarticulation. The head moves slowly on its own (yaw, roll) and nods with the speech
(pitch follows how much is being said); the eyes blink every few seconds. Every track
is the per-frame ground truth that the talker's evaluation reads.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.ndimage import gaussian_filter1d

from sclmd.data.voxsynth.attributes import SpeakerAttributes
from sclmd.data.voxsynth.face import Motion, render_face
from sclmd.data.voxsynth.voice import synthesize_with_phones

TRACKS = ("opening", "rounding", "blink", "yaw", "pitch", "roll")
POSE = ("yaw", "pitch", "roll")

# (jaw opening 0..1, lip rounding 0..1) per phone; open vowels open the jaw most
# (they have the highest F1), back rounded vowels and /w/ round the lips, bilabials close them.
_VOWEL_TARGETS = {
    "i": (0.25, 0.0),
    "ɪ": (0.35, 0.0),
    "ɛ": (0.55, 0.0),
    "æ": (0.8, 0.0),
    "ɑ": (0.95, 0.1),
    "ɔ": (0.75, 0.6),
    "ʊ": (0.35, 0.6),
    "u": (0.2, 0.95),
    "ʌ": (0.7, 0.0),
    "ɝ": (0.4, 0.35),
    "ə": (0.4, 0.0),
}
_CONSONANT_TARGETS = {
    "p": (0.0, 0.0),
    "b": (0.0, 0.0),
    "m": (0.0, 0.0),
    "p+": (0.12, 0.0),
    "b+": (0.12, 0.0),
    "f": (0.06, 0.0),
    "v": (0.06, 0.0),
    "θ": (0.15, 0.0),
    "s": (0.1, 0.0),
    "z": (0.1, 0.0),
    "ʃ": (0.12, 0.6),
    "ʒ": (0.12, 0.6),
    "t": (0.18, 0.0),
    "d": (0.18, 0.0),
    "n": (0.18, 0.0),
    "k": (0.22, 0.0),
    "g": (0.22, 0.0),
    "ŋ": (0.22, 0.0),
    "t+": (0.22, 0.0),
    "d+": (0.22, 0.0),
    "k+": (0.25, 0.0),
    "g+": (0.25, 0.0),
    "l": (0.3, 0.0),
    "r": (0.25, 0.35),
    "w": (0.1, 0.9),
    "j": (0.2, 0.0),
    "h": (0.4, 0.0),
    "": (0.0, 0.0),
}
PHONE_TARGETS = {**_VOWEL_TARGETS, **_CONSONANT_TARGETS}
_COARTICULATION_S = 0.025  # sigma of the smoothing: lips cannot jump between targets within a frame


def mouth_tracks(timeline: list[tuple[float, float, str]], n_frames: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (opening, rounding) of a phone timeline, sampled at 4x the frame rate and smoothed."""
    oversample = 4
    t = (np.arange(n_frames * oversample) + 0.5) / (fps * oversample)
    starts = np.array([s for s, _, _ in timeline])
    targets = np.array([PHONE_TARGETS.get(p, (0.2, 0.0)) for _, _, p in timeline])
    which = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(timeline) - 1)
    past_end = t >= timeline[-1][1]
    fine = np.where(past_end[:, None], 0.0, targets[which])
    fine = gaussian_filter1d(fine, _COARTICULATION_S * fps * oversample, axis=0, mode="nearest")
    frames = fine.reshape(n_frames, oversample, 2).mean(axis=1)
    return frames[:, 0].clip(0, 1), frames[:, 1].clip(0, 1)


def _slow_noise(rng: np.random.Generator, n: int, fps: int, seconds: float) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation with a correlation time of about `seconds`.

    Scaled by the filter's own gain (white noise through a Gaussian of width sigma has standard
    deviation (2 sqrt(pi) sigma)^-1/2), not by the clip's sample spread: a clip shorter than the
    correlation time would otherwise turn a slow drift into a large offset.
    """
    sigma = seconds * fps
    pad = int(3 * sigma)
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma)[pad : pad + n]
    return x * np.sqrt(2.0 * np.sqrt(np.pi) * sigma)


def head_and_eyes(rng: np.random.Generator, opening: np.ndarray, fps: int) -> dict[str, np.ndarray]:
    """Yaw, pitch and roll (degrees) and blinks (0..1) per frame.

    Yaw and roll drift slowly; pitch nods down with the speech (how open the mouth has been
    over the last ~half second) on top of its own drift, so part of the pose is predictable
    from the voice, as it is in people.
    """
    n = len(opening)
    activity = gaussian_filter1d(opening, 0.25 * fps, mode="nearest")
    yaw = float(rng.uniform(4.0, 9.0)) * _slow_noise(rng, n, fps, 1.2)
    pitch = 2.0 * _slow_noise(rng, n, fps, 1.0) + 14.0 * (activity - activity.mean())
    roll = float(rng.uniform(1.5, 4.0)) * _slow_noise(rng, n, fps, 1.5)
    blink = np.zeros(n)
    t = float(rng.uniform(0.3, 2.0))
    while t * fps < n:  # a blink closes over ~60 ms and opens over ~100 ms
        centre = t * fps
        k = np.arange(n)
        shape = np.where(k < centre, np.exp(-0.5 * ((k - centre) / 0.8) ** 2), np.exp(-0.5 * ((k - centre) / 1.4) ** 2))
        blink = np.maximum(blink, shape)
        t += float(rng.uniform(2.0, 5.0))
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "blink": blink.clip(0, 1)}


def talking_video(
    attrs: SpeakerAttributes,
    voice_rng: np.random.Generator,
    scene_rng: np.random.Generator,
    motion_rng: np.random.Generator,
    *,
    seconds: float,
    sample_rate: int,
    fps: int,
    size: int,
    supersample: int,
    framing: float,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[tuple[float, float, str]]]:
    """(frames uint8 [T, size, size, 3], audio float32, per-frame tracks, phone timeline) of one clip."""
    audio, timeline = synthesize_with_phones(attrs, voice_rng, sample_rate, seconds)
    n_frames = int(round(seconds * fps))
    opening, rounding = mouth_tracks(timeline, n_frames, fps)
    tracks = {"opening": opening, "rounding": rounding, **head_and_eyes(motion_rng, opening, fps)}
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for k in range(n_frames):
        motion = Motion(**{name: float(tracks[name][k]) for name in TRACKS})
        # One scene (background, light, clothes, framing) for the whole clip: every frame
        # starts from the same generator state.
        frames[k] = np.asarray(render_face(attrs, copy.deepcopy(scene_rng), size, supersample, framing, motion))
    return frames, audio, {k: v.astype(np.float32) for k, v in tracks.items()}, timeline
