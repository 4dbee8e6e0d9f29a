"""The face prior, prior normalisation, the LDM loop (resume), and `sclmd generate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sclmd.config import LDMParams
from sclmd.errors import SclmdError
from sclmd.models.ldm import LDMConfig, SpeechCondition, make_scheduler, sample_latents, training_input
from sclmd.models.prior import FacePrior
from sclmd.train.prior import balanced_order, convergence, doubling_ladder

# --- the prior ------------------------------------------------------------------------


def test_balanced_order_every_prefix_is_balanced_and_capped():
    genders = np.array(["f"] * 7 + ["m"] * 3 + ["?"] * 2)
    order = balanced_order(genders, requested=100, seed=0)
    assert len(order) == 6  # capped by the 3 men
    assert list(genders[order]) == ["f", "m"] * 3
    assert len(set(order.tolist())) == 6
    assert np.array_equal(order, balanced_order(genders, requested=100, seed=0))
    assert len(balanced_order(genders, requested=4, seed=0)) == 4
    with pytest.raises(SclmdError, match="both genders"):
        balanced_order(np.array(["f", "f"]), requested=10, seed=0)


def test_doubling_ladder_and_convergence_match_direct_means():
    assert doubling_ladder(100, 16) == [16, 32, 64, 100]
    assert doubling_ladder(16, 16) == [16]
    latents = torch.randn(40, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    table = convergence(latents, [10, 20, 40])
    assert [(r["n1"], r["n2"]) for r in table] == [(10, 20), (20, 40)]
    direct = float(torch.linalg.vector_norm(latents[:40].double().mean(0) - latents[:20].double().mean(0)))
    assert table[1]["l2"] == pytest.approx(direct)
    assert table[1]["relative"] == pytest.approx(direct / float(torch.linalg.vector_norm(latents.double().mean(0))))


def test_prior_roundtrip_and_damaged_file(tmp_path):
    prior = FacePrior(torch.arange(8.0).view(2, 2, 2), n_faces=6, n_female=3, n_male=3, requested=10)
    prior.save(tmp_path / "prior", extra_files={"face.png": b"png"})
    back = FacePrior.load(tmp_path / "prior")
    assert torch.equal(back.mean, prior.mean) and back.capped and back.n_faces == 6
    (tmp_path / "prior/prior.safetensors").write_bytes(b"garbage")
    with pytest.raises(SclmdError, match="unreadable face prior"):
        FacePrior.load(tmp_path / "prior")
    with pytest.raises(SclmdError, match="sclmd stage prior"):
        FacePrior.load(tmp_path / "nothing")


# --- prior normalisation ----------------------------------------------------------------


class Recorder(torch.nn.Module):
    """A real (linear, deterministic) denoiser that records every input it is shown."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, tokens):
        self.seen.append(x.clone())
        return 0.1 * x + 0.01 * tokens.mean(dim=(1, 2)).view(-1, 1, 1, 1) + 0.001 * float(t)


def test_training_input_is_shifted_by_lambda_p():
    z_t, p = torch.randn(2, 4, 8, 8), torch.randn(4, 8, 8)
    assert torch.equal(training_input(z_t, p, 0.0), z_t)
    assert torch.allclose(training_input(z_t, p, 0.01), z_t + 0.01 * p)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_sampling_starts_at_eps_plus_lambda_p_and_steps_on_the_unshifted_latent(sampler):
    shape, p, lam, steps = (2, 4, 8, 8), torch.randn(4, 8, 8), 0.5, 5
    tokens = torch.ones(2, 3, 16)
    recorder = Recorder()
    out = sample_latents(
        recorder, make_scheduler(sampler), tokens, None, p, lam, steps, 1.0, torch.Generator().manual_seed(3), shape
    )
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(recorder.seen[0], noise + lam * p)  # the shifted chain starts at eps + lambda p

    # The same solver run by hand on the unshifted latent, the network shown x + lambda p.
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(steps)
    x = noise.clone()
    for i, t in enumerate(scheduler.timesteps):
        assert torch.allclose(recorder.seen[i], x + lam * p, atol=1e-6)
        x = scheduler.step(recorder.forward(x + lam * p, t, tokens), t, x).prev_sample
    assert torch.allclose(out, x, atol=1e-6)

    # lambda = 0 is the plain LDM: the network sees the latent itself
    plain = Recorder()
    sample_latents(
        plain, make_scheduler(sampler), tokens, None, p, 0.0, steps, 1.0, torch.Generator().manual_seed(3), shape
    )
    assert torch.allclose(plain.seen[0], noise)


