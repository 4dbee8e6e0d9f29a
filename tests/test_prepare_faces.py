"""`prepare` detects and aligns real faces (dlib) on VoxCeleb- and AVSpeech-format trees built from
real photos that ship inside installed packages (nothing is downloaded):

- scikit-image's `astronaut.png` (Eileen Collins, NASA, public domain) and `coffee.png` (no face);
- matplotlib's `grace_hopper.jpg` (Rear Admiral Grace Hopper, US Navy, public domain).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import skimage
from PIL import Image

from sclmd.config import load_params
from sclmd.data.faces import face_finder
from sclmd.data.image import detected_face, prepare_face
from sclmd.data.store import PackedClips, read_manifest
from sclmd.stages import prepare
from tests.conftest import make_project
from tests.media import voice_like, write_mp4, write_wav

pytestmark = pytest.mark.slow

ASTRONAUT = Path(skimage.__file__).parent / "data/astronaut.png"
COFFEE = Path(skimage.__file__).parent / "data/coffee.png"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"


def photo(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


@lru_cache(maxsize=1)
def pretrained_judges():
    from sclmd.evaluate.pretrained_judges import PretrainedJudges

    return PretrainedJudges()


def identity(face: np.ndarray) -> np.ndarray:
    """dlib's identity feature of an aligned crop (upscaled: the detector wants ~80 px faces)."""
    judges = pretrained_judges()
    big = np.asarray(Image.fromarray(face).resize((256, 256), Image.Resampling.BICUBIC))
    faces = judges.finder.detect(big)
    assert faces, "no face found again in the aligned crop"
    return judges.identity(big, faces[0])


def test_alignment_undoes_a_tilt_that_a_fixed_crop_keeps(tmp_path):
    upright = photo(HOPPER)
    tilted = upright.rotate(15, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    aligned = [detected_face(im, 64, min_px=24).astype(float) for im in (upright, tilted)]
    fixed = [prepare_face(im, 64, min_px=24, center=(0.5, 0.4), box=0.5).astype(float) for im in (upright, tilted)]
    aligned_change, fixed_change = np.abs(aligned[0] - aligned[1]).mean(), np.abs(fixed[0] - fixed[1]).mean()
    assert aligned_change < 0.5 * fixed_change, (aligned_change, fixed_change)  # eyes are levelled again


def test_voxceleb_photos_detected_aligned_and_no_face_counted(tmp_path):
    raw = tmp_path / "raw"
    speakers = [
        ("id10001", "Collins", "f", ASTRONAUT),
        ("id10002", "Hopper", "f", HOPPER),
        ("id10003", "Collins2", "m", ASTRONAUT),
        ("id10004", "Hopper2", "m", HOPPER),
    ]
    (raw).mkdir()
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for k, (vox_id, name, gender, source) in enumerate(speakers):
        meta.append(f"{vox_id}\t{name}\t{gender}\tUSA\tdev")
        for u in range(2):
            write_wav(
                raw / "wav" / vox_id / f"yt{k}" / f"{u + 1:05d}.wav", voice_like(1.5, 16000, f0=110 + 40 * k), 16000
            )
        faces = raw / "faces" / name
        faces.mkdir(parents=True)
        base = photo(source)
        # the same person framed differently: the crops must still be that face
        base.save(faces / "0001_01.jpg", quality=92)
        framed = Image.new("RGB", (base.width + 200, base.height + 100), (30, 90, 160))
        framed.paste(base, (150, 60))
        framed.save(faces / "0002_01.jpg", quality=92)
    Image.open(COFFEE).convert("RGB").save(raw / "faces" / "Collins" / "0003_01.jpg")  # no face in it
    (raw / "vox1_meta.csv").write_text("\n".join(meta) + "\n")
    root = make_project(
        tmp_path / "project",
        {
            "prepare": {
                "source": "voxceleb1",
                "workers": 1,
                "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                "voxceleb1": {
                    "meta": str(raw / "vox1_meta.csv"),
                    "audio_dir": str(raw / "wav"),
                    "faces_dir": str(raw / "faces"),
                },
            }
        },
    )
    metrics = prepare.run(load_params(root / "params.yaml"), root)
    prepared = root / "data/prepared"
    manifest = read_manifest(prepared)
    rejects = pd.read_csv(prepared / "rejects.csv")
    # every clip got a face; the faceless picture, when drawn for a clip, is a counted skip
    assert metrics["clips"] + metrics["rejected"] == 8
    assert set(metrics.get("rejected_by_reason", {})) <= {"no face found by the face detector"}
    assert all(r == "no face found by the face detector" for r in rejects["reason"])
    # the crops are the right people's faces
    references = {
        "Collins": identity(detected_face(ASTRONAUT, 64, min_px=24)),
        "Hopper": identity(detected_face(HOPPER, 64, min_px=24)),
    }
    for split in ("train", "val", "test"):
        clips = PackedClips(prepared, split)
        for i, row in clips.rows.reset_index(drop=True).iterrows():
            face = clips.__getitems__([i]).face[0].numpy()
            who = "Collins" if "Collins" in row["face_source"] else "Hopper"
            other = "Hopper" if who == "Collins" else "Collins"
            feature = identity(face)
            assert float(feature @ references[who]) > float(feature @ references[other]), row["face_source"]
    sheet = Image.open(root / "reports/prepare/faces.png")
    assert sheet.width > 64 and sheet.height >= 64
    assert len(manifest) == metrics["clips"]


def test_avspeech_frame_takes_the_face_nearest_the_given_centre(tmp_path):
    astronaut, hopper = photo(ASTRONAUT), photo(HOPPER).resize((427, 500))
    scene = Image.new("RGB", (960, 540), (40, 40, 40))
    scene.paste(astronaut.resize((440, 440)), (0, 50))
    scene.paste(hopper.resize((376, 440)), (560, 50))
    centres = {face.center for face in face_finder().detect(np.asarray(scene))}
    assert len(centres) == 2
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for k, (x, who) in enumerate(((0.25, "Collins"), (0.78, "Hopper"), (0.25, "Collins"))):
        ytid = f"v{k:02d}-{who}"
        rows.append(f"{ytid},0.000000,2.000000,{x:.6f},0.400000\n")
        write_mp4(clips / f"{ytid}_0.000000_2.000000.mp4", 2.0, 5, (960, 540), 16000, picture=scene)
    (tmp_path / "avspeech.csv").write_text("".join(rows))
    root = make_project(
        tmp_path / "project",
        {
            "prepare": {
                "source": "avspeech",
                "workers": 1,
                "split": {"train": 0.34, "val": 0.33, "test": 0.33},
                "min_clip_seconds": 1.0,
                "avspeech": {"csv": str(tmp_path / "avspeech.csv"), "videos_dir": str(clips)},
            }
        },
    )
    assert prepare.run(load_params(root / "params.yaml"), root)["clips"] == 3
    prepared = root / "data/prepared"
    references = {
        "Collins": identity(detected_face(ASTRONAUT, 64, min_px=24)),
        "Hopper": identity(detected_face(HOPPER, 64, min_px=24)),
    }
    for split in ("train", "val", "test"):
        clips_of = PackedClips(prepared, split)
        for i, row in clips_of.rows.reset_index(drop=True).iterrows():
            who = row["clip_id"].split("-")[1].split("_")[0]
            other = "Hopper" if who == "Collins" else "Collins"
            feature = identity(clips_of.__getitems__([i]).face[0].numpy())
            assert float(feature @ references[who]) > float(feature @ references[other]), row["clip_id"]
