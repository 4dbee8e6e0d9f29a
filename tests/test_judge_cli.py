"""`sclmd judge` on real photos and on bad input.

The photos ship inside installed packages, nothing is downloaded:
- scikit-image's `astronaut.png` (Eileen Collins, NASA, public domain) and `coffee.png` (no face);
- matplotlib's `grace_hopper.jpg` (Rear Admiral Grace Hopper, US Navy, public domain).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage
from PIL import Image

ASTRONAUT = Path(skimage.__file__).parent / "data/astronaut.png"
COFFEE = Path(skimage.__file__).parent / "data/coffee.png"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"


def judge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sclmd", "judge", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Real photos in every mode the CLI must take, and bad files."""
    d = tmp_path_factory.mktemp("pictures")
    astronaut = Image.open(ASTRONAUT).convert("RGB")
    astronaut.convert("L").save(d / "grey.png")
    astronaut.convert("CMYK").save(d / "cmyk.jpg")
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "rgba.png")
    astronaut.resize((4096, 4096), Image.Resampling.BICUBIC).save(d / "huge.jpg", quality=80)
    hopper = Image.open(HOPPER).convert("RGB").resize((512, 600))
    pair = Image.new("RGB", (1024, 600), (255, 255, 255))
    pair.paste(astronaut, (0, 44))
    pair.paste(hopper.resize((170, 199)), (660, 200))  # two people, the astronaut's face the larger
    pair.save(d / "two_people.png")
    Image.new("RGB", (1, 1), (200, 150, 120)).save(d / "one_pixel.png")
    (d / "notes.png").write_text("not an image")
    return d


def test_judge_reads_gender_age_and_identity_from_real_photos(pictures, tmp_path):
    out = tmp_path / "verdicts.json"
    run = judge(
        ASTRONAUT,
        HOPPER,
        pictures / "grey.png",
        pictures / "cmyk.jpg",
        pictures / "rgba.png",
        pictures / "huge.jpg",
        pictures / "two_people.png",
        "--identity",
        "--json",
        out,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    images = {Path(r["file"]).name: r for r in json.loads(out.read_text())["images"]}
    astronaut = images["astronaut.png"]["faces"]
    assert len(astronaut) == 1  # the mission patch is not a face
    assert astronaut[0]["gender"] == "female" and 20 <= astronaut[0]["age"] <= 60
    hopper = images["grace_hopper.jpg"]["faces"]
    assert len(hopper) == 1 and hopper[0]["age"] >= 60  # 79 in the photo
    # every mode and size of the same photo: the same person, by the identity feature (unit-length dlib
    # descriptors: the same face scored >= 0.99 here, Collins against Hopper 0.88)
    reference = np.array(astronaut[0]["identity"])
    assert reference.shape == (128,) and abs(np.linalg.norm(reference) - 1) < 1e-4
    for name in ("grey.png", "cmyk.jpg", "rgba.png", "huge.jpg"):
        faces = images[name]["faces"]
        assert len(faces) == 1, name
        assert float(np.dot(reference, faces[0]["identity"])) > 0.97, name
    assert float(np.dot(reference, hopper[0]["identity"])) < 0.93  # another person
    # several faces: all of them, the largest first, each with its box
    both = images["two_people.png"]["faces"]
    assert len(both) == 2
    assert float(np.dot(reference, both[0]["identity"])) > 0.97
    assert float(np.dot(np.array(hopper[0]["identity"]), both[1]["identity"])) > 0.97
    assert "face 1 of 2 at" in run.stdout


def test_judge_says_what_is_wrong_with_each_bad_image(pictures, tmp_path):
    run = judge(COFFEE, pictures / "one_pixel.png", pictures / "notes.png", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    lines = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line for line in run.stdout.splitlines()}
    assert "no face found" in lines["coffee.png"]
    assert "image too small: 1x1 px" in lines["one_pixel.png"]
    assert "not a readable image" in lines["notes.png"]
    assert "no face judged in any image" in run.stderr

    missing = judge(tmp_path / "nowhere.jpg", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere.jpg: no such file or folder" in missing.stderr
    bad_judges = judge(ASTRONAUT, "--judges", tmp_path, cwd=tmp_path)
    assert bad_judges.returncode == 2 and "expected `pretrained` or a trained judges folder" in bad_judges.stderr
