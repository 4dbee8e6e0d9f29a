"""Source-filter speech synthesis driven by a speaker's hidden attributes.

The utterance is a random stream of syllables (onset consonants, a vowel, maybe a
coda) grouped into phrases separated by pauses.  Voiced sounds are a glottal pulse
train (Rosenberg flow derivative with an exponential return phase) with jitter,
shimmer, tremor and aspiration noise, filtered by a cascade of two-pole formant
resonators; fricatives and bursts are shaped noise.  Each segment is filtered on
its own and segments are joined with raised-cosine crossfades.

What the attributes do, as in real voices:
- gender, age, size, pitch_offset -> median F0 (overlapping male/female ranges);
- gender, size, age -> vocal-tract length -> formant scale;
- age -> jitter, shimmer, tremor, breathiness, slower speech;
- voice-only factors -> speaking rate, intonation range, breathiness, spectral tilt
  (vocal effort), vowel-space spread (articulation).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from sclmd.data.voxsynth.attributes import MAX_AGE, MIN_AGE, SpeakerAttributes

# Male reference formants F1-F3 (Hz), after Peterson & Barney (1952).
_VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (270, 2290, 3010),
    "ɪ": (390, 1990, 2550),
    "ɛ": (530, 1840, 2480),
    "æ": (660, 1720, 2410),
    "ɑ": (730, 1090, 2440),
    "ɔ": (570, 840, 2410),
    "ʊ": (440, 1020, 2240),
    "u": (300, 870, 2240),
    "ʌ": (640, 1190, 2390),
    "ɝ": (490, 1350, 1690),
}
_SCHWA = (500.0, 1500.0, 2500.0)
_UPPER_FORMANTS = (3300.0, 4200.0)  # F4, F5 for the male reference tract
_REFERENCE_TRACT_CM = 17.0

_APPROXIMANTS: dict[str, tuple[float, float, float]] = {
    "l": (360, 1300, 2700),
    "r": (420, 1300, 1600),
    "w": (300, 700, 2200),
    "j": (270, 2200, 3000),
}
# Nasal murmur: a strong low resonance and weak, broad upper ones.
_NASALS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "m": ((250, 1100, 2200), (70, 250, 350)),
    "n": ((250, 1500, 2500), (70, 250, 350)),
    "ŋ": ((250, 2000, 2700), (70, 250, 350)),
}
# Fricative noise bands (Hz, male reference) and RMS level relative to a vowel.
_FRICATIVES: dict[str, tuple[float, float, float]] = {
    "s": (3800, 7500, 0.30),
    "ʃ": (2000, 4800, 0.35),
    "f": (1200, 7000, 0.10),
    "θ": (1500, 7500, 0.08),
}
_VOICED_FRICATIVES = {"z": "s", "v": "f", "ʒ": "ʃ"}
# Burst noise bands by place of articulation.
_BURSTS: dict[str, tuple[float, float]] = {
    "p": (400, 2000),
    "t": (3000, 7000),
    "k": (1500, 3500),
}
_VOICED_PLOSIVES = {"b": "p", "d": "t", "g": "k"}

_ONSETS = (
    "p",
    "t",
    "k",
    "b",
    "d",
    "g",
    "m",
    "n",
    "s",
    "ʃ",
    "f",
    "v",
    "z",
    "θ",
    "h",
    "l",
    "r",
    "w",
    "j",
)
_ONSET_WEIGHTS = (6, 9, 7, 5, 7, 3, 6, 6, 8, 3, 4, 3, 2, 2, 4, 5, 5, 4, 2)
_CLUSTERS = (
    ("p", "l"),
    ("p", "r"),
    ("t", "r"),
    ("k", "l"),
    ("k", "r"),
    ("b", "l"),
    ("b", "r"),
    ("d", "r"),
    ("g", "r"),
    ("f", "l"),
    ("f", "r"),
    ("s", "p"),
    ("s", "t"),
    ("s", "k"),
)
_CODAS = ("t", "d", "k", "n", "m", "ŋ", "s", "z", "l", "r", "f")
_CODA_WEIGHTS = (8, 5, 4, 9, 5, 3, 7, 4, 4, 4, 2)
_VOWEL_NAMES = tuple(_VOWELS)

_PULSE_TABLE_SIZE = 4096
_FRAME_RATE = 200  # F0 contour control rate, Hz
_CROSSFADE_S = 0.012  # half-width of the default segment crossfade
_FILTER_WARMUP_S = 0.015  # filter run-in before a segment so its onset has no transient
_TARGET_DBFS = -20.0
_PEAK_LIMIT = 0.98


@dataclass(frozen=True)
class VoiceProfile:
    """Acoustic parameters of one speaker, derived deterministically from attributes."""

    median_f0: float  # Hz
    formant_scale: float  # formant frequencies relative to the male reference tract
    jitter: float  # relative s.d. of period length
    shimmer: float  # relative s.d. of pulse amplitude
    tremor_semitones: float  # depth of the ~5 Hz F0 tremor of old voices
    breath: float  # aspiration noise relative to the voiced pulse
    open_quotient: float  # share of the period the glottis is open
    return_phase: float  # closure smoothness (share of the period): larger = softer tilt
    syllables_per_s: float
    pitch_range: float  # semitones
    vowel_spread: float  # 1 = full vowel targets, lower = centralised


def _age_fraction(age: int) -> float:
    return (age - MIN_AGE) / (MAX_AGE - MIN_AGE)


def median_f0(attrs: SpeakerAttributes) -> float:
    """Habitual F0: women drop with age (~40 Hz by 80); men drop a little to middle age,
    then rise (~25 Hz above their minimum by 80), as in cross-sectional studies of ageing voices."""
    age = attrs.age
    if attrs.gender == "f":
        base = 208.0 - 0.8 * max(age - 30, 0)
    else:
        base = 122.0 - 0.3 * (min(max(age, 25), 55) - 25) + 1.0 * max(age - 55, 0)
    semitones = attrs.pitch_offset - 0.6 * attrs.size
    return base * 2.0 ** (semitones / 12.0)


def vocal_tract_cm(attrs: SpeakerAttributes) -> float:
    base = 17.0 if attrs.gender == "m" else 14.8
    # The larynx descends with age: about 1 cm longer by 80, so formants fall ~6 %.
    return base + 0.6 * attrs.size + 0.02 * max(attrs.age - 30, 0)


def voice_profile(attrs: SpeakerAttributes) -> VoiceProfile:
    old = _age_fraction(attrs.age)
    breath = 0.04 + 0.3 * attrs.breathiness + 0.4 * old + (0.06 if attrs.gender == "f" else 0.0)
    return VoiceProfile(
        median_f0=median_f0(attrs),
        formant_scale=_REFERENCE_TRACT_CM / vocal_tract_cm(attrs),
        jitter=0.004 + 0.016 * old**1.5,
        shimmer=0.03 + 0.10 * old**1.5,
        tremor_semitones=0.7 * max(attrs.age - 58, 0) / (MAX_AGE - 58),
        breath=breath,
        open_quotient=0.72 - 0.25 * attrs.vocal_effort,
        return_phase=0.035 - 0.028 * attrs.vocal_effort,
        syllables_per_s=4.6 * attrs.speaking_rate * (1.0 - 0.25 * old),
        pitch_range=attrs.pitch_range,
        vowel_spread=0.6 + 0.4 * attrs.articulation,
    )


Filter = tuple[np.ndarray, np.ndarray]  # (b, a) polynomials


@dataclass
class _Component:
    """One filtered source inside a segment, scaled to an RMS level relative to a vowel."""

    source: str  # "voice" (glottal pulses + aspiration) | "noise" (white)
    filter: Filter
    level: float


@dataclass
class _Segment:
    duration: float  # seconds
    components: list[_Component] = field(default_factory=list)
    onset_crossfade: float = _CROSSFADE_S  # half-width of the crossfade into this segment
    phone: str = ""  # what the mouth is doing (see synthesize_with_phones): "" is a pause


@dataclass
class _Phrase:
    start: float
    end: float
    accents: list[tuple[float, float]]  # (time, height in semitones)
    final_vowel_time: float
    final_rise: bool


def _weighted_choice(rng: np.random.Generator, options: tuple[str, ...], weights: tuple[int, ...]) -> str:
    # Cheaper than rng.choice(p=...), which validates and normalises p on every call.
    return options[bisect.bisect(list(itertools.accumulate(weights)), rng.random() * sum(weights))]


def _resonators(freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int) -> Filter:
    """Cascade of two-pole resonators with unit DC gain (Klatt-style), as one (b, a) filter.

    Direct form is accurate enough for five formants at speech rates, and scipy's
    lfilter has a much smaller per-call overhead than sosfilt; an utterance makes
    about a hundred filter calls.
    """
    keep = freqs < 0.45 * sample_rate
    radius = np.exp(-np.pi * bandwidths[keep] / sample_rate)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * freqs[keep] / sample_rate)
    a2 = radius**2
    denominator = np.ones(1)
    for c1, c2 in zip(a1, a2, strict=True):
        denominator = np.convolve(denominator, [1.0, c1, c2])
    return np.array([np.prod(1.0 + a1 + a2)]), denominator


def _biquad(kind: str, cutoff: float, sample_rate: int) -> Filter:
    """One Butterworth-Q (12 dB/octave) low- or high-pass section (RBJ cookbook formulas).

    Written out because scipy's filter design costs ~1 ms a call, and an utterance
    designs dozens of noise bands.
    """
    w0 = 2.0 * np.pi * cutoff / sample_rate
    alpha = np.sin(w0) / np.sqrt(2.0)
    cos_w0 = np.cos(w0)
    if kind == "lowpass":
        b = np.array([(1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2])
    else:
        b = np.array([(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2])
    a = np.array([1 + alpha, -2 * cos_w0, 1 - alpha])
    return b / a[0], a / a[0]


def _band(low: float, high: float, sample_rate: int) -> Filter:
    nyquist = 0.5 * sample_rate
    high = min(high, 0.92 * nyquist)
    low = min(low, 0.8 * high)
    (b_high, a_high), (b_low, a_low) = (
        _biquad("highpass", low, sample_rate),
        _biquad("lowpass", high, sample_rate),
    )
    return np.convolve(b_high, b_low), np.convolve(a_high, a_low)


class _Planner:
    """Draws the phone sequence of one utterance and turns it into segments."""

    def __init__(self, profile: VoiceProfile, rng: np.random.Generator, sample_rate: int):
        self.profile = profile
        self.rng = rng
        self.sample_rate = sample_rate
        # Average syllable at rate 1 lasts ~0.22 s; scale every duration to the speaker's rate.
        self.time_scale = 4.6 / profile.syllables_per_s
        self.segments: list[_Segment] = []
        self.phrases: list[_Phrase] = []
        self.elapsed = 0.0

    def _duration(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high)) * self.time_scale

    def _add(self, segment: _Segment) -> None:
        self.segments.append(segment)
        self.elapsed += segment.duration

    def _vowel_formants(self, name: str | None) -> np.ndarray:
        p = self.profile
        targets = np.array(_VOWELS[name] if name else _SCHWA, dtype=float)
        spread = p.vowel_spread if name else 1.0
        targets = np.array(_SCHWA) + spread * (targets - np.array(_SCHWA))
        targets *= 1.0 + self.rng.normal(0, 0.04, 3)  # token-to-token variation
        return np.concatenate([targets, _UPPER_FORMANTS]) * p.formant_scale

    def _vowel_filter(self, formants: np.ndarray) -> Filter:
        bandwidths = np.array([60.0 + 60.0 * self.profile.breath, 90.0, 130.0, 200.0, 260.0])
        return _resonators(formants, bandwidths, self.sample_rate)

    def _noise_band(self, low: float, high: float) -> Filter:
        # Smaller tracts have smaller front cavities: fricative spectra rise with them too.
        scale = self.profile.formant_scale * (1.0 + self.rng.normal(0, 0.04))
        return _band(low * scale, high * scale, self.sample_rate)

    def _voice_bar(self) -> Filter:
        """Low murmur of voicing through closed lips or a constriction."""
        return _resonators(np.array([200.0]), np.array([90.0]), self.sample_rate)

    def _consonant(self, phone: str, vowel_filter: Filter) -> None:
        """Adds one consonant; `vowel_filter` (of the syllable's vowel) shapes h and aspiration."""
        if phone in _APPROXIMANTS:
            formants = np.concatenate([_APPROXIMANTS[phone], _UPPER_FORMANTS]) * self.profile.formant_scale
            approximant = self._vowel_filter(formants)
            self._add(_Segment(self._duration(0.04, 0.07), [_Component("voice", approximant, 0.45)], 0.02, phone))
        elif phone in _NASALS:
            freqs, bws = _NASALS[phone]
            murmur = _resonators(np.array(freqs) * self.profile.formant_scale, np.array(bws, float), self.sample_rate)
            self._add(_Segment(self._duration(0.05, 0.08), [_Component("voice", murmur, 0.3)], 0.015, phone))
        elif phone in _FRICATIVES or phone in _VOICED_FRICATIVES:
            voiced = phone in _VOICED_FRICATIVES
            low, high, level = _FRICATIVES[_VOICED_FRICATIVES.get(phone, phone)]
            parts = [_Component("noise", self._noise_band(low, high), level * (0.5 if voiced else 1.0))]
            if voiced:
                parts.append(_Component("voice", self._voice_bar(), 0.15))
            self._add(_Segment(self._duration(0.06, 0.11), parts, 0.015, phone))
        elif phone == "h":
            self._add(_Segment(self._duration(0.04, 0.07), [_Component("noise", vowel_filter, 0.12)], 0.02, phone))
        else:
            voiced = phone in _VOICED_PLOSIVES
            low, high = _BURSTS[_VOICED_PLOSIVES.get(phone, phone)]
            closure = [_Component("voice", self._voice_bar(), 0.04)] if voiced else []
            self._add(_Segment(self._duration(0.04, 0.07), closure, 0.01, phone))
            burst = [_Component("noise", self._noise_band(low, high), 0.25 if voiced else 0.45)]
            self._add(_Segment(self._duration(0.007, 0.014), burst, 0.001, phone + "+"))
            if not voiced:  # aspiration: breath noise shaped by the coming vowel
                aspiration = [_Component("noise", vowel_filter, 0.1)]
                self._add(_Segment(self._duration(0.02, 0.045), aspiration, 0.004, "h"))

    def _syllable(self, stressed: bool, phrase_final: bool) -> float:
        """Adds one syllable; returns the time of its vowel's centre."""
        rng = self.rng
        reduced = not stressed and rng.random() < 0.3
        vowel_name = None if reduced else _VOWEL_NAMES[int(rng.integers(len(_VOWEL_NAMES)))]
        formants = self._vowel_formants(vowel_name)
        vowel_filter = self._vowel_filter(formants)

        roll = rng.random()
        if roll < 0.15:
            onset: tuple[str, ...] = ()
        elif roll < 0.85:
            onset = (_weighted_choice(rng, _ONSETS, _ONSET_WEIGHTS),)
        else:
            onset = _CLUSTERS[int(rng.integers(len(_CLUSTERS)))]
        for phone in onset:
            self._consonant(phone, vowel_filter)

        # Open vowels are intrinsically louder; stressed and phrase-final vowels longer.
        level = 0.8 + 0.4 * (formants[0] / self.profile.formant_scale - 270.0) / 460.0
        duration = self._duration(0.06, 0.09) if reduced else self._duration(0.09, 0.15)
        if stressed:
            duration *= 1.3
            level *= 1.3
        if phrase_final:
            duration *= 1.5
        vowel_start = self.elapsed
        self._add(_Segment(duration, [_Component("voice", vowel_filter, level)], 0.02, vowel_name or "ə"))

        if rng.random() < 0.5:
            self._consonant(_weighted_choice(rng, _CODAS, _CODA_WEIGHTS), vowel_filter)
        return vowel_start + 0.5 * duration

    def plan(self, seconds: float) -> None:
        rng = self.rng
        self._add(_Segment(float(rng.uniform(0.05, 0.4))))
        while self.elapsed < seconds:
            start = self.elapsed
            n_syllables = int(rng.integers(3, 10))
            accents = []
            vowel_time = start
            for k in range(n_syllables):
                stressed = rng.random() < (0.6 if k == 0 else 0.3)
                vowel_time = self._syllable(stressed, k == n_syllables - 1)
                if stressed:
                    accents.append((vowel_time + 0.02, self.profile.pitch_range * float(rng.uniform(0.4, 1.0))))
                if self.elapsed > seconds:  # the clip ends mid-phrase, as a cut from real speech would
                    break
                if k < n_syllables - 1 and rng.random() < 0.12:  # brief word gap
                    self._add(_Segment(self._duration(0.03, 0.08)))
            self.phrases.append(_Phrase(start, self.elapsed, accents, vowel_time, bool(rng.random() < 0.2)))
            self._add(_Segment(float(rng.uniform(0.15, 0.5)) * self.time_scale))


def _f0_contour(planner: _Planner, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """F0 in Hz per sample: phrase declination, pitch accents, boundary tones, drift, tremor."""
    profile = planner.profile
    sample_rate = planner.sample_rate
    n_frames = int(np.ceil(n_samples / sample_rate * _FRAME_RATE)) + 2
    t = np.arange(n_frames) / _FRAME_RATE
    semitones = np.zeros(n_frames)
    for phrase in planner.phrases:
        inside = (t >= phrase.start - 0.05) & (t < phrase.end + 0.3)
        span = max(phrase.end - phrase.start, 1e-3)
        declination = float(rng.uniform(1.5, 4.0))
        tp = t[inside]
        contour = declination * (0.5 - (tp - phrase.start) / span)
        for time, height in phrase.accents:
            contour += height * np.exp(-0.5 * ((tp - time) / 0.07) ** 2)
        boundary = profile.pitch_range * (1.0 if phrase.final_rise else -0.6)
        contour += boundary / (1.0 + np.exp(-(tp - phrase.final_vowel_time) / 0.03))
        semitones[inside] = contour
    for freq, depth in ((0.23, 0.5), (0.61, 0.3)):
        semitones += depth * np.sin(2 * np.pi * (freq * t + rng.random()))
    tremor_rate = float(rng.uniform(4.5, 6.5))
    semitones += profile.tremor_semitones * np.sin(2 * np.pi * (tremor_rate * t + rng.random()))
    f0_frames = profile.median_f0 * 2.0 ** (semitones / 12.0)
    f0 = np.interp(np.arange(n_samples) / sample_rate, t, f0_frames)
    return np.clip(f0, 55.0, 450.0)


def _pulse_tables(profile: VoiceProfile) -> tuple[np.ndarray, np.ndarray]:
    """One period of glottal flow and its derivative, sampled finely in phase.

    Looking pulses up by phase is far cheaper than evaluating them per sample.
    """
    p = (np.arange(_PULSE_TABLE_SIZE) + 0.5) / _PULSE_TABLE_SIZE
    open_quotient = profile.open_quotient
    rise = 0.62 * open_quotient
    fall = open_quotient - rise
    opening = p < rise
    closing = (p >= rise) & (p < open_quotient)
    peak_negative = 0.5 * np.pi / fall
    derivative = np.where(
        opening,
        np.sin(np.pi * p / rise) * (0.5 * np.pi / rise),
        # Exponential return phase: an abrupt closure (short return) sounds bright and pressed.
        -peak_negative * np.exp(-np.maximum(p - open_quotient, 0.0) / profile.return_phase),
    )
    derivative[closing] = -np.sin(0.5 * np.pi * (p[closing] - rise) / fall) * peak_negative
    flow = np.where(opening, 0.5 - 0.5 * np.cos(np.pi * p / rise), 0.0)
    flow[closing] = np.cos(0.5 * np.pi * (p[closing] - rise) / fall)
    return derivative / peak_negative, flow


def _glottal_source(
    f0: np.ndarray,
    noise: np.ndarray,
    profile: VoiceProfile,
    rng: np.random.Generator,
    sample_rate: int,
) -> np.ndarray:
    """Pulse train with per-period jitter and shimmer, plus aspiration pulsed by the flow.

    The aspiration reuses the utterance's white noise: voiced and noise-excited
    segments only overlap in crossfades, where the correlation cannot be heard, and
    drawing the noise once is a tenth of the synthesis time.
    """
    plain_phase = np.cumsum(f0) / sample_rate
    jitter = rng.normal(0.0, profile.jitter, int(plain_phase[-1]) + 2)
    phase = np.cumsum(f0 * (1.0 + jitter[plain_phase.astype(np.int64)])) / sample_rate + rng.random()
    period = phase.astype(np.int64)
    table_index = ((phase - period) * _PULSE_TABLE_SIZE).astype(np.int64)
    derivative_table, flow_table = _pulse_tables(profile)

    shimmer = np.clip(1.0 + rng.normal(0.0, profile.shimmer, int(period[-1]) + 1), 0.3, None)
    voiced = derivative_table[table_index] * shimmer[period]
    # Aspiration is strongest while the glottis is open.
    aspiration = noise * (0.25 + flow_table[table_index]) * (0.15 * profile.breath)
    return voiced + aspiration


@functools.lru_cache(maxsize=512)
def _fade_in(length: int) -> np.ndarray:
    """Raised-cosine ramp; a ramp and its reverse sum to one, so crossfades keep the level."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)


def _render(planner: _Planner, voice: np.ndarray, noise: np.ndarray) -> np.ndarray:
    sample_rate = planner.sample_rate
    segments = planner.segments
    bounds = np.round(np.cumsum([0.0] + [s.duration for s in segments]) * sample_rate).astype(int)
    lengths = np.diff(bounds)
    # Crossfade half-width at each boundary, never more than ~half of either neighbour.
    half = np.zeros(len(bounds), dtype=int)
    for i in range(1, len(segments)):
        wanted = int(segments[i].onset_crossfade * sample_rate)
        half[i] = max(1, min(wanted, int(0.45 * lengths[i - 1]), int(0.45 * lengths[i])))
    warmup = int(_FILTER_WARMUP_S * sample_rate)
    out = np.zeros(bounds[-1] + 1)
    sources = {"voice": voice, "noise": noise}

    for i, segment in enumerate(segments):
        if not segment.components:
            continue
        start, stop = bounds[i] - half[i], bounds[i + 1] + half[i + 1]
        run_in = max(start - warmup, 0)
        core = slice(bounds[i] - run_in, bounds[i + 1] - run_in)
        sound = np.zeros(stop - run_in)
        for part in segment.components:
            filtered = lfilter(*part.filter, sources[part.source][run_in:stop])
            core_part = filtered[core]
            rms = np.sqrt(core_part @ core_part / len(core_part)) + 1e-12
            sound += filtered * (part.level / rms)
        sound = sound[start - run_in :]
        rise, fall = 2 * half[i], 2 * half[i + 1]
        sound[:rise] *= _fade_in(rise)
        if fall:
            sound[-fall:] *= _fade_in(fall)[::-1]
        out[start:stop] += sound
    return out


def _normalise(signal: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Remove DC/rumble, add a faint noise floor, set RMS near -20 dBFS, keep peaks < 1."""
    signal = lfilter(*_biquad("highpass", 60.0, sample_rate), signal)
    rms = np.sqrt(np.mean(signal**2)) + 1e-12
    floor_db = float(rng.uniform(-60.0, -50.0))
    # Uniform rather than Gaussian: just as white, cheaper, and far too faint to tell apart.
    signal = signal / rms + (rng.random(len(signal)) - 0.5) * (np.sqrt(12.0) * 10.0 ** (floor_db / 20.0))
    fade = min(int(0.02 * sample_rate), len(signal))
    signal[len(signal) - fade :] *= np.linspace(1.0, 0.0, fade)
    target = 10.0 ** ((_TARGET_DBFS + rng.normal(0.0, 1.5)) / 20.0)
    signal *= target / (np.sqrt(np.mean(signal**2)) + 1e-12)
    peak = np.max(np.abs(signal))
    if peak > _PEAK_LIMIT:
        signal *= _PEAK_LIMIT / peak
    return signal.astype(np.float32)


def synthesize_utterance(
    attrs: SpeakerAttributes,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    seconds: float = 6.0,
) -> np.ndarray:
    """One utterance of `seconds` of babble by this speaker: float32 mono in [-1, 1]."""
    return synthesize_with_phones(attrs, rng, sample_rate, seconds)[0]


def synthesize_with_phones(
    attrs: SpeakerAttributes,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    seconds: float = 6.0,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """`synthesize_utterance` and its phone timeline: (start s, end s, phone) per segment.

    Phones are IPA symbols as planned; "ə" is a reduced vowel, "p+" a plosive's burst,
    "" a pause. The same rng draws as synthesize_utterance, so the audio is the same.
    """
    n_samples = int(round(sample_rate * seconds))
    profile = voice_profile(attrs)
    planner = _Planner(profile, rng, sample_rate)
    planner.plan(seconds)
    total = int(round(planner.elapsed * sample_rate)) + int(0.1 * sample_rate)
    f0 = _f0_contour(planner, total, rng)
    noise = rng.standard_normal(total)
    voice = _glottal_source(f0, noise, profile, rng, sample_rate)
    speech = _render(planner, voice, noise)[:n_samples]
    if len(speech) < n_samples:
        speech = np.pad(speech, (0, n_samples - len(speech)))
    timeline, start = [], 0.0
    for segment in planner.segments:
        if start < seconds:
            timeline.append((start, min(start + segment.duration, seconds), segment.phone))
        start += segment.duration
    return _normalise(speech, rng, sample_rate), timeline
