"""The talking face's parts: phones and mouth tracks, talking frames, mp4 files, the DAE-Talker models, the probe,
`sclmd talk`'s input checks. (End to end: tests/test_talker.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

# --- data: phones, mouth tracks, frames, video files ---------------------------------------------


def test_phone_timeline_comes_with_the_same_audio():
    from sclmd.data.voxsynth.attributes import sample_speakers
    from sclmd.data.voxsynth.generate import _rng
    from sclmd.data.voxsynth.talking import PHONE_TARGETS
    from sclmd.data.voxsynth.voice import synthesize_utterance, synthesize_with_phones

    speaker = sample_speakers(6, 0)[2]
    plain = synthesize_utterance(speaker, _rng(0, 2, 0, 0), 16000, 3.0)
    audio, timeline = synthesize_with_phones(speaker, _rng(0, 2, 0, 0), 16000, 3.0)
    assert np.array_equal(plain, audio)  # the timeline costs no extra random draws: VoxSynth's wavs are unchanged
    assert timeline[0][0] == 0.0 and timeline[-1][1] == pytest.approx(3.0, abs=1e-6)
    for (_, end, _), (start, _, _) in zip(timeline, timeline[1:]):
        assert start == pytest.approx(end)
    assert {p for _, _, p in timeline} <= set(PHONE_TARGETS)
    assert any(p in ("p", "b", "m") for _, _, p in timeline) and "" in {p for _, _, p in timeline}


def test_mouth_follows_the_phones():
    from sclmd.data.voxsynth.talking import mouth_tracks

    timeline = [(0.0, 0.2, ""), (0.2, 0.44, "æ"), (0.44, 0.56, "m"), (0.56, 0.8, "u"), (0.8, 1.0, "")]
    opening, rounding = mouth_tracks(timeline, 25, 25)
    at = lambda t: int(t * 25)  # noqa: E731
    assert opening[at(0.05)] < 0.05  # pause: closed
    assert opening[at(0.32)] > 0.6  # open vowel
    assert opening[at(0.5)] < 0.25  # /m/ closes the lips
    assert rounding[at(0.68)] > 0.7 and rounding[at(0.32)] < 0.05  # /u/ is rounded, /æ/ is not


def test_talking_frame_moves_only_the_mouth_and_keeps_still_faces_identical():
    from sclmd.data.voxsynth.attributes import sample_speakers
    from sclmd.data.voxsynth.face import Motion, render_face
    from sclmd.data.voxsynth.generate import _rng

    speaker = sample_speakers(6, 0)[1]
    draw = lambda motion=None: np.asarray(render_face(speaker, _rng(0, 1, 1, 0), 64, 3, 1.5, motion), float)  # noqa: E731
    still = draw()
    assert np.array_equal(still, draw(Motion()))  # a still frame is the VoxSynth portrait, pixel for pixel
    open_mouth = np.abs(draw(Motion(opening=1.0)) - still).sum(-1)
    assert open_mouth[:28].max() == 0  # above the nose: nothing moved
    assert open_mouth[36:].sum() > 2000  # the mouth opened
    turned = np.abs(draw(Motion(yaw=12.0)) - still).sum(-1)
    assert turned.sum() > 2000


def test_mp4_round_trip_keeps_frames_and_sound(tmp_path):
    from sclmd.data.video import read_frames, video_info, write_mp4

    rng = np.random.default_rng(0)
    frames = np.repeat(np.linspace(0, 255, 10).astype(np.uint8)[:, None, None, None], 64, 1).repeat(64, 2).repeat(3, 3)
    frames[:, 20:40, 20:40] = rng.integers(0, 255, 3, dtype=np.uint8)
    audio = 0.3 * np.sin(np.arange(16000 * 10 // 25) / 16000 * 2 * np.pi * 220).astype(np.float32)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames, audio, 16000, 25)
    back = read_frames(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(float) - frames).mean() < 4
    info = video_info(path)
    assert info["fps"] == 25 and info["audio_rate"] == 16000 and info["frames"] == 10
    with pytest.raises(Exception, match="even frame size"):
        write_mp4(tmp_path / "odd.mp4", frames[:, :63], None, 16000)
    assert not (tmp_path / "odd.mp4").exists()


# --- models -----------------------------------------------------------------------------------------


def _small_config():
    from sclmd.models.talker import TalkerConfig

    return TalkerConfig(unet_channels=(16, 32), conformer_layers=1, ddim_steps=20)


def test_ddim_inversion_finds_the_code_that_decodes_back():
    from sclmd.models.talker import DiffusionAutoencoder

    torch.manual_seed(0)
    dae = DiffusionAutoencoder(_small_config()).eval()
    latent, reference = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    z = dae.encoder(latent)
    code = dae.invert(latent, reference, z, steps=25)
    back = dae.decode(code, reference, z, steps=25)
    assert (back - latent).abs().mean() < 0.15 * latent.abs().mean()
    other = dae.decode(torch.randn_like(code), reference, z, steps=25)  # a random code does not
    assert (other - latent).abs().mean() > 0.5 * latent.abs().mean()


def test_every_frame_starts_from_one_shared_stochastic_code():
    from sclmd.errors import SclmdError
    from sclmd.models.talker import TalkerBundle, animate, stochastic_code

    torch.manual_seed(0)
    bundle = TalkerBundle(_small_config()).eval()
    reference = torch.randn(1, 4, 16, 16)
    noise = stochastic_code(bundle, reference, "noise", seed=3)
    assert torch.equal(noise, stochastic_code(bundle, reference, "noise", seed=3))  # a seed gives one code
    assert not torch.equal(noise, stochastic_code(bundle, reference, "noise", seed=4))
    assert abs(float(noise.std()) - 1) < 0.15  # Gaussian, not the reference
    inverted = stochastic_code(bundle, reference, "inversion", steps=25)
    back = bundle.dae.decode(inverted, reference, torch.zeros(1, 16), steps=25)
    assert (back - reference).abs().mean() < 0.15 * reference.abs().mean()  # decodes back to the face while still
    with pytest.raises(SclmdError, match="not one of: noise, inversion"):
        stochastic_code(bundle, reference, "random")
    # With the motion silenced, frames from one shared code are one frame: the clip cannot flicker.
    bundle.speech2latent.latent_head[-1].weight.data.zero_()
    bundle.speech2latent.latent_head[-1].bias.data.zero_()
    for code in ("noise", "inversion"):
        latents, _ = animate(bundle, 0.1 * torch.randn(8000), reference[0], 12, steps=4, code=code, seed=1)
        assert latents.shape == (12, 4, 16, 16) and torch.allclose(latents, latents[:1].expand_as(latents), atol=1e-5)


def test_a_given_pose_replaces_the_predicted_one():
    from sclmd.models.talker import Speech2Latent

    torch.manual_seed(0)
    model = Speech2Latent(_small_config()).eval()
    wave, face = 0.1 * torch.randn(1, 16000), torch.randn(1, 16)
    with torch.no_grad():
        z, predicted = model(wave, face)
        pose = torch.full((1, 25, 3), 8.0)
        z_given, predicted_again = model(wave, face, pose=pose)
        z_other_face, _ = model(wave, torch.randn(1, 16))
    assert z.shape == (1, 25, 16) and predicted.shape == (1, 25, 3)
    assert torch.allclose(predicted, predicted_again)  # the pose head still says what it predicts
    assert not torch.allclose(z, z_given)  # but the latent follows the given pose
    assert not torch.allclose(z, z_other_face)  # and the face it animates


def test_the_head_samples_the_drift_speech_cannot_predict(tmp_path):
    """The pose drift fitted on training clips has the spread and correlation time of the truth's
    unpredictable part, a seed gives one drift, and a talker saved before the drift existed still loads."""
    from safetensors.torch import load_file, save_file

    from sclmd.data.voxsynth.talking import _slow_noise
    from sclmd.models.talker import TalkerBundle, animate, sample_pose_drift
    from sclmd.train.talker import POSE_TRACKS, Clips, fit_pose_drift

    torch.manual_seed(0)
    bundle = TalkerBundle(_small_config()).eval()
    head = bundle.speech2latent.pose_head[-1]
    head.weight.data.zero_(), head.bias.data.zero_()  # a pose head that predicts 0: the residual is the truth
    rng = np.random.default_rng(0)
    n, t, fps = 64, 100, 25
    true = {"yaw": (6.0, 1.2), "pitch": (2.0, 1.0), "roll": (3.0, 1.5)}  # VoxSynth's drifts: degrees, seconds
    tracks = {
        a: torch.from_numpy(np.stack([std * _slow_noise(rng, t, fps, sec) for _ in range(n)])).float()
        for a, (std, sec) in true.items()
    }
    clips = Clips(
        ["s"] * n,
        ["F"] * n,
        [30] * n,
        torch.zeros(n, t, 1, 1, 3, dtype=torch.uint8),
        0.01 * torch.randn(n, 16000 * t // fps),
        tracks,
    )
    fitted = fit_pose_drift(bundle, clips)
    for a, (std, sec) in true.items():
        assert fitted["std_deg"][a] == pytest.approx(std, rel=0.35), a
        assert fitted["sigma_frames"][a] == pytest.approx(sec * fps, rel=0.35), a
    drift = sample_pose_drift(bundle, 400, seed=1)
    assert torch.equal(drift, sample_pose_drift(bundle, 400, seed=1))
    assert not torch.equal(drift, sample_pose_drift(bundle, 400, seed=2))
    spread = torch.stack([sample_pose_drift(bundle, t, seed=s) for s in range(200)]).std((0, 1))
    for k, a in enumerate(POSE_TRACKS):
        assert float(spread[k]) == pytest.approx(fitted["std_deg"][a], rel=0.3), a
    reference = torch.randn(4, 16, 16)
    with torch.no_grad():
        _, moving = animate(bundle, 0.1 * torch.randn(16000), reference, 25, steps=2, seed=3)
        _, still = animate(bundle, 0.1 * torch.randn(16000), reference, 25, steps=2, seed=3, drift=False)
    assert float(moving[:, 0].std()) > 0.1 and float(still.abs().max()) == 0.0  # the mean pose holds still
    # A talker saved before the drift: no drift buffers, it loads and holds the mean.
    (tmp_path / "face").mkdir()  # the face autoencoder folder save_pretrained copies (not read here)
    bundle.save_pretrained(tmp_path / "talker", tmp_path / "face")
    state = load_file(str(tmp_path / "talker" / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("pose_drift")},
        str(tmp_path / "talker" / "model.safetensors"),
    )
    old = TalkerBundle.from_pretrained(tmp_path / "talker")
    assert float(old.pose_drift_std.abs().sum()) == 0.0


def test_training_starts_from_a_shipped_talker_only_in_its_own_latent_space(tmp_path):
    """talker.init loads a trained talker to fine-tune; another architecture, another face autoencoder or an
    altered shipped folder is refused with what to do."""
    from dataclasses import replace

    from safetensors.torch import save_file
    from torch import nn

    from sclmd.errors import SclmdError
    from sclmd.models.shipped import write_checksums
    from sclmd.models.talker import TalkerBundle
    from sclmd.train.talker import start_from_talker

    class Face(nn.Module):  # stands for models/pretrain's SpeechFaceModel: only its decoder is compared
        def __init__(self, seed: int):
            super().__init__()
            torch.manual_seed(seed)
            self.face_decoder = nn.Linear(4, 4)

    face = Face(0)
    (tmp_path / "face").mkdir()
    save_file(
        {f"face_decoder.{k}": v.contiguous() for k, v in face.face_decoder.state_dict().items()},
        str(tmp_path / "face/model.safetensors"),
    )
    torch.manual_seed(1)
    trained = TalkerBundle(_small_config())
    trained.pose_drift_std.fill_(3.0)
    folder = tmp_path / "weights/dae-talker"
    trained.save_pretrained(folder, tmp_path / "face")
    write_checksums(folder)
    torch.manual_seed(2)
    fresh = TalkerBundle(_small_config())
    assert start_from_talker(fresh, str(folder), tmp_path, face) == folder
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in fresh.state_dict().items())
    with pytest.raises(SclmdError, match="another face autoencoder's latent space"):
        start_from_talker(TalkerBundle(_small_config()), str(folder), tmp_path, Face(5))
    with pytest.raises(SclmdError, match="does not fit the talker params.*motion_dim: 16 there, 8 here"):
        start_from_talker(TalkerBundle(replace(_small_config(), motion_dim=8)), str(folder), tmp_path, face)
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(SclmdError, match="does not match its sha256"):
        start_from_talker(fresh, str(folder), tmp_path, face)
    with pytest.raises(SclmdError, match="not found"):
        start_from_talker(fresh, "weights/none", tmp_path, face)


def test_motion_is_the_difference_of_two_frames_codes():
    from sclmd.models.talker import DiffusionAutoencoder, TalkerBundle
    from sclmd.train.talker import semantic_codes, set_code_statistics

    torch.manual_seed(0)
    dae = DiffusionAutoencoder(_small_config()).eval()
    frames = torch.randn(3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(dae.motion(frames, frames), torch.zeros(3, 16))  # a frame has not moved from itself
        z = dae.motion(frames[:1], frames[1:2])
        assert torch.allclose(z, dae.encoder(frames[:1]) - dae.encoder(frames[1:2]))
    bundle = TalkerBundle(_small_config())
    # Clips whose codes are a constant per clip (identity) plus motion of spread 1 in every dimension.
    codes = 10 * torch.randn(5, 1, 16) + torch.randn(5, 400, 16)
    set_code_statistics(bundle, codes)
    assert torch.allclose(bundle.motion_std, torch.full((16,), 2**0.5), atol=0.1)  # identity does not count
    assert bundle.code_std.min() > 3  # but it does in the codes the reference enters as
    latents = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(semantic_codes(bundle, latents)[1, 2], bundle.dae.encoder(latents[1, 2:3])[0], atol=1e-5)


def test_speech_features_are_per_video_frame():
    from sclmd.models.talker import SpeechFrames, frames_for

    cfg = _small_config()
    wave = torch.randn(2, 16000 * 2)
    features = SpeechFrames(cfg)(wave)
    assert features.shape == (2, frames_for(wave.shape[-1], cfg), cfg.feature_dim) == (2, 50, 320)
    # Loudness does not matter (each band is normalised over the utterance).
    assert (SpeechFrames(cfg)(0.01 * wave) - features).abs().mean() < 0.01


def test_probe_reads_what_it_was_trained_on():
    from sclmd.evaluate.talker import correlation, probe_read, train_probe

    generator = torch.Generator().manual_seed(0)
    n = 128
    opening = torch.rand(n, generator=generator)
    images = -torch.ones(n, 3, 64, 64)
    for i in range(n):  # a dark bar whose height is the opening
        images[i, :, 40 : 40 + int(2 + 14 * opening[i]), 24:40] = 1.0
    targets = torch.stack([opening, torch.zeros(n), torch.zeros(n), torch.zeros(n)], -1)
    probe = train_probe(images, targets, steps=60, batch_size=32, lr=2e-3, max_blur=0.0, seed=0)
    read = probe_read(probe, images)
    assert correlation(read[:, 0], opening.numpy()) > 0.9
    assert correlation(np.ones(5), np.arange(5)) == 0.0  # a still face: no lip sync, not NaN


# --- bad input to `sclmd talk` (no trained talker needed for these) ------------------------------


def test_talk_input_errors_name_the_file_and_the_fix(tmp_path):
    from sclmd.errors import SclmdError
    from sclmd.talk import load_face, load_pose, load_voice

    (tmp_path / "notaudio.wav").write_text("hello")
    with pytest.raises(SclmdError, match="notaudio.wav: not readable as audio"):
        load_voice(tmp_path / "notaudio.wav", 16000)
    import soundfile as sf

    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(SclmdError, match="silent.wav: silent"):
        load_voice(tmp_path / "silent.wav", 16000)
    (tmp_path / "face.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SclmdError, match="face.png: not a readable image.*Give a face image"):
        load_face(tmp_path / "face.png", 64)
    (tmp_path / "pose.csv").write_text("yaw,pitch\n1,2\n")
    with pytest.raises(SclmdError, match="missing: roll"):
        load_pose(tmp_path / "pose.csv", 1)
    (tmp_path / "pose.csv").write_text("yaw,pitch,roll\n1,2,3\n1,x,3\n")
    with pytest.raises(SclmdError, match="row 3: yaw, pitch and roll must be numbers"):
        load_pose(tmp_path / "pose.csv", 2)
    (tmp_path / "pose.csv").write_text("yaw,pitch,roll\n1,2,3\n")
    with pytest.raises(SclmdError, match="1 rows, but the voice lasts 5 frames"):
        load_pose(tmp_path / "pose.csv", 5)
    np.save(tmp_path / "pose.npy", np.zeros((5, 2)))
    with pytest.raises(SclmdError, match=r"expected \[frames, 3\]"):
        load_pose(tmp_path / "pose.npy", 5)
    np.save(tmp_path / "pose.npy", np.ones((6, 3)))
    assert load_pose(tmp_path / "pose.npy", 5).shape == (5, 3)
    from sclmd.talk import talk

    with pytest.raises(SclmdError, match="--code 'random' is not one of: noise, inversion"):  # before any model loads
        talk(tmp_path / "silent.wav", tmp_path / "out.mp4", code="random", talker_dir=tmp_path / "none")
    assert not (tmp_path / "out.mp4").exists()


def test_val_clips_are_optional_but_a_broken_val_clip_is_an_error(tmp_path):
    from sclmd.errors import SclmdError
    from sclmd.train.talker import has_clips, load_clips

    assert not has_clips(tmp_path, "val")  # no manifest yet
    (tmp_path / "manifest.csv").write_text(
        "speaker_id,split,gender,age,video,tracks\nvs0001,train,f,30,train/vs0001.mp4,train/vs0001.npz\n"
    )
    assert has_clips(tmp_path, "train") and not has_clips(tmp_path, "val")
    with (tmp_path / "manifest.csv").open("a") as f:
        f.write("vs0002,val,m,40,../../etc/passwd,val/vs0002.npz\n")
    assert has_clips(tmp_path, "val")
    with pytest.raises(SclmdError, match="row 3: path outside"):
        load_clips(tmp_path, "val")
