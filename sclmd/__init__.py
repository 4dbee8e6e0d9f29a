"""sclmd: speech-to-face generation (SCLDM) as a reproducible MLOps pipeline."""

from sclmd.env import apply_defaults as _apply_defaults

_apply_defaults()

__version__ = "0.1.0"
