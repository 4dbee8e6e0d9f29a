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
    assert total < 60e6, f"{folder}: {total / 1e6:.1f} MB (both folders must stay under 100 MB together)"


def test_a_fresh_install_draws_a_face_with_the_shipped_release_model(tmp_path):
    """No training, no registry: `sclmd generate` takes weights/scldm-voxsynth and says so."""
    root = make_project(tmp_path / "fresh")
    wav = write_wav(tmp_path / "voice.wav", voice_like(3.0, 16000), 16000)
    out = sclmd_cli(root, "generate", str(wav), "-o", str(tmp_path / "faces"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "model: weights/scldm-voxsynth (the shipped release model" in out.stdout
    assert (tmp_path / "faces/voice.png").stat().st_size > 0
