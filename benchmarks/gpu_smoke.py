"""The training loops on a GPU: steps/s in bf16 and the UNet's model FLOPs utilisation (MFU).

Runs pre-training (autoencoder and joint steps) on a prepared folder, then the LDM loop on the
encodings its model gives, each for `--steps` steps with mixed precision `--precision`
(bf16 by default), and reports steps/s.  MFU = the UNet training step's FLOPs (counted by
torch.utils.flop_counter on one forward + backward at the loop's batch) * steps/s / the
device's peak dense bf16 FLOP/s (`--peak-tflops`, else from a table of known GPUs).

    benchmarks/gpu_smoke.sh            # makes a small prepared set, then runs this on CUDA
    python benchmarks/gpu_smoke.py --prepared DIR [--steps 50] [--device cuda]

Writes benchmarks/results/gpu_smoke.json and .md with the machine it ran on.  `--device cpu`
runs the same code path on a CPU (no MFU, nothing written): a check of the script itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value
    return None


def unet_step_flops(net, batch: int, config, device) -> float:
    """FLOPs of one training step's forward + backward of the denoiser at `batch`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, config.latent_channels, config.latent_size, config.latent_size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    emb = torch.randn(batch, config.embed_dim, device=device)
    with FlopCounterMode(display=False) as counter:
        net(x, t, emb).float().pow(2).mean().backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "gpu_smoke: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU host, "
            "or with --device cpu to check the script."
        )

    import os

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from benchmarks.dataloader import machine, save_results
    from sclmd.config import load_params
    from sclmd.data.store import PackedClips
    from sclmd.train.checkpoints import CheckpointStore
    from sclmd.train.ldm import LatentDenoiser, encode_split, ldm_config, train_ldm
    from sclmd.train.pretrain import train

    params = load_params(REPO / "params.yaml")
    precision = args.precision if args.device == "cuda" else "no"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp) / "pretrain", "gpu-smoke")
        cfg = params.pretrain.model_copy(
            update={
                "autoencoder_steps": args.steps,
                "max_steps": args.steps,
                "resume": False,
                "mixed_precision": precision,
                "checkpoint_every": 10**9,
                "log_every": args.steps,
            }
        )
        started = time.perf_counter()
        pre = train(cfg, params.data, args.prepared, store)
        rows.append(
            (
                "pre-training (autoencoder + joint steps)",
                2 * args.steps,
                pre.steps_per_s,
                None,
                time.perf_counter() - started,
            )
        )

        encoded = encode_split(pre.model, PackedClips(args.prepared, "train"), 128, "gpu_smoke: encoding train")
        ldm_cfg = params.ldm.model_copy(
            update={
                "max_steps": args.steps,
                "resume": False,
                "mixed_precision": precision,
                "checkpoint_every": 10**9,
                "log_every": args.steps,
            }
        )
        config = ldm_config(ldm_cfg, encoded)
        started = time.perf_counter()
        ldm = train_ldm(
            ldm_cfg,
            config,
            encoded,
            torch.zeros(encoded.latents.shape[1:]),
            CheckpointStore(Path(tmp) / "ldm", "gpu-smoke"),
        )
        elapsed = time.perf_counter() - started
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    batch = min(ldm_cfg.batch_size, len(set(encoded.speakers.tolist())))
    flops = unet_step_flops(LatentDenoiser(config).to(device), batch, config, device)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(gpu) if args.device == "cuda" else None)
    mfu = flops * ldm.steps_per_s / (peak * 1e12) if peak else None
    rows.append(("LDM (UNet on precomputed encodings)", args.steps, ldm.steps_per_s, mfu, elapsed))

    result = {
        "device": gpu,
        "precision": precision,
        "steps": args.steps,
        "unet_step_gflops": flops / 1e9,
        "peak_bf16_tflops": peak,
        "loops": [dict(zip(("loop", "steps", "steps_per_s", "mfu", "wall_s"), r)) for r in rows],
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    body = ["| loop | steps | steps/s | UNet MFU | wall s |", "|---|---:|---:|---:|---:|"]
    body += [
        f"| {name} | {n} | {sps:.2f} | {'' if m is None else f'{100 * m:.2f}%'} | {wall:.0f} |"
        for name, n, sps, m, wall in rows
    ]
    body += [
        "",
        f"Device {gpu}, mixed precision {precision}. UNet training step at batch {batch}: "
        f"{flops / 1e9:.1f} GFLOP (forward + backward, torch.utils.flop_counter); peak "
        f"{peak if peak else 'n/a'} TFLOP/s dense bf16.",
    ]
    if args.device == "cuda":  # a CPU run checks the script; its numbers are not the benchmark's
        save_results("gpu_smoke", result, "Training loops on a GPU (smoke run)", f"Device: {gpu}.", body)
    print("\n".join(body))


if __name__ == "__main__":
    main()
