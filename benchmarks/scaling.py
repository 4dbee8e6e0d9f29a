"""Training in 1 and 2 processes: steps/s and samples/s of the pre-training and LDM loops.

Each loop runs at the default config (params.yaml) for `--steps` steps, once in one process
(the reference) and once in two under `accelerate launch` (gloo on CPU, NCCL on GPUs), through
the launcher the stages use (`sclmd.launch`).  Pre-training runs its joint phase (speech and
face encoders, decoder, gathered contrastive loss) on the prepared data; the LDM loop runs on
tensors of the shapes the frozen encoders give (its inputs are precomputed in the real stage
too).  The global batch is the same in both runs: two processes hold half each.

On a 2-core CPU two processes cannot be faster than one that already uses both cores (each
gets one thread); the point there is that it runs and what the gradient all-reduce costs.

    python benchmarks/scaling.py [--steps 12] [--prepared data/prepared]

Writes benchmarks/results/scaling.json and .md, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_loop(loop: str, steps: int, prepared: Path, out: Path) -> None:
    """One process's part of a timed run (under a launcher or alone); process 0 writes `out`."""
    import numpy as np
    import torch

    from sclmd.config import load_params
    from sclmd.train.checkpoints import CheckpointStore

    params = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp) / "checkpoints", "benchmark")
        if loop == "pretrain":
            from sclmd.train.pretrain import train

            cfg = params.pretrain.model_copy(
                update={
                    "autoencoder_steps": 0,
                    "max_steps": steps,
                    "resume": False,
                    "checkpoint_every": 10**9,
                    "log_every": steps,
                }
            )
            result = train(cfg, params.data, prepared, store)
            batch = cfg.batch_size
        else:
            from sclmd.train.ldm import Encoded, ldm_config, train_ldm

            pre = params.pretrain
            size = params.data.image_size // pre.latent_downsample
            n, speakers = 1280, 640
            g = torch.Generator().manual_seed(0)
            encoded = Encoded(
                speech=torch.randn(n, pre.embed_dim, generator=g),
                latents=torch.randn(n, pre.latent_channels, size, size, generator=g),
                speakers=np.repeat(np.arange(speakers), n // speakers),
                face_emb=torch.randn(n, pre.embed_dim, generator=g),
            )
            cfg = params.ldm.model_copy(
                update={"max_steps": steps, "resume": False, "checkpoint_every": 10**9, "log_every": steps}
            )
            result = train_ldm(cfg, ldm_config(cfg, encoded), encoded, torch.zeros(encoded.latents.shape[1:]), store)
            batch = cfg.batch_size
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(
            json.dumps(
                {
                    "steps_per_s": result.steps_per_s,
                    "samples_per_s": result.steps_per_s * batch,
                    "processes": result.processes,
                    "global_batch": batch,
                }
            )
        )


def timed(loop: str, processes: int, steps: int, prepared: Path) -> dict:
    from sclmd.launch import free_port, launch_command

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = ["--worker", loop, "--steps", str(steps), "--prepared", str(prepared), "--out", str(out)]
        if processes == 1:
            cmd, env = [sys.executable, __file__, *args], dict(os.environ)
        else:
            import torch

            cmd, env = launch_command(processes, [], cpu=not torch.cuda.is_available(), port=free_port())
            cmd = cmd[: cmd.index("-m", cmd.index("--mixed_precision"))] + [__file__, *args]  # a script, not -m sclmd
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
        result["wall_s"] = time.perf_counter() - started  # with start-up: imports, process group, data
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    parser.add_argument("--worker", choices=("pretrain", "ldm"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_loop(args.worker, args.steps, args.prepared, args.out)
        return
    if not (args.prepared / "manifest.parquet").is_file():
        sys.exit(
            f"{args.prepared}: no prepared data. Run `make run` (or `sclmd stage prepare`) first, or pass --prepared."
        )

    from benchmarks.dataloader import machine, save_results

    rows, result = [], {}
    for loop in ("pretrain", "ldm"):
        one = timed(loop, 1, args.steps, args.prepared)
        two = timed(loop, 2, args.steps, args.prepared)
        result[loop] = {"one_process": one, "two_processes": two, "speedup": two["steps_per_s"] / one["steps_per_s"]}
        name = {"pretrain": "pre-training, joint phase", "ldm": "LDM"}[loop]
        for label, r in (("1 process (reference)", one), ("2 processes", two)):
            rows.append(
                f"| {name} | {label} | {r['global_batch']} | {r['steps_per_s']:.2f} | {r['samples_per_s']:.1f} "
                f"| {r['wall_s']:.0f} |"
            )
        rows.append(f"| {name} | ratio 2 / 1 | | {result[loop]['speedup']:.2f}x | {result[loop]['speedup']:.2f}x | |")
        print(rows[-3:], flush=True)
    result.update({"steps": args.steps, "machine": machine(), "date": time.strftime("%Y-%m-%d")})
    body = [
        "| loop | processes | global batch | steps/s | samples/s | wall s (with start-up) |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"{args.steps} timed steps per run, default params. Steps/s is over the loop only; wall time adds "
        "interpreter start-up, imports, the process group and data loading.",
    ]
    save_results(
        "scaling", result, "Training in 1 and 2 processes", "Two processes: gloo on CPU, one thread each.", body
    )
    print("\n".join(body))


if __name__ == "__main__":
    main()