def test_samplers_keep_the_training_schedule_whatever_config_object_they_get(tmp_path):
    """A live training config and the one read back from disk give the same sampling timesteps.

    Regression: a live config's `_use_default_values` made DPM-Solver++ start at t = 999,
    where the cosine schedule has no signal, and the samples exploded.
    """
    from diffusers import DDPMScheduler

    from sclmd.train.ldm import make_train_scheduler

    live = make_train_scheduler(LDMParams())
    live.save_pretrained(tmp_path)
    saved = DDPMScheduler.from_pretrained(tmp_path).config
    for sampler in ("ddim", "dpm++"):
        a, b = make_scheduler(sampler, live.config), make_scheduler(sampler, saved)
        a.set_timesteps(20)
        b.set_timesteps(20)
        assert torch.equal(a.timesteps, b.timesteps)
        assert int(a.timesteps[0]) < 999
        assert a.config.clip_sample is False if hasattr(a.config, "clip_sample") else True


def test_guidance_mixes_conditional_and_null_predictions():
    shape, p = (1, 4, 8, 8), torch.zeros(4, 8, 8)
    cond, null = torch.full((1, 2, 8), 2.0), torch.zeros(1, 2, 8)
    results = {
        g: sample_latents(
            Recorder(), make_scheduler("ddim"), cond, null, p, 0.0, 3, g, torch.Generator().manual_seed(0), shape
        )
        for g in (0.0, 1.0, 3.0)
    }
    unguided = sample_latents(
        Recorder(), make_scheduler("ddim"), cond, None, p, 0.0, 3, 3.0, torch.Generator().manual_seed(0), shape
    )
    assert torch.allclose(results[1.0], unguided)  # guidance 1 = the conditional prediction alone
    assert not torch.allclose(results[0.0], results[3.0])


def test_speech_condition_drops_to_the_learned_null():
    condition = SpeechCondition(embed_dim=6, n_tokens=3, cross_attention_dim=8)
    with torch.no_grad():
        condition.null.copy_(torch.randn(6))
    emb = torch.randn(4, 6)
    drop = torch.tensor([True, False, True, False])
    tokens = condition(emb, drop)
    assert tokens.shape == (4, 3, 8)
    null = condition.unconditional(1)[0]
    assert torch.allclose(tokens[0], null, atol=1e-6) and torch.allclose(tokens[2], null, atol=1e-6)
    assert not torch.allclose(tokens[1], null)
    assert torch.allclose(condition(emb * 5.0), condition(emb), atol=1e-5)  # length of the embedding is ignored


def test_speech_condition_reaches_the_time_embedding_when_asked():
    from sclmd.models.ldm import build_unet, run_unet

    config = LDMConfig(
        size="small",
        latent_channels=4,
        latent_size=8,
        embed_dim=16,
        n_tokens=2,
        cross_attention_dim=32,
        latent_scale=1.0,
    )
    torch.manual_seed(0)
    unet = build_unet(config).eval()
    assert unet.config.class_embed_type == "projection"
    x, t = torch.randn(1, 4, 8, 8), torch.tensor(500)
    tokens = torch.randn(1, 2, 32)
    shifted = tokens + torch.randn(1, 1, 32)  # same per-token differences, another mean
    with torch.no_grad():
        a, b = run_unet(unet, x, t, tokens), run_unet(unet, x, t, shifted)
    assert not torch.allclose(a, b)
    plain = build_unet(LDMConfig(**{**config.to_dict(), "time_conditioning": False}))
    assert plain.config.class_embed_type is None
    with torch.no_grad():
        assert run_unet(plain, x, t, tokens).shape == (1, 4, 8, 8)


