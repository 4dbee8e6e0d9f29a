"""bf16 autocast against fp32 on the CPU: face-autoencoder training speed and quality in one run.

`mixed_precision: auto` turns bf16 autocast on for CPUs with native bf16 arithmetic
(AVX-512 BF16 or AMX; `sclmd.train.precision`).  This measures what that buys and
costs on the machine it runs on: the pretrain stage's autoencoder phase (same model,
loss, batches and seed) trained for `--steps` steps in fp32 (the reference) and in
bf16 autocast, each over `--seeds` seeds; then val reconstruction error of each,
evaluated in fp32.  "Equal quality" means the bf16 - fp32 difference of the mean is
within the seed-to-seed spread.  On a CPU without native bf16 the bf16 rows are
emulated and slow: that is the reason `auto` stays in fp32 there.

    python benchmarks/precision.py [--steps 120] [--seeds 2]   # needs data/prepared (make run)

Writes benchmarks/results/precision.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.config import load_params  # noqa: E402
from sclmd.data.store import PackedClips  # noqa: E402
from sclmd.models.perceptual import DSSIM  # noqa: E402
from sclmd.train.precision import cpu_has_native_bf16, resolve_mixed_precision  # noqa: E402
from sclmd.train.pretrain import autoencoder_rows, build_model, image_gradient_l1, jitter_colours  # noqa: E402


def train_once(params, data, train_set, val_faces, precision: str, seed: int, steps: int) -> dict:
    cfg = params.pretrain.model_copy(update={"seed": seed})
    model = build_model(cfg, data)
    encoder, decoder = model.face_encoder.train(), model.face_decoder.train()
    encoder.to(memory_format=torch.channels_last)
    decoder.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        [*encoder.parameters(), *decoder.parameters()], cfg.lr_face_from_scratch, weight_decay=cfg.weight_decay
    )
    dssim = DSSIM()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    started = None
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps (oneDNN picks its kernels)
            started = time.perf_counter()
        rows, flips = autoencoder_rows(step, len(train_set), cfg.autoencoder_batch_size, seed)
        face = train_set.faces_float(rows)
        face = torch.where(torch.from_numpy(flips)[:, None, None, None], face.flip(-1), face)
        face = jitter_colours(face, torch.Generator().manual_seed(seed * 1_000_003 + step), cfg.colour_jitter)
        face = face.contiguous(memory_format=torch.channels_last)
        with autocast:
            recon = decoder(encoder.encode(face)).float()
        loss = (
            (recon - face).abs().mean()
            + cfg.perceptual_weight * dssim(recon, face).mean()
            + cfg.gradient_weight * image_gradient_l1(recon, face)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - started) / steps
    encoder.eval(), decoder.eval()
    with torch.no_grad():
        recon = torch.cat([decoder(encoder.encode(val_faces[i : i + 128])) for i in range(0, len(val_faces), 128)])
        mae = float((recon - val_faces).abs().mean() / 2)  # on a 0-1 scale
        structural = float(dssim(recon, val_faces).mean())
    return {"precision": precision, "seed": seed, "s_per_step": seconds, "val_mae": mae, "val_dssim": structural}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    params = load_params(Path("params.yaml"))
    prepared = Path("data/prepared")
    if not (prepared / "manifest.parquet").exists():
        sys.exit("benchmarks/precision.py needs data/prepared: run `make run` (or `dvc repro validate`) first")
    train_set, val_set = PackedClips(prepared, "train"), PackedClips(prepared, "val")
    val_faces = val_set.faces_float(np.arange(len(val_set)))
    runs = [
        train_once(params, params.data, train_set, val_faces, precision, seed, args.steps)
        for seed in range(args.seeds)
        for precision in ("no", "bf16")
    ]
    summary = {}
    for precision in ("no", "bf16"):
        mine = [r for r in runs if r["precision"] == precision]
        summary[precision] = {k: float(np.mean([r[k] for r in mine])) for k in ("s_per_step", "val_mae", "val_dssim")}
        summary[precision]["val_mae_seed_spread"] = float(np.ptp([r["val_mae"] for r in mine]))
    speedup = summary["no"]["s_per_step"] / summary["bf16"]["s_per_step"]
    gap = summary["bf16"]["val_mae"] - summary["no"]["val_mae"]
    noise = max(summary["no"]["val_mae_seed_spread"], summary["bf16"]["val_mae_seed_spread"])
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "seeds": args.seeds,
        "batch_size": params.pretrain.autoencoder_batch_size,
        "native_cpu_bf16": cpu_has_native_bf16(),
        "auto_resolves_to": resolve_mixed_precision("auto", cuda=False),
        "runs": runs,
        "summary": summary,
        "bf16_speedup_vs_fp32": speedup,
        "val_mae_gap_bf16_minus_fp32": gap,
        "val_mae_seed_spread": noise,
        "equal_quality_within_noise": bool(abs(gap) <= noise),
    }
    body = [
        f"Face-autoencoder training (the pretrain stage's autoencoder phase), {args.steps} steps at batch "
        f"{result['batch_size']}, {args.seeds} seeds per precision. Reference: fp32, same run.",
        "",
        "| precision | s/step | speed vs fp32 | val MAE (0-1) | val DSSIM | MAE spread over seeds |",
        "|---|---|---|---|---|---|",
        *[
            f"| {'fp32 (reference)' if p == 'no' else 'bf16 autocast'} | {s['s_per_step']:.3f} | "
            f"{summary['no']['s_per_step'] / s['s_per_step']:.2f}x | {s['val_mae']:.4f} | {s['val_dssim']:.4f} | "
            f"{s['val_mae_seed_spread']:.4f} |"
            for p, s in summary.items()
        ],
        "",
        f"Native bf16 on this CPU: {'yes' if result['native_cpu_bf16'] else 'no'}; `mixed_precision: auto` "
        f"resolves to `{result['auto_resolves_to']}` here. bf16 - fp32 val MAE: {gap:+.4f} against a seed spread "
        f"of {noise:.4f}: {'equal within noise' if result['equal_quality_within_noise'] else 'NOT within noise'}.",
        "",
    ]
    save_results("precision", result, "bf16 autocast vs fp32 (CPU)", f"{args.steps} steps x {args.seeds} seeds.", body)
    print("\n".join(body))


if __name__ == "__main__":
    main()
