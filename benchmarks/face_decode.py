"""The face decoder at inference: one batch of 200 latents against `FaceDecoder.decode` (chunks, channels-last).

Every generated face and every talking-face frame leaves the latent space through the first stage's
decoder (4 x 16 x 16 -> 3 x 64 x 64). Its 64 px layers hold 48-96 channels, so a batch of 200 frames
streams ~150 MB of activations per layer through the caches. The reference is that one batch of 200
in the default (contiguous) layout, what `TalkingFace.decode_latents` did before; the rows time the same
200 latents in smaller chunks, in both layouts, on the `make run` decoder's shape (random weights: the
speed does not depend on them). Rounds alternate the variants so a drifting machine hits all alike;
the fastest round counts. Also checks that `decode` gives `forward`'s result.

    python benchmarks/face_decode.py [--rounds 3] [--frames 200]

Writes benchmarks/results/face_decode.json and .md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dataloader import machine, save_results  # noqa: E402
from sclmd.config import load_params  # noqa: E402
from sclmd.models.face_autoencoder import FaceDecoder, face_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def variants(decoder: FaceDecoder) -> dict:
    def chunked(chunk: int, channels_last: bool):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return lambda z: torch.cat(
            [decoder(z[s : s + chunk].contiguous(memory_format=fmt)) for s in range(0, len(z), chunk)]
        )

    return {
        "batch 200, contiguous (reference)": chunked(200, False),
        "chunks of 32, contiguous": chunked(32, False),
        "batch 200, channels-last": chunked(200, True),
        "chunks of 32, channels-last (`decode`)": lambda z: decoder.decode(z),
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    params = load_params(ROOT / "params.yaml")
    p = params.pretrain
    cfg = face_config(
        p.size,
        p.embed_dim,
        p.latent_channels,
        params.data.image_size,
        latent_downsample=p.latent_downsample,
        decoder_width=p.decoder_width,
        latent_norm=p.latent_norm,
    )
    decoder = FaceDecoder(cfg).eval()
    z = torch.randn(args.frames, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    runs = variants(decoder)
    max_diff = float((decoder.decode(z) - decoder(z)).abs().max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for f in runs.values():  # warm-up: oneDNN picks its kernels
        f(z)
    for _ in range(args.rounds):
        for name, f in runs.items():
            started = time.perf_counter()
            f(z)
            times[name].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in times.items()}
    reference = best["batch 200, contiguous (reference)"]
    result = {
        "machine": machine(),
        "date": str(date.today()),
        "frames": args.frames,
        "rounds": args.rounds,
        "times_s": times,
        "best_s": best,
        "speed_vs_reference": {k: reference / v for k, v in best.items()},
        "decode_max_abs_difference": max_diff,
    }
    body = [
        f"The first stage's decoder on {args.frames} latents, fastest of the rounds. Reference: one batch of "
        f"{args.frames}, contiguous, same run.",
        "",
        "| variant | seconds per 100 frames | speed vs reference |",
        "|---|---|---|",
    ]
    for name, seconds in best.items():
        body.append(f"| {name} | {seconds * 100 / args.frames:.3f} | {reference / seconds:.2f}x |")
    body += [
        "",
        f"`FaceDecoder.decode` against `forward`: largest absolute difference {max_diff:.1e} (float rounding).",
        "",
    ]
    save_results(
        "face_decode",
        result,
        "The face decoder at inference: chunks and channels-last (CPU)",
        f"{args.rounds} rounds.",
        body,
    )
    print("\n".join(body))


if __name__ == "__main__":
    main()