# --- the training loop ----------------------------------------------------------------


def tiny_config() -> LDMConfig:
    return LDMConfig(
        size="small",
        latent_channels=4,
        latent_size=8,
        embed_dim=16,
        n_tokens=2,
        cross_attention_dim=32,
        latent_scale=1.0,
    )


def fake_encoded(n_speakers=6, per=2):
    from sclmd.train.ldm import Encoded

    g = torch.Generator().manual_seed(0)
    speakers = np.repeat([f"s{i}" for i in range(n_speakers)], per)
    return Encoded(
        torch.randn(len(speakers), 16, generator=g),
        torch.randn(len(speakers), 4, 8, 8, generator=g),
        speakers,
        torch.randn(len(speakers), 16, generator=g),
    )


def test_ldm_resumes_to_the_same_weights(tmp_path):
    from sclmd.train.checkpoints import CheckpointStore
    from sclmd.train.ldm import train_ldm

    params = LDMParams(batch_size=4, max_steps=6, checkpoint_every=3, log_every=1, warmup_steps=2, learning_rate=1e-3)
    encoded, prior = fake_encoded(), torch.randn(4, 8, 8)
    straight = train_ldm(params, tiny_config(), encoded, prior, CheckpointStore(tmp_path / "a", "k"))

    store = CheckpointStore(tmp_path / "b", "k")
    train_ldm(params, tiny_config(), encoded, prior, store)
    import shutil

    shutil.rmtree(store.steps()[-1])  # as if killed after the step-3 checkpoint
    assert store.steps()[-1].name == "step-0000003"
    resumed = train_ldm(params, tiny_config(), encoded, prior, store)
    assert resumed.resumed_from == 3
    for a, b in zip(straight.state.state_dict().values(), resumed.state.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history["loss"] == resumed.history["loss"]
    # EMA weights differ from the raw ones (they are what gets saved)
    assert any(not torch.equal(a, b) for a, b in zip(straight.state.net.parameters(), straight.state.ema.parameters()))


# --- stages and `sclmd generate` end to end -------------------------------------------------


@pytest.fixture(scope="module")
def trained_project(tiny_project, tmp_path_factory):
    import shutil

    from sclmd.stages import run_stage
    from tests.conftest import make_project

    root = make_project(tmp_path_factory.mktemp("ldm") / "project")
    shutil.copytree(tiny_project / "data/prepared", root / "data/prepared")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name in ("judges", "pretrain", "prior", "train_ldm"):
            run_stage(name, root)
    finally:
        os.chdir(cwd)
    return root


def test_auto_guidance_takes_the_best_gender_among_the_realistic_scales():
    from sclmd.stages.train_ldm import choose_guidance, gender_first_guidance

    check = {
        "by_guidance": {
            "g1": {"guidance": 1.0, "gender_accuracy": 0.60, "frechet": 30.0},
            "g3": {"guidance": 3.0, "gender_accuracy": 0.83, "frechet": 20.0},
            "g5": {"guidance": 5.0, "gender_accuracy": 0.85, "frechet": 24.0},
            "g8": {"guidance": 8.0, "gender_accuracy": 0.92, "frechet": 40.0},
        }
    }
    assert choose_guidance(check, 0.25) == 5.0  # within 25% of the lowest Fréchet distance, best gender
    assert choose_guidance(check, 0.0) == 3.0  # no tolerance: the most realistic scale only
    assert choose_guidance(check, 1.0) == 8.0  # any scale up to twice the lowest distance
    tie = {
        "by_guidance": {
            "g2": {"guidance": 2.0, "gender_accuracy": 0.8, "frechet": 10.0},
            "g4": {"guidance": 4.0, "gender_accuracy": 0.8, "frechet": 10.5},
        }
    }
    assert choose_guidance(tie, 0.25) == 2.0  # equal gender: the lower scale
    assert gender_first_guidance(check) == 8.0  # the previous rule, reported beside the choice
    with pytest.raises(ValueError):
        choose_guidance({"by_guidance": {}}, 0.25)


def test_prior_and_ldm_stages_write_their_outputs(trained_project):
    root = trained_project
    prior = json.loads((root / "reports/prior/metrics.json").read_text())
    assert prior["capped"] is True and prior["n_faces"] == prior["n_female"] + prior["n_male"]
    assert prior["convergence"] and all(row["l2"] >= 0 for row in prior["convergence"])
    assert (root / "reports/prior/convergence.png").stat().st_size > 0
    assert (root / "models/prior/prior_face.png").stat().st_size > 0

    ldm = json.loads((root / "reports/ldm/metrics.json").read_text())
    assert ldm["steps"] == 4 and np.isfinite(ldm["val_loss"]) and ldm["latent_scale"] > 0
    check = ldm["guidance_check"]
    assert sorted(check["by_guidance"]) == ["g1", "g2", "g4", "g8"]  # the params' scales
    assert check["clips"] >= 2 and check["chosen"]["rule"] == "auto"
    # read by the run's judges (the probe on the encoder's embedding saturates), as evaluate reads test
    assert check["judge"].startswith("the judges") and 0 <= check["real_gender_accuracy"] <= 1
    for scale in check["by_guidance"].values():
        assert scale["frechet"] >= 0 and (np.isnan(scale["gender_accuracy"]) or 0 <= scale["gender_accuracy"] <= 1)
    chosen = ldm["guidance"]
    assert chosen == check["chosen"]["guidance"] and f"g{chosen:g}" in check["by_guidance"]
    assert ldm["generated_frechet"] == check["by_guidance"][f"g{chosen:g}"]["frechet"]
    saved = json.loads((root / "models/ldm/sclmd.json").read_text())
    assert saved["sampling"]["guidance"] == chosen  # `sclmd generate` samples at the scale chosen on val
    plots = sorted(p.name for p in (root / "reports/ldm/plots").iterdir())
    assert plots == [
        "guidance.png",
        "loss_curves.png",
        "samples.png",
        "samples_step-0000002.png",
        "samples_step-0000004.png",
    ]
    model = root / "models/ldm"
    for name in (
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "condition.safetensors",
        "pretrain/model.safetensors",
        "prior/prior.safetensors",
        "sclmd.json",
    ):
        assert (model / name).exists(), name
    assert not (root / "checkpoints/ldm").exists()


def generate(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "sclmd", "generate", *map(str, args)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_generate_writes_faces_reproducibly_and_skips_bad_files(trained_project, tmp_path):
    root = trained_project
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    # any rate, channel count and length: 3 s of 44.1 kHz stereo noise-modulated tone
    t = np.arange(int(44100 * 3)) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 180 * t), np.sin(2 * np.pi * 200 * t)], 1) * (
        0.3 + 0.1 * rng.random((len(t), 1))
    )
    sf.write(clips / "stereo.flac", stereo, 44100)
    (clips / "empty.wav").write_bytes(b"")
    (clips / "notes.mp3").write_text("not audio at all")
    sf.write(clips / "silent.wav", np.zeros(16000 * 2), 16000)

    out = tmp_path / "faces"
    result = generate(root, clips, "-o", out, "--steps", "3", "--seed", "7")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "empty.wav: empty file" in result.stderr
    assert "notes.mp3: not readable as audio" in result.stderr
    assert "silent.wav: silent" in result.stderr
    assert "1 of 4 files done" in result.stdout
    first = (out / "stereo.png").read_bytes()
    from PIL import Image

    with Image.open(out / "stereo.png") as image:
        assert image.size == (64, 64) and image.mode == "RGB"

    again = generate(root, clips / "stereo.flac", "-o", tmp_path / "again", "--steps", "3", "--seed", "7")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again/stereo.png").read_bytes() == first  # same seed, same face
    other = generate(
        root,
        clips / "stereo.flac",
        "-o",
        tmp_path / "other",
        "--steps",
        "3",
        "--seed",
        "8",
        "--samples",
        "2",
        "--sampler",
        "ddim",
        "--guidance",
        "1",
        "--prior-weight",
        "0",
    )
    assert other.returncode == 0, other.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["stereo_1.png", "stereo_2.png", "stereo_grid.png"]
    assert (tmp_path / "other/stereo_1.png").read_bytes() != first


