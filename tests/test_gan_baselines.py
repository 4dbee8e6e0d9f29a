"""The GAN baselines (Wav2Pix, Wen et al.): shapes at both sizes, failure detection, resume, save/load."""

from __future__ import annotations

import pytest
import torch

from sclmd.models.gan_baselines import Wav2Pix, Wav2PixConfig, Wen, WenConfig, build_gan
from sclmd.train.checkpoints import CheckpointStore
from sclmd.train.distributed import weights_digest
from sclmd.train.gan import GanData, Wav2PixLoss, collapse_check, train_wav2pix, train_wen


def tiny_data(n: int = 16, seed: int = 0) -> GanData:
    """Voices whose pitch and faces whose colour both follow the speaker: learnable, and cheap."""
    g = torch.Generator().manual_seed(seed)
    speakers = torch.arange(n) // 2
    t = torch.arange(96000) / 16000
    pitch = 100 + 20 * speakers.float()
    audio = (0.3 * torch.sin(2 * torch.pi * pitch[:, None] * t) * 32767).to(torch.int16)
    colour = torch.rand(n // 2, 3, 1, 1, generator=g)[speakers] * 2 - 1
    faces = (colour + 0.1 * torch.randn(n, 3, 64, 64, generator=g)).clamp(-1, 1)
    return GanData(audio, faces, speakers, n // 2)


@pytest.mark.parametrize("size", ["small", "paper"])
def test_both_gans_draw_64px_faces_from_any_clip_length_at_both_sizes(size) -> None:
    torch.manual_seed(0)
    wav2pix = Wav2Pix(Wav2PixConfig.for_size(size, 64, 16000, 10)).eval()
    wen = Wen(WenConfig.for_size(size, 64, 16000, 10)).eval()
    assert wav2pix.config.generator_channels == ((512, 256, 128, 64) if size == "paper" else (128, 64, 32, 16))
    assert wen.config.generator_channels[0] == (1024 if size == "paper" else 128)
    with torch.no_grad():
        for seconds in (0.5, 6.0):
            wave = 0.1 * torch.randn(2, int(16000 * seconds))
            for model in (wav2pix, wen):
                face = model(wave)
                assert face.shape == (2, 3, 64, 64) and face.abs().max() <= 1
                assert torch.equal(face, model(wave))  # deterministic at inference (dropout off)
    with pytest.raises(ValueError, match="power of two"):
        Wav2PixConfig.for_size("small", 48, 16000, 10)


def test_collapse_is_detected_and_a_spread_of_faces_is_not() -> None:
    real = torch.rand(20, 3, 64, 64) * 2 - 1
    one_face = real[:1].expand(20, -1, -1, -1) + 1e-4 * torch.randn(20, 3, 64, 64)
    collapsed, ratio, why = collapse_check(one_face, real, 0.1)
    assert collapsed and ratio < 0.01 and "mode collapse" in why
    collapsed, ratio, _ = collapse_check(real.flip(0), real, 0.1)
    assert not collapsed and ratio == pytest.approx(1.0)
    assert collapse_check(torch.full_like(real, float("nan")), real, 0.1)[0]


def test_a_non_finite_loss_stops_the_run_and_says_diverged() -> None:
    data = tiny_data()
    data.faces[3] = float("nan")  # one broken face: the L1 term and the critic's losses turn NaN
    cfg = Wav2PixConfig.for_size("small", 64, 16000, data.n_identities)
    _, summary = train_wav2pix(
        cfg,
        data,
        data,
        steps=40,
        batch_size=8,
        lr_generator=1e-4,
        lr_discriminator=1e-4,
        loss=Wav2PixLoss(),
        seed=0,
        log_every=10,
    )
    assert summary.status == "diverged" and "non-finite" in summary.why and summary.steps < 40
    wen_cfg = WenConfig.for_size("small", 64, 16000, data.n_identities)
    _, summary = train_wen(wen_cfg, data, data, embed_steps=2, steps=40, batch_size=8, lr=2e-4, seed=0, log_every=10)
    assert summary.status == "diverged" and "c_loss" in summary.why


class Crash(Exception):
    pass


def test_wav2pix_resumes_from_its_checkpoint_to_the_same_weights(tmp_path) -> None:
    data = tiny_data()
    cfg = Wav2PixConfig.for_size("small", 64, 16000, data.n_identities)
    options = dict(
        steps=6,
        batch_size=4,
        lr_generator=4e-4,
        lr_discriminator=4e-4,
        loss=Wav2PixLoss(),
        seed=3,
        checkpoint_every=2,
        log_every=1,
        collapse_ratio=0.0,
    )
    straight, summary = train_wav2pix(cfg, data, data, **options)
    assert summary.status == "ok" and summary.steps == 6

    def crash_at_5(values, step):
        if step == 5:
            raise Crash

    store = CheckpointStore(tmp_path / "ck", "key", keep=2)
    with pytest.raises(Crash):
        train_wav2pix(cfg, data, data, store=store, log=crash_at_5, **options)
    assert [p.name for p in store.steps()] == ["step-0000002", "step-0000004"]
    resumed, summary = train_wav2pix(cfg, data, data, store=store, **options)
    assert summary.status == "ok" and summary.steps == 6
    assert weights_digest(resumed) == weights_digest(straight)
    assert not store.steps()  # cleared once finished


def test_wen_learns_voices_then_faces_and_round_trips_through_its_config(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    data = tiny_data()
    cfg = WenConfig.for_size("small", 64, 16000, data.n_identities)
    model, summary = train_wen(
        cfg, data, data, embed_steps=30, steps=4, batch_size=8, lr=2e-3, seed=0, log_every=2, collapse_ratio=0.0
    )
    ce = summary.history["voice_ce"]
    assert ce[-1][1] < ce[0][1]  # the voice embedder learnt the speakers
    assert {"c_loss", "g_adversarial", "g_identity"} <= set(summary.history)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "wen.safetensors"))
    again = build_gan("wen", model.config.to_dict())
    again.load_state_dict(load_file(str(tmp_path / "wen.safetensors")))
    wave = data.waves(torch.arange(3))
    with torch.no_grad():
        assert torch.equal(again.eval()(wave), model.eval()(wave))
