"""Real faces in real pictures: detection, landmarks and aligned crops (dlib, weights shipped in wheels).

- Detector: dlib's HOG frontal-face detector (in `dlib-bin`, no weights file; ~0.1 s for a
  512 px picture on one CPU core), kept above a score of 0.3: at dlib's default 0 it also took
  the mission patch on scikit-image's astronaut photo for a face (score 0.12; the real faces
  there and on matplotlib's Grace Hopper score 1.16 and 1.27).  dlib's CNN detector
  (`mmod_human_face_detector.dat`) finds
  more faces but took 9 s per picture here, too slow for `prepare` on a CPU.
- Landmarks: dlib's 5-point shape predictor (eye corners and nose), from the
  `face_recognition_models` wheel (CC0).
- Alignment: `dlib.get_face_chip` rotates and scales so that the eyes are level and at fixed
  places, with `padding` of margin around the face, then resizes to the asked size.

Nothing is downloaded: the model files ship inside the installed packages, and a missing one
is named with the package that provides it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sclmd.errors import SclmdError

LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


def model_file(name: str) -> str:
    """A model file of the `face_recognition_models` wheel, found without importing it (its
    `__init__` needs setuptools' pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    path = (
        None
        if spec is None or not spec.submodule_search_locations
        else (Path(list(spec.submodule_search_locations)[0]) / "models" / name)
    )
    if path is None or not path.is_file():
        raise SclmdError(
            f"{name} not found: it ships in the `face_recognition_models` package (with `dlib-bin`). "
            "Install the project's requirements (`make install`); nothing is downloaded at run time."
        )
    return str(path)


def _dlib():
    try:
        import dlib
    except ImportError as e:
        raise SclmdError(f"dlib is not installed ({e}); it comes from the `dlib-bin` wheel: `make install`.") from None
    return dlib


@dataclass(frozen=True)
class Face:
    """One detected face: its box (left, top, right, bottom) in pixels, the detector's score,
    and the 5 landmarks as (x, y) pixels."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[int, int], ...]

    @property
    def center(self) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + right) / 2, (top + bottom) / 2

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


class FaceFinder:
    """Detects faces, finds their landmarks and cuts aligned crops (one instance per process)."""

    def __init__(self, upsample: int = 1, threshold: float = 0.3):
        dlib = _dlib()
        self.dlib = dlib
        self.upsample = upsample
        self.threshold = threshold
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(model_file(LANDMARKS_5))

    def shape_of(self, rgb: np.ndarray, box: tuple[int, int, int, int]):
        """dlib's 5-landmark shape of the face in `box` (left, top, right, bottom)."""
        return self.landmarks(rgb, self.dlib.rectangle(*box))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an [H, W, 3] uint8 RGB picture, best score first."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        rects, scores, _ = self.detector.run(rgb, self.upsample, self.threshold)
        faces = []
        for rect, score in zip(rects, scores):
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            shape = self.shape_of(rgb, box)
            points = tuple((shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts))
            faces.append(Face(box, float(score), points))
        return sorted(faces, key=lambda f: -f.score)

    def aligned(self, rgb: np.ndarray, face: Face, size: int, padding: float = 0.3) -> np.ndarray:
        """[size, size, 3] uint8 crop: eyes level and at fixed places, `padding` of margin
        (a fraction of the face's size) on each side."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        return np.asarray(self.dlib.get_face_chip(rgb, self.shape_of(rgb, face.box), size=size, padding=padding))


def nearest(faces: list[Face], point: tuple[float, float]) -> Face | None:
    """The face whose box centre is nearest `point` (pixels); None when there is none."""
    if not faces:
        return None
    return min(faces, key=lambda f: (f.center[0] - point[0]) ** 2 + (f.center[1] - point[1]) ** 2)


def largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.area) if faces else None


@lru_cache(maxsize=1)
def face_finder() -> FaceFinder:
    """One FaceFinder per process (the models take ~0.1 s to load; workers reuse it)."""
    return FaceFinder()
