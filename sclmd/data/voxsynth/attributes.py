"""Hidden attributes of a VoxSynth speaker.

Three attributes are shared by voice and face (gender, age, size): they are what a
speech-to-face model can learn.  The rest are seen by only one modality, so a
perfect model still cannot recover them from the other; they make the task honest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

MIN_AGE = 18
MAX_AGE = 80

HAIR_COLOURS = ("black", "dark_brown", "brown", "light_brown", "blonde", "red", "auburn")
HAIR_STYLES = ("short", "crew", "side_part", "curly", "bob", "long", "bun")
EYE_COLOURS = ("dark_brown", "brown", "hazel", "green", "blue", "grey")

# Style preferences overlap between genders, as they do in real photos.
_HAIR_STYLE_PROBS = {
    "m": (0.30, 0.22, 0.22, 0.14, 0.02, 0.08, 0.02),
    "f": (0.05, 0.0, 0.05, 0.15, 0.25, 0.35, 0.15),
}


@dataclass(frozen=True)
class SpeakerAttributes:
    speaker_id: str
    # Shared by voice and face.
    gender: str  # "f" | "m"
    age: int  # years, MIN_AGE..MAX_AGE
    size: float  # head/body size within gender, ~N(0, 1): vocal tract length, face width
    # Voice only.
    speaking_rate: float  # multiplier on syllables per second, ~0.75..1.35
    pitch_offset: float  # semitones from the gender/age F0 norm
    pitch_range: float  # intonation excursion, semitones
    breathiness: float  # 0..1, aspiration noise before the age effect
    vocal_effort: float  # 0..1, lax (soft spectral tilt) .. pressed (bright)
    articulation: float  # 0..1, centralised .. crisp vowel targets
    # Face only.
    skin_tone: float  # 0 light .. 1 dark
    hair_colour: str  # one of HAIR_COLOURS
    hair_style: str  # one of HAIR_STYLES
    eye_colour: str  # one of EYE_COLOURS
    beard: bool
    glasses: bool
    greying_age: float  # age at which grey hair starts to show
    hair_loss: float  # 0..1, how far the hairline recedes by old age (0 for women)
    eye_spacing: float  # ~N(0, 1)
    nose_size: float  # ~N(0, 1)
    mouth_width: float  # ~N(0, 1)

    def as_row(self) -> dict[str, str | int | float | bool]:
        return asdict(self)


def csv_columns() -> list[str]:
    """speakers.csv column order: identity and shared factors first."""
    return [f.name for f in fields(SpeakerAttributes)]


def _balanced_genders(n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly n//2 of each gender; an odd speaker out gets a random gender."""
    genders = ["f"] * (n // 2) + ["m"] * (n // 2)
    if n % 2:
        genders.append(str(rng.choice(["f", "m"])))
    return rng.permutation(np.array(genders))


def _stratified_ages(count: int, rng: np.random.Generator) -> np.ndarray:
    """Ages that cover MIN_AGE..MAX_AGE evenly even for small groups (jittered strata)."""
    span = MAX_AGE - MIN_AGE + 1
    strata = (rng.permutation(count) + rng.random(count)) / count
    return MIN_AGE + np.floor(strata * span).astype(int)


def _choice(rng: np.random.Generator, options: tuple[str, ...], probs: np.ndarray) -> str:
    probs = np.asarray(probs, dtype=float)
    return options[int(rng.choice(len(options), p=probs / probs.sum()))]


def _hair_colour_probs(skin_tone: float) -> np.ndarray:
    """Darker skin goes with darker hair, but not deterministically."""
    light = np.array([0.06, 0.16, 0.22, 0.18, 0.22, 0.07, 0.09])
    dark = np.array([0.62, 0.30, 0.06, 0.01, 0.005, 0.0, 0.005])
    return (1 - skin_tone) * light + skin_tone * dark


def _eye_colour_probs(skin_tone: float) -> np.ndarray:
    light = np.array([0.08, 0.22, 0.17, 0.13, 0.30, 0.10])
    dark = np.array([0.70, 0.26, 0.03, 0.0, 0.01, 0.0])
    return (1 - skin_tone) * light + skin_tone * dark


def _sample_one(speaker_id: str, gender: str, age: int, rng: np.random.Generator) -> SpeakerAttributes:
    male = gender == "m"
    skin_tone = float(rng.beta(1.3, 1.6))
    # Rounded here so that speakers.csv holds exactly the values the generator used.
    return SpeakerAttributes(
        speaker_id=speaker_id,
        gender=gender,
        age=int(age),
        size=round(float(np.clip(rng.normal(), -3, 3)), 3),
        speaking_rate=round(float(np.exp(np.clip(rng.normal(0, 0.14), -0.3, 0.3))), 3),
        pitch_offset=round(float(np.clip(rng.normal(0, 1.8), -4.5, 4.5)), 3),
        pitch_range=round(float(rng.uniform(1.5, 5.0)), 3),
        breathiness=round(float(rng.beta(2, 5)), 3),
        vocal_effort=round(float(rng.uniform()), 3),
        articulation=round(float(rng.uniform()), 3),
        skin_tone=round(skin_tone, 3),
        hair_colour=_choice(rng, HAIR_COLOURS, _hair_colour_probs(skin_tone)),
        hair_style=_choice(rng, HAIR_STYLES, np.array(_HAIR_STYLE_PROBS[gender])),
        eye_colour=_choice(rng, EYE_COLOURS, _eye_colour_probs(skin_tone)),
        beard=bool(male and rng.random() < 0.3),
        glasses=bool(rng.random() < 0.12 + 0.3 * (age - MIN_AGE) / (MAX_AGE - MIN_AGE)),
        greying_age=round(float(rng.normal(45, 7)), 1),
        hair_loss=round(float(rng.beta(1.2, 1.5)) if male else 0.0, 3),
        eye_spacing=round(float(np.clip(rng.normal(), -2.5, 2.5)), 3),
        nose_size=round(float(np.clip(rng.normal(), -2.5, 2.5)), 3),
        mouth_width=round(float(np.clip(rng.normal(), -2.5, 2.5)), 3),
    )


def sample_speakers(n: int, seed: int) -> list[SpeakerAttributes]:
    """n speakers, exactly gender-balanced, ages spread over MIN_AGE..MAX_AGE per gender."""
    if n < 1:
        raise ValueError(f"need at least one speaker, got n={n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EA4E5]))
    genders = _balanced_genders(n, rng)
    ages = np.empty(n, dtype=int)
    for gender in ("f", "m"):
        where = np.flatnonzero(genders == gender)
        ages[where] = _stratified_ages(len(where), rng)
    return [_sample_one(f"vs{i:04d}", str(genders[i]), int(ages[i]), rng) for i in range(n)]
