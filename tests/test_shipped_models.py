"""The weights committed in weights/ as a fresh clone has them: they verify against their checksums, their
model cards say how they were made, and the release model draws a face in a project that trained nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, make_project, sclmd_cli
from tests.media import voice_like, write_wav

SHIPPED = {
    "weights/face-autoencoder": ("model.safetensors", "config.json"),
    "weights/scldm-voxsynth": ("sclmd.json", "evaluation.json", "judges/judges.json"),
    "weights/dae-talker": ("talker.json", "model.safetensors", "pretrain/model.safetensors", "evaluation.json"),
}


@pytest.mark.parametrize("folder", sorted(SHIPPED))
def test_each_committed_weights_folder_verifies_and_its_card_says_how_it_was_made(folder):
    from sclmd.models.shipped import CARD, CHECKSUMS, verify_folder

    path = REPO / folder
    verify_folder(path, SHIPPED[folder], folder)  # a missing, truncated or LFS-pointer file fails here
    card = (path / CARD).read_text()
    sums = json.loads((path / CHECKSUMS).read_text())
    assert all(digest in card for digest in sums.values())  # the card lists every file's sha256
    assert "sclmd release --part" in card and "wall time" in card.lower()
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert total < 40e6, f"{folder}: {total / 1e6:.1f} MB (the folders must stay under 100 MB together)"


def test_a_fresh_install_draws_a_face_with_the_shipped_release_model(tmp_path):
    """No training, no registry: `sclmd generate` takes weights/scldm-voxsynth and says so."""
    root = make_project(tmp_path / "fresh")
    wav = write_wav(tmp_path / "voice.wav", voice_like(3.0, 16000), 16000)
    out = sclmd_cli(root, "generate", str(wav), "-o", str(tmp_path / "faces"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "model: weights/scldm-voxsynth (the shipped release model" in out.stdout
    assert (tmp_path / "faces/voice.png").stat().st_size > 0


def test_a_fresh_install_makes_a_talking_face_video_with_the_shipped_models(tmp_path):
    """No training: `sclmd talk VOICE` draws the face with weights/scldm-voxsynth and animates it with
    weights/dae-talker, and says which models it used."""
    from sclmd.data.video import video_info

    root = make_project(tmp_path / "fresh")
    wav = write_wav(tmp_path / "voice.wav", voice_like(2.0, 16000), 16000)
    out = sclmd_cli(root, "talk", str(wav), "-o", str(tmp_path / "talk.mp4"), "--scale", "1")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "talker: weights/dae-talker (the shipped release talker" in out.stdout
    assert "face: SCLDM (weights/scldm-voxsynth (the shipped release model" in out.stdout
    info = video_info(tmp_path / "talk.mp4")
    assert info["frames"] == 50 and info["audio_rate"] == 16000