def test_generate_draws_a_face_for_a_test_speakers_clip(trained_project, tiny_project, tmp_path):
    import pandas as pd

    manifest = pd.read_parquet(tiny_project / "data/prepared/manifest.parquet")
    clip = manifest[manifest["split"] == "test"].iloc[0]
    wav = tiny_project / "data/raw/voxsynth" / clip["audio_source"]
    result = generate(trained_project, wav, "-o", tmp_path / "faces", "--steps", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    with Image.open(tmp_path / "faces" / f"{wav.stem}.png") as image:
        pixels = np.asarray(image)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0  # a picture, not a blank


def test_generate_refuses_a_missing_checkpoint(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(160), 16000)
    result = generate(tmp_path, wav, "-o", tmp_path / "out", "--checkpoint", tmp_path / "nowhere")
    assert result.returncode == 2
    assert "not a trained sclmd pipeline" in result.stderr and "Traceback" not in result.stderr


def test_min_snr_weighting_caps_only_the_nearly_clean_timesteps():
    from sclmd.train.ldm import epsilon_loss

    g = torch.Generator().manual_seed(0)
    eps, noise = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    per_sample = (eps - noise).pow(2).mean(dim=(1, 2, 3))
    # SNR = a / (1 - a): 0 (pure noise), 1, 9 and 99
    alpha_bar = torch.tensor([0.0, 0.5, 0.9, 0.99])
    assert torch.allclose(epsilon_loss(eps, noise, alpha_bar, None), torch.nn.functional.mse_loss(eps, noise))
    weights = torch.tensor([1.0, 1.0, 5.0 / 9.0, 5.0 / 99.0])
    weighted = epsilon_loss(eps, noise, alpha_bar, 5.0)
    assert torch.isfinite(weighted)
    assert torch.allclose(weighted, (weights * per_sample).mean())


def test_v_prediction_target_recovers_the_clean_latent():
    from sclmd.train.ldm import prediction_target

    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(5, 4, 16, 16, generator=g), torch.randn(5, 4, 16, 16, generator=g)
    alpha_bar = torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001])
    assert torch.equal(prediction_target(z0, noise, alpha_bar, "epsilon"), noise)
    v = prediction_target(z0, noise, alpha_bar, "v_prediction")
    a = alpha_bar.view(-1, 1, 1, 1)
    noisy = a.sqrt() * z0 + (1 - a).sqrt() * noise
    # x0 = sqrt(a) x_t - sqrt(1 - a) v, the identity diffusers' schedulers use to sample from v
    assert torch.allclose(a.sqrt() * noisy - (1 - a).sqrt() * v, z0, atol=1e-5)
    with pytest.raises(ValueError):
        prediction_target(z0, noise, alpha_bar, "sample")


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_samplers_built_from_a_v_prediction_training_schedule_sample_with_v(sampler):
    """Every sampler built from the saved training schedule reads the network's output as v, and an
    oracle network that answers the v of one known latent leads it back to that latent."""
    from sclmd.train.ldm import make_train_scheduler, prediction_target

    trained = make_train_scheduler(LDMParams(prediction_type="v_prediction"))
    alphas = trained.alphas_cumprod
    z0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))

    def oracle_v(x, t, tokens):  # the training target of the noise that x holds around z0
        a = alphas[int(t)]
        return prediction_target(z0, (x - a.sqrt() * z0) / (1 - a).sqrt(), a.expand(len(z0)), "v_prediction")

    scheduler = make_scheduler(sampler, trained.config)
    assert scheduler.config.prediction_type == "v_prediction"
    out = sample_latents(
        oracle_v,
        scheduler,
        torch.zeros(2, 1, 8),
        None,
        torch.zeros(4, 8, 8),
        0.0,
        4,
        1.0,
        torch.Generator().manual_seed(2),
        tuple(z0.shape),
    )
    assert torch.allclose(out, z0, atol=1e-2)
    if sampler == "ddim":  # one step's clean-latent estimate: right read as v, wrong read as epsilon
        scheduler.set_timesteps(4)
        t = scheduler.timesteps[1]
        a = alphas[int(t)]
        noisy = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(scheduler.step(oracle_v(noisy, t, None), t, noisy).pred_original_sample, z0, atol=1e-4)
        as_epsilon = make_scheduler(
            sampler,
            {**{k: v for k, v in dict(trained.config).items() if not k.startswith("_")}, "prediction_type": "epsilon"},
        )
        as_epsilon.set_timesteps(4)
        wrong = as_epsilon.step(oracle_v(noisy, t, None), t, noisy).pred_original_sample
        assert not torch.allclose(wrong, z0, atol=1e-1)


