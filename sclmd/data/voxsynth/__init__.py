"""VoxSynth: a synthetic paired voice-face data set, generated deterministically from a seed."""

from sclmd.data.voxsynth.attributes import SpeakerAttributes, sample_speakers
from sclmd.data.voxsynth.face import render_face
from sclmd.data.voxsynth.generate import generate_voxsynth, make_contact_sheet, pick_sample_wavs
from sclmd.data.voxsynth.voice import synthesize_utterance

__all__ = [
    "SpeakerAttributes",
    "generate_voxsynth",
    "make_contact_sheet",
    "pick_sample_wavs",
    "render_face",
    "sample_speakers",
    "synthesize_utterance",
]
