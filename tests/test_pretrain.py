"""Stage `pretrain`: checkpoints, kill-and-resume, outputs, and the offline LPIPS policy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from sclmd.errors import SclmdError
from sclmd.models.speech_face import SpeechFaceModel
from sclmd.train.checkpoints import CheckpointStore
from tests.conftest import TINY, deep_merge, make_project, wait_for

RESUMABLE = {"pretrain": {"max_steps": 40, "checkpoint_every": 5}}


def project_with_data(tmp_path, tiny_project, name: str, overrides: dict | None = None):
    root = make_project(tmp_path / name, overrides)
    shutil.copytree(tiny_project / "data/prepared", root / "data/prepared")
    return root


def stage(root, *, wait=True, env=None):
    cmd = [sys.executable, "-m", "sclmd", "stage", "pretrain"]
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )
    if wait:
        out, _ = proc.communicate(timeout=600)
        return proc.returncode, out
    return proc


def test_checkpoints_roundtrip_and_refuse_damage(tmp_path):
    model = SpeechFaceModel.from_params("small", 16, 4, 64)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    store = CheckpointStore(tmp_path / "ck", "hash-a", keep=2)
    for step in (1, 2, 3):
        store.save(step, model, opt, {"history": {}})
    assert [p.name for p in store.steps()] == ["step-0000002", "step-0000003"]  # keeps the last 2
    assert store.latest().name == "step-0000003"
    assert CheckpointStore(tmp_path / "ck", "hash-b").latest() is None  # other params: not resumed

    weights = tmp_path / "ck/step-0000003/model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(SclmdError, match="step-0000003: checkpoint is corrupt: model.safetensors does not match"):
        store.latest()
    shutil.rmtree(tmp_path / "ck/step-0000003")  # what the message says to do
    assert store.latest().name == "step-0000002"
    (tmp_path / "ck/step-0000002/optimizer.pt").unlink()
    with pytest.raises(SclmdError, match="optimizer.pt is missing"):
        store.latest()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tiny_project, tmp_path):
    straight = project_with_data(tmp_path, tiny_project, "straight", RESUMABLE)
    code, out = stage(straight)
    assert code == 0, out[-3000:]
    # a finished run leaves no checkpoint behind: the next run (new code, new data) starts fresh
    assert not (straight / "checkpoints/pretrain").exists()

    killed = project_with_data(tmp_path, tiny_project, "killed", RESUMABLE)
    proc = stage(killed, wait=False)
    wait_for(killed / "checkpoints/pretrain/step-0000005", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "reports/pretrain/metrics.json").exists()

    code, out = stage(killed)
    assert code == 0, out[-3000:]
    assert "resuming from" in out and "step-00000" in out
    assert (killed / "reports/pretrain/metrics.json").read_text() == (
        straight / "reports/pretrain/metrics.json"
    ).read_text()
    assert (killed / "models/pretrain/model.safetensors").read_bytes() == (
        straight / "models/pretrain/model.safetensors"
    ).read_bytes()

    metrics = json.loads((straight / "reports/pretrain/metrics.json").read_text())
    for side in ("trained", "control"):
        assert {"recall@1", "recall@5", "recall@10", "gender_accuracy", "age_mae", "recon_mae"} <= set(metrics[side])
    assert metrics["perceptual"]["perceptual_substitute"] is True  # no AlexNet weights on this machine
    model = SpeechFaceModel.from_pretrained(straight / "models/pretrain")
    assert model.face_encoder.config.latent_channels == 4
    plots = sorted(p.name for p in (straight / "reports/pretrain/plots").iterdir())
    assert plots == ["loss_curves.png", "reconstructions.png", "similarity.png", "trained_vs_control.png"]


@pytest.mark.slow
def test_missing_lpips_weights_fail_with_the_file_to_provide(tiny_project, tmp_path):
    root = project_with_data(tmp_path, tiny_project, "lpips", deep_merge(TINY, {"pretrain": {"lpips_missing": "fail"}}))
    code, out = stage(root, env={"TORCH_HOME": str(tmp_path / "empty_torch_home")})
    assert code == 2
    assert "alexnet-owt-7be5be79.pth" in out and str(tmp_path / "empty_torch_home") in out
    assert "Traceback" not in out
    assert not (root / "models/pretrain").exists()


def test_run_key_follows_params_and_data(tiny_project, tmp_path):
    from sclmd.config import load_params
    from sclmd.stages.pretrain import run_key

    a = project_with_data(tmp_path, tiny_project, "a")
    b = project_with_data(tmp_path, tiny_project, "b", deep_merge(TINY, {"pretrain": {"lr_face": 2e-4}}))
    key = run_key(load_params(a / "params.yaml"), a)
    assert key == run_key(load_params(a / "params.yaml"), a)
    assert key != run_key(load_params(b / "params.yaml"), b)
    import pandas as pd

    frame = pd.read_parquet(a / "data/prepared/manifest.parquet").iloc[:-1]
    frame.to_parquet(a / "data/prepared/manifest.parquet", index=False)
    assert key != run_key(load_params(a / "params.yaml"), a)


def test_voice_crops_are_seeded_windows_of_each_clip():
    from sclmd.train.pretrain import crop_voices

    wave = torch.arange(3 * 100, dtype=torch.float32).view(3, 100)
    crops = crop_voices(wave, 40, torch.Generator().manual_seed(7))
    again = crop_voices(wave, 40, torch.Generator().manual_seed(7))
    assert crops.shape == (3, 40) and torch.equal(crops, again)
    for row, crop in zip(wave, crops):
        start = int(crop[0] - row[0])
        assert 0 <= start <= 60 and torch.equal(crop, row[start : start + 40])  # a contiguous window
    assert crop_voices(wave, 0, torch.Generator()) is wave  # 0: the whole clip
    assert crop_voices(wave, 150, torch.Generator()) is wave  # longer than the clip: the whole clip


def test_mixed_precision_auto_follows_the_hardware(tmp_path):
    from sclmd.train.precision import cpu_has_native_bf16, resolve_mixed_precision

    with_bf16 = tmp_path / "cpuinfo-bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    without = tmp_path / "cpuinfo-plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_native_bf16(with_bf16) and not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # unknown: fp32, the safe choice
    assert resolve_mixed_precision("auto", cuda=False, native_cpu_bf16=True) == "bf16"
    assert resolve_mixed_precision("auto", cuda=False, native_cpu_bf16=False) == "no"
    assert resolve_mixed_precision("no", cuda=True) == "no" and resolve_mixed_precision("bf16", cuda=False) == "bf16"


def test_autoencoder_phase_batches_are_a_function_of_seed_and_step():
    from sclmd.train.pretrain import autoencoder_rows, learning_rate_factor

    rows, flips = autoencoder_rows(7, 100, 16, seed=3)
    again, flips_again = autoencoder_rows(7, 100, 16, seed=3)
    assert np.array_equal(rows, again) and np.array_equal(flips, flips_again)
    assert not np.array_equal(rows, autoencoder_rows(8, 100, 16, seed=3)[0])
    assert rows.min() >= 0 and rows.max() < 100 and flips.dtype == bool
    assert learning_rate_factor(-5, 10) == 0.0  # a phase that has not started trains nothing


def test_image_gradient_loss_sees_edges_that_a_blur_loses():
    from sclmd.train.pretrain import image_gradient_l1

    face = torch.zeros(1, 3, 16, 16)
    face[..., 6:9, 4:12] = 1.0  # a mouth-sized bar
    blurred = torch.nn.functional.avg_pool2d(face, 3, stride=1, padding=1)
    assert image_gradient_l1(face, face) == 0
    assert image_gradient_l1(blurred, face) > 0.5 * image_gradient_l1(torch.zeros_like(face), face)


def test_adaptive_adversarial_scale_is_the_ratio_of_gradient_norms_at_the_last_layer():
    from sclmd.train.pretrain import adaptive_adversarial_scale, hinge_discriminator_loss

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    out = layer(torch.randn(5, 8))
    reconstruction, adversarial = out.pow(2).mean(), -3.0 * out.mean()
    scale = adaptive_adversarial_scale(reconstruction, adversarial, layer.weight)
    g_rec = torch.autograd.grad(reconstruction, layer.weight, retain_graph=True)[0].norm()
    g_adv = torch.autograd.grad(adversarial, layer.weight, retain_graph=True)[0].norm()
    assert scale.item() == pytest.approx((g_rec / (g_adv + 1e-4)).item(), rel=1e-6)
    assert not scale.requires_grad  # a weight, not a path for gradients
    # scaled by it, the adversarial term pulls on the layer exactly as hard as the reconstruction
    pulled = torch.autograd.grad(scale * adversarial, layer.weight, retain_graph=True)[0].norm()
    assert pulled.item() == pytest.approx(g_rec.item(), rel=1e-3)
    # hinge: zero once real patches score >= 1 and fakes <= -1, positive otherwise
    assert hinge_discriminator_loss(torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)).item() == 0
    assert hinge_discriminator_loss(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)).item() == pytest.approx(2.0)


@pytest.mark.slow
def test_adversarial_pretraining_trains_the_discriminator_and_resumes_to_the_same_result(tiny_project, tmp_path):
    """The patch discriminator joins at adversarial_start, both sides learn, and a run resumed from
    a checkpoint (model, discriminator and both optimizers' state) ends where an unbroken one does."""
    from sclmd.config import load_params
    from sclmd.train.pretrain import train

    root = make_project(
        tmp_path / "gan",
        {
            "pretrain": {
                "face_init": None,  # the autoencoder trained in the run
                "adversarial_weight": 0.5,
                "adversarial_start": 2,
                "autoencoder_steps": 4,
                "max_steps": 2,
                "checkpoint_every": 3,
                "keep_checkpoints": 5,
            }
        },
    )
    params = load_params(root / "params.yaml")
    prepared = tiny_project / "data/prepared"
    straight = train(params.pretrain, params.data, prepared, CheckpointStore(tmp_path / "a", "k"))
    assert [s for s, _ in straight.history["loss_discriminator"]] == [3, 4, 5, 6]  # from step 2 (0-based) on
    assert all(v > 0 for _, v in straight.history["adversarial_scale"])
    assert (tmp_path / "a/step-0000003/model.safetensors").exists()
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "a/step-0000003/model.safetensors"))
    assert any(k.startswith("discriminator.") for k in saved) and any(k.startswith("model.") for k in saved)

    # the same run, stopped after the step-3 checkpoint and resumed
    store = CheckpointStore(tmp_path / "b", "k", keep=5)
    first = params.pretrain.model_copy(update={"autoencoder_steps": 3, "max_steps": 1})  # 4 steps, checkpoint at 3
    train(first, params.data, prepared, store)
    shutil.rmtree(tmp_path / "b/step-0000004")  # as if killed after the checkpoint at step 3
    resumed = train(params.pretrain, params.data, prepared, store)
    assert resumed.resumed_from == 3
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
