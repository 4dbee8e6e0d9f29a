"""Speech encoder, face autoencoder and their save/load, on small random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sclmd.errors import SclmdError
from sclmd.models.face_autoencoder import FaceEncoder, face_config
from sclmd.models.speech_encoder import CompressedSpectrogram, SpeechEncoder, speech_encoder_config
from sclmd.models.speech_face import SpeechFaceModel
from sclmd.train.pretrain import SpeakerBatches


def test_spectrogram_front_end_matches_the_paper_framing():
    cfg = speech_encoder_config("small", 64)
    spec = CompressedSpectrogram(cfg)(torch.randn(2, 96000) * 0.1)
    # 10 ms hop over 6 s -> 601 frames; 512-point FFT -> 257 bins; real + imaginary
    assert spec.shape == (2, 2, 601, 257)
    # power-law 0.3 on the magnitude: |compressed| = |S|^0.3
    front = CompressedSpectrogram(cfg)
    wave = torch.randn(1, 16000) * 0.1
    raw = front.stft(wave)[0].T  # [time, freq] complex
    comp = front(wave)[0]  # [2, time, freq]
    mag = comp.pow(2).sum(0).sqrt()
    np.testing.assert_allclose(mag.numpy(), raw.abs().pow(0.3).numpy(), rtol=1e-4, atol=1e-5)
    # ... and the phase is kept
    np.testing.assert_allclose(torch.atan2(comp[1], comp[0]).numpy(), raw.angle().numpy(), atol=1e-4)


def test_shapes_and_ranges():
    torch.manual_seed(0)
    model = SpeechFaceModel.from_params("small", 32, 4, 64).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 96000) * 0.1, torch.rand(3, 3, 64, 64) * 2 - 1)
    assert out["speech_emb"].shape == (3, 32) and out["face_emb"].shape == (3, 32)
    assert out["z"].shape == (3, 4, 8, 8)
    assert out["recon"].shape == (3, 3, 64, 64) and out["recon"].abs().max() <= 1
    assert out["logits"].shape == (3, 3)


def test_untrained_embeddings_are_not_collapsed():
    # Guards the init: a collapsed head gives a flat contrastive loss that never moves.
    torch.manual_seed(0)
    model = SpeechFaceModel.from_params("small", 64, 4, 64).train()  # as the loss first sees it
    with torch.no_grad():
        face = torch.nn.functional.normalize(model.face_encoder(torch.rand(8, 3, 64, 64) * 2 - 1)[1], dim=-1)
    off_diagonal = (face @ face.T)[~torch.eye(8, dtype=bool)]
    assert off_diagonal.mean() < 0.9


def test_save_and_load_pretrained_roundtrip(tmp_path):
    torch.manual_seed(1)
    model = SpeechFaceModel.from_params("small", 16, 4, 64).eval()
    model.save_pretrained(tmp_path / "m", extra={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = SpeechFaceModel.from_pretrained(tmp_path / "m").eval()
    wave, face = torch.randn(2, 96000) * 0.1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, b = model(wave, face), again(wave, face)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with pytest.raises(SclmdError, match="no pre-trained model"):
        SpeechFaceModel.from_pretrained(tmp_path / "nothing")


def test_paper_sizes_build():
    face = FaceEncoder(face_config("paper", 512, 4, 64))
    assert face.conv1_1.out_channels == 64 and face.conv5_3.out_channels == 512
    speech = SpeechEncoder(speech_encoder_config("paper", 512))
    assert speech.head[-1].out_features == 512


def test_vgg_face_weights_load_by_name_and_misfits_are_clear(tmp_path):
    reference = FaceEncoder(face_config("paper", 64, 4, 64))
    state = {
        f"{n}.{p}": getattr(getattr(reference, n), p).detach().clone()
        for n in reference.conv_names
        for p in ("weight", "bias")
    }
    state["fc8.weight"] = torch.zeros(2622, 4096)  # extra layers of the converted file are ignored
    torch.save(state, tmp_path / "vgg_face_dag.pth")
    fresh = FaceEncoder(face_config("paper", 64, 4, 64))
    loaded = fresh.load_vgg_face(tmp_path / "vgg_face_dag.pth")
    assert len(loaded) == 26
    torch.testing.assert_close(fresh.conv3_2.weight, reference.conv3_2.weight)

    small = FaceEncoder(face_config("small", 64, 4, 64))
    with pytest.raises(SclmdError, match="shapes do not fit.*pretrain.size: paper"):
        small.load_vgg_face(tmp_path / "vgg_face_dag.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(SclmdError, match="does not look like VGG-Face: missing conv1_1.weight"):
        fresh.load_vgg_face(tmp_path / "other.pth")
    with pytest.raises(SclmdError, match="not found"):
        fresh.load_vgg_face(tmp_path / "absent.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SclmdError, match="not a readable state dict"):
        fresh.load_vgg_face(tmp_path / "broken.pth")


def test_speaker_batches_hold_distinct_speakers_deterministically():
    speakers = np.repeat(np.arange(10), 3)
    plan = SpeakerBatches(speakers, 4, seed=5)
    assert plan.per_epoch == 2
    seen = set()
    for step in range(12):
        voices, faces = plan.batch(step)
        assert len(set(speakers[voices])) == 4
        np.testing.assert_array_equal(speakers[voices], speakers[faces])  # a pair is one speaker
        seen.update(voices.tolist())
        again = SpeakerBatches(speakers, 4, seed=5).batch(step)
        np.testing.assert_array_equal(voices, again[0])
        np.testing.assert_array_equal(faces, again[1])
    assert len(seen) > 20  # clips of a speaker rotate across epochs
    assert not np.array_equal(plan.batch(0)[0], SpeakerBatches(speakers, 4, seed=6).batch(0)[0])
    with pytest.raises(SclmdError, match="batch_size 16 is larger than the 10 training speakers"):
        SpeakerBatches(speakers, 16, seed=0)


def test_magnitude_channel_is_the_compressed_magnitude_beside_real_and_imaginary():
    plain = CompressedSpectrogram(speech_encoder_config("small", 64))
    with_magnitude = CompressedSpectrogram(speech_encoder_config("small", 64, magnitude_channel=True))
    wave = torch.randn(1, 16000) * 0.1
    three, two = with_magnitude(wave)[0], plain(wave)[0]
    assert three.shape[0] == 3 and torch.equal(three[:2], two)
    assert torch.allclose(three[2], two.square().sum(0).sqrt(), atol=1e-5)  # |S^c| = |S|^c
    encoder = SpeechEncoder(speech_encoder_config("small", 32, magnitude_channel=True))
    assert encoder(torch.randn(2, 96000) * 0.1).shape == (2, 32)


def test_decoder_inference_in_chunks_equals_one_batch():
    # `decode` (channels-last chunks, the speed path of generation and the talker) must give `forward`'s faces,
    # for a count that is not a multiple of the chunk, and leave no gradient graph behind.
    torch.manual_seed(0)
    model = SpeechFaceModel.from_params("small", 32, 4, 64).eval()
    z = torch.randn(37, 4, 8, 8)
    with torch.no_grad():
        expected = model.face_decoder(z)
    got = model.face_decoder.decode(z)
    assert got.shape == expected.shape and got.is_contiguous() and not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
