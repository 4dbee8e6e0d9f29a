"""What the pre-trained encoders know, measured on speakers never seen in training.

- speech -> face retrieval recall@1/5/10 (test clips against one face per test speaker),
- reconstruction MAE and perceptual distance of the face autoencoder (test faces),
- linear probes on the speech embedding (fit on train speakers, scored on test):
  gender accuracy and age MAE.
The same function scores the randomly initialised model, the control.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sclmd.data.store import PackedClips
from sclmd.evaluate.embeddings import probe_age, probe_gender, retrieval_recall, similarity_matrix


@dataclass
class Embedded:
    speech: np.ndarray  # [N, D]
    face: np.ndarray  # [N, D]
    rows: "object"  # the split's manifest rows (pandas DataFrame)
    recon_mae: float
    recon_perceptual: float
    examples: tuple[np.ndarray, np.ndarray]  # (inputs, reconstructions) of the first clips
    latents: np.ndarray | None = None  # [N, C, h, w] face latents z (kept for `data/encoded`)


@torch.no_grad()
def embed_split(
    model, dataset: PackedClips, perceptual, batch_size: int, examples: int = 8, reconstruct: bool = True
) -> Embedded:
    """Speech and face embeddings of a split; with `reconstruct`, also the decoder's reconstruction
    errors (the train split's probes need only the embeddings: half the cost of scoring)."""
    model.eval()
    speech, face, latents, mae, perc = [], [], [], [], []
    shown: tuple[np.ndarray, np.ndarray] | None = None
    for start in range(0, len(dataset), batch_size):
        batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        images = batch.face_float()
        speech.append(model.speech_encoder(batch.audio_float()).numpy())
        z, emb = model.face_encoder(images)
        face.append(emb.numpy())
        latents.append(z.numpy())
        if not reconstruct:
            continue
        recon = model.face_decoder.decode(z)
        mae.append((recon - images).abs().mean(dim=(1, 2, 3)).numpy())
        perc.append(perceptual(recon, images).numpy())
        if shown is None:
            shown = (images[:examples].numpy(), recon[:examples].numpy())
    nan = float("nan")
    return Embedded(
        np.concatenate(speech),
        np.concatenate(face),
        dataset.rows,
        float(np.concatenate(mae).mean()) if mae else nan,
        float(np.concatenate(perc).mean()) if perc else nan,
        shown if shown is not None else (np.zeros(0), np.zeros(0)),
        np.concatenate(latents),
    )


def first_per_speaker(rows) -> np.ndarray:
    """Row positions of one clip (the first by clip id) per speaker, in speaker order."""
    ordered = rows.reset_index(drop=True).sort_values(["speaker_id", "clip_id"])
    return ordered.groupby("speaker_id", sort=True).head(1).index.to_numpy()


def speaker_means(values: np.ndarray, rows) -> tuple[np.ndarray, list[str]]:
    speakers = sorted(rows["speaker_id"].unique())
    ids = rows["speaker_id"].to_numpy()
    return np.stack([values[ids == s].mean(axis=0) for s in speakers]), speakers


def score(
    model, prepared: Path, perceptual, batch_size: int, split: str = "test", real_voices=None
) -> tuple[dict, dict]:
    """(metrics, artefacts for plots) of `model` on `split` (test, or val for model selection), probes fitted on train.

    With `real_voices` (`real_voices.Voices`), the same gender probe, fitted on the train split's
    speech embeddings, is also scored on those voices: `real_voices_gender_accuracy`, i.e. does
    what the speech encoder learnt about gender on the training data carry over to real speech?"""
    train = embed_split(model, PackedClips(prepared, "train"), perceptual, batch_size, reconstruct=False)
    test = embed_split(model, PackedClips(prepared, split), perceptual, batch_size)
    gallery = first_per_speaker(test.rows)
    metrics = retrieval_recall(
        test.speech,
        test.rows["speaker_id"].to_numpy(),
        test.face[gallery],
        test.rows["speaker_id"].to_numpy()[gallery],
    )
    metrics.update(
        probe_gender(train.speech, train.rows["gender"].to_numpy(), test.speech, test.rows["gender"].to_numpy())
    )
    metrics.update(probe_age(train.speech, train.rows["age"].to_numpy(), test.speech, test.rows["age"].to_numpy()))
    if real_voices is not None and len(real_voices.voices):
        with torch.no_grad():
            real = model.eval().speech_encoder(real_voices.waves).numpy()
        probe = probe_gender(train.speech, train.rows["gender"].to_numpy(), real, real_voices.genders)
        metrics["real_voices_gender_accuracy"] = probe["gender_accuracy"]
        metrics["real_voices_n"] = len(real_voices.voices)
    metrics["recon_mae"] = test.recon_mae
    metrics[f"recon_{perceptual.name}"] = test.recon_perceptual
    speech_by_speaker, speakers = speaker_means(test.speech, test.rows)
    artefacts = {
        "similarity": similarity_matrix(speech_by_speaker, test.face[gallery]),
        "speakers": speakers,
        "examples": test.examples,
        "embedded": {"train": train, split: test},
    }
    return metrics, artefacts