def test_learning_rate_warms_up_then_stays_or_decays_to_zero_by_cosine():
    from sclmd.train.pretrain import learning_rate_factor

    assert learning_rate_factor(-1, 10) == 0.0  # a phase that has not started
    assert learning_rate_factor(4, 10, 110, "cosine") == pytest.approx(0.5)  # warm-up is linear either way
    assert learning_rate_factor(60, 10, 110, "constant") == 1.0
    assert learning_rate_factor(10, 10, 110, "cosine") == pytest.approx(1.0)
    assert learning_rate_factor(60, 10, 110, "cosine") == pytest.approx(0.5)  # half-way through the decay
    assert learning_rate_factor(109, 10, 110, "cosine") < 0.01
    with pytest.raises(ValueError):
        learning_rate_factor(60, 10, 110, "linear")


def test_pretrain_writes_each_splits_encoding_once_and_it_matches_the_encoders(trained_project, tmp_path):
    """train_ldm, baselines and evaluate read data/encoded instead of encoding the splits again."""
    from sclmd.data.store import PackedClips
    from sclmd.errors import SclmdError
    from sclmd.models.speech_face import SpeechFaceModel
    from sclmd.train.ldm import encode_split, load_encoding

    root = trained_project
    weights = root / "models/pretrain/model.safetensors"
    encoders = SpeechFaceModel.from_pretrained(root / "models/pretrain")
    for split in ("train", "val", "test"):
        clips = PackedClips(root / "data/prepared", split)
        cached = load_encoding(root / "data/encoded", clips, split, weights)
        fresh = encode_split(encoders, clips, 128, split)
        for key in ("speech", "latents", "face_emb"):
            assert torch.allclose(getattr(cached, key), getattr(fresh, key), atol=1e-4), (split, key)
        assert list(cached.speakers) == list(fresh.speakers)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not these encoders")
    with pytest.raises(SclmdError, match="made by other encoders"):
        load_encoding(root / "data/encoded", clips, "test", other)
    with pytest.raises(SclmdError, match="dvc repro pretrain"):
        load_encoding(tmp_path / "nowhere", clips, "test", weights)
