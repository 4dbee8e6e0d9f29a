"""`sclmd generate`: voice files in, face PNGs out.

Each input is decoded (any format PyAV or libsndfile reads), mixed to mono, resampled
to the training rate and looped or cut to the training length, exactly as `prepare`
does for training clips.  Each file is generated with its own generator seeded by
`--seed`, so a file's faces do not depend on what else is in the batch.  A file that
cannot be used is reported by name and skipped; the others are still generated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sclmd.errors import ClipRejected, SclmdError

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".mp3",
    ".m4a",
    ".aac",
    ".ogg",
    ".opus",
    ".mp4",
    ".m4v",
    ".webm",
    ".mkv",
    ".mov",
    ".avi",
    ".aiff",
    ".aif",
    ".au",
    ".wma",
}
DEFAULT_CHECKPOINT = Path("models/ldm")
DEFAULT_BASELINES = Path("models/baselines")
# Quieter than this is not speech: the same floor the embedded default's `prepare` uses.
SILENCE_DBFS = -55.0
MIN_SECONDS = 0.5


@dataclass
class Outcome:
    source: Path
    outputs: list[Path]
    error: str | None = None


def collect_inputs(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(file, output stem relative to OUT) for each input; a folder gives its audio files, recursively."""
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise SclmdError(
                    f"{path}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
                )
            found += [(f, f.relative_to(path).with_suffix("")) for f in files]
        elif path.exists():
            found.append((path, Path(path.stem)))
        else:
            raise SclmdError(f"{path}: no such file or folder")
    stems = [str(stem) for _, stem in found]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise SclmdError(
            f"several inputs would write the same output name: {', '.join(clashes[:5])}. "
            "Give them different names or pass their folder instead."
        )
    return found


def load_wave(path: Path, sample_rate: int, clip_seconds: float) -> np.ndarray:
    """float32 [samples] in [-1, 1], ready for the speech encoder; ClipRejected if unusable."""
    from sclmd.config import DataParams
    from sclmd.data.audio import prepare_audio

    data = DataParams(sample_rate=sample_rate, clip_seconds=clip_seconds)
    # Decode only the window that is used (plus a margin for resampling): a long or highly
    # compressed upload must not decode to hours of audio first.
    prepared = prepare_audio(path, data, min_seconds=MIN_SECONDS, silence_dbfs=SILENCE_DBFS, end=clip_seconds + 1.0)
    return prepared.samples.astype(np.float32) / 32768.0


def generate_files(
    inputs: list[Path],
    out_dir: Path,
    checkpoint: Path = DEFAULT_CHECKPOINT,
    *,
    samples: int = 1,
    seed: int = 0,
    steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    prior_weight: float | None = None,
    device: str = "auto",
    progress: bool = True,
    method: str = "scldm",
    baselines: Path = DEFAULT_BASELINES,
) -> list[Outcome]:
    """Faces for `inputs` by `method`: SCLDM (the pipeline at `checkpoint`), or one of the baselines in
    `baselines` (which draw one deterministic face per voice; the regressions draw through the
    pipeline's decoder, the GANs from the waveform)."""
    import torch
    from tqdm import tqdm

    from sclmd.evaluate.plots import face_png, plot_face_grid
    from sclmd.io import atomic_file
    from sclmd.models.baselines import METHODS as REGRESSIONS
    from sclmd.models.gan_baselines import GAN_METHODS
    from sclmd.models.ldm import SAMPLERS
    from sclmd.models.pipeline import SpeechToFacePipeline

    methods = ("scldm", *REGRESSIONS, *GAN_METHODS)

    if method not in methods:
        raise SclmdError(f"--method '{method}' is not one of: {', '.join(methods)}")
    if samples < 1:
        raise SclmdError(f"--samples must be 1 or more, got {samples}")
    if method != "scldm" and samples != 1:
        raise SclmdError(f"--method {method} draws one face per voice (it has no noise input): use --samples 1")
    if steps is not None and steps < 1:
        raise SclmdError(f"--steps must be 1 or more, got {steps}")
    if sampler is not None and sampler not in SAMPLERS:
        raise SclmdError(f"--sampler '{sampler}' is not one of: {', '.join(SAMPLERS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise SclmdError(f"--device {device}: CUDA is not available here. Use --device cpu (or auto).")
    files = collect_inputs(inputs)
    pipeline = SpeechToFacePipeline.from_pretrained(checkpoint).to(device)
    baseline = None
    if method != "scldm":
        from sclmd.models.baselines import load_baselines

        found = load_baselines(baselines)
        if method not in found:
            raise SclmdError(
                f"{baselines}: no {method} baseline (written before it existed). Run `sclmd stage baselines`."
            )
        baseline = found[method].to(device)
    rate, seconds = int(pipeline.data["sample_rate"]), float(pipeline.data["clip_seconds"])
    out_dir = Path(out_dir)
    outcomes: list[Outcome] = []
    for source, stem in tqdm(files, desc="generate", unit="file", disable=not progress or len(files) < 2):
        try:
            wave = torch.from_numpy(load_wave(source, rate, seconds))[None]
        except ClipRejected as e:
            outcomes.append(Outcome(source, [], e.reason))
            continue
        emb = pipeline.speech_embedding(wave)
        if baseline is None:
            faces = pipeline(
                emb,
                seed=seed,
                samples=samples,
                steps=steps,
                sampler=sampler,
                guidance=guidance,
                prior_weight=prior_weight,
            )
        else:
            from sclmd.models.baselines import draw_baseline

            with torch.no_grad():
                faces = draw_baseline(baseline, pipeline.encoders.face_decoder, emb, wave.to(device)).cpu()
        target = out_dir / stem
        if samples == 1:
            paths = [target.with_name(target.name + ".png")]
        else:
            paths = [target.with_name(f"{target.name}_{k + 1}.png") for k in range(samples)]
        for face, path in zip(faces, paths):
            with atomic_file(path) as tmp:
                tmp.write_bytes(face_png(face))
        if samples > 1:
            grid = target.with_name(target.name + "_grid.png")
            plot_face_grid(faces[None].cpu(), [source.name], [f"sample {k + 1}" for k in range(samples)], grid)
            paths.append(grid)
        outcomes.append(Outcome(source, paths))
    return outcomes
