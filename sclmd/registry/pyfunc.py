"""The registered model: an MLflow pyfunc that takes voices and returns face PNGs.

Input, a DataFrame with one row per voice and one of these columns:

- `audio`: the audio file's bytes (any format `sclmd generate` reads). Over HTTP
  (`mlflow models serve`) the column is declared binary, so JSON carries it base64-encoded;
- `path`: a path to an audio file. A served model reads no paths unless the server was
  started with SCLMD_AUDIO_ROOT=DIR, and then only files inside DIR.

Params (optional, per request): `seed`, `samples`, `steps`, `guidance`, `prior_weight`.

Output, a DataFrame with one row per face: `input` (the row it answers), `sample` (0..K-1)
and `image` (base64 PNG).  A bad row raises an MlflowException naming the row and what is
wrong; MLflow's scoring server answers it with HTTP 400, never 500.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc

AUDIO_ROOT_ENV = "SCLMD_AUDIO_ROOT"
PIPELINE_ARTIFACT = "pipeline"  # the SpeechToFacePipeline folder (models/ldm) inside the model
MAX_SAMPLES = 16
MAX_AUDIO_BYTES = 50 * 1024 * 1024


def _bad_request(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _serving() -> bool:
    """True inside `mlflow models serve`: its app learns the model's path from this variable."""
    try:
        from mlflow.pyfunc.scoring_server import _SERVER_MODEL_PATH
    except ImportError:
        return False
    return _SERVER_MODEL_PATH in os.environ


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [ColSpec(DataType.binary, "audio", required=False), ColSpec(DataType.string, "path", required=False)]
    )
    outputs = Schema(
        [ColSpec(DataType.long, "input"), ColSpec(DataType.long, "sample"), ColSpec(DataType.string, "image")]
    )
    params = ParamSchema(
        [
            ParamSpec("seed", DataType.long, 0),
            ParamSpec("samples", DataType.long, 1),
            ParamSpec("steps", DataType.long, 0),
            ParamSpec("guidance", DataType.double, -1.0),
            ParamSpec("prior_weight", DataType.double, -1.0),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def sampling_options(params: dict[str, Any] | None) -> dict[str, Any]:
    """Request params -> pipeline keyword arguments; 0 / negative mean "the model's default"."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"seed", "samples", "steps", "guidance", "prior_weight"})
    if unknown:
        raise _bad_request(
            f"unknown param(s) {', '.join(unknown)}; known: seed, samples, steps, guidance, prior_weight"
        )
    try:
        samples = int(1 if params.get("samples") is None else params["samples"])
        options = {
            "seed": int(params.get("seed", 0) or 0),
            "samples": samples,
            "steps": int(params.get("steps", 0) or 0) or None,
        }
        for key in ("guidance", "prior_weight"):
            value = params.get(key)
            options[key] = None if value is None or float(value) < 0 else float(value)
    except (TypeError, ValueError) as e:
        raise _bad_request(f"params: {e}") from None
    if not 1 <= samples <= MAX_SAMPLES:
        raise _bad_request(f"params: samples must be 1..{MAX_SAMPLES}, got {samples}")
    return options


def _audio_bytes(value: Any, row: int) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):  # base64 given by hand in a string column
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _bad_request(f"row {row}: 'audio' is neither bytes nor valid base64") from None
    else:
        raise _bad_request(f"row {row}: 'audio' must be bytes or base64 text, got {type(value).__name__}")
    if not data:
        raise _bad_request(f"row {row}: 'audio' is empty")
    if len(data) > MAX_AUDIO_BYTES:
        raise _bad_request(f"row {row}: 'audio' is {len(data)} bytes; the limit is {MAX_AUDIO_BYTES}")
    return data


def _audio_path(value: Any, row: int) -> Path:
    if not isinstance(value, str) or not value:
        raise _bad_request(f"row {row}: 'path' must be a file path")
    root = os.environ.get(AUDIO_ROOT_ENV)
    path = Path(value).expanduser()
    if _serving() and not root:
        raise _bad_request(
            f"row {row}: this server reads no paths; send the file's bytes in 'audio' "
            f"(base64 in JSON), or start the server with {AUDIO_ROOT_ENV}=DIR"
        )
    if root:
        path = (Path(root) / path).resolve()
        if not path.is_relative_to(Path(root).resolve()):
            raise _bad_request(f"row {row}: '{value}' is outside {AUDIO_ROOT_ENV} ({root})")
    if not path.is_file():
        raise _bad_request(f"row {row}: '{value}': no such file")
    return path


class SpeechToFaceModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of `SpeechToFacePipeline` (the artifact `pipeline` is a models/ldm folder)."""

    def load_context(self, context) -> None:
        import torch

        from sclmd.models.pipeline import SpeechToFacePipeline

        device = os.environ.get("SCLMD_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pipeline = SpeechToFacePipeline.from_pretrained(Path(context.artifacts[PIPELINE_ARTIFACT])).to(device)

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import torch

        from sclmd.errors import ClipRejected
        from sclmd.evaluate.plots import face_png
        from sclmd.generate import load_wave

        if not isinstance(model_input, pd.DataFrame):
            raise _bad_request("expected a table with an 'audio' (bytes/base64) or a 'path' column")
        columns = [c for c in ("audio", "path") if c in model_input.columns]
        if not columns:
            raise _bad_request(
                f"no 'audio' or 'path' column (got: {', '.join(map(str, model_input.columns)) or 'none'})"
            )
        if len(model_input) == 0:
            raise _bad_request("the request has no rows")
        options = sampling_options(params)
        rate, seconds = int(self.pipeline.data["sample_rate"]), float(self.pipeline.data["clip_seconds"])
        waves = []
        with tempfile.TemporaryDirectory(prefix="sclmd-serve-") as tmp:
            for row, record in enumerate(model_input.to_dict("records")):
                audio = record.get("audio")
                given = audio is not None and not (isinstance(audio, float) and audio != audio)  # NaN: absent
                if given:
                    path = Path(tmp) / f"row{row}"
                    path.write_bytes(_audio_bytes(audio, row))
                else:
                    path = _audio_path(record.get("path"), row)
                try:
                    waves.append(load_wave(path, rate, seconds))
                except ClipRejected as e:
                    raise _bad_request(f"row {row}: unusable audio: {e.reason}") from None
        rows = []
        for row, wave in enumerate(waves):
            emb = self.pipeline.speech_embedding(torch.from_numpy(wave)[None])
            faces = self.pipeline(emb, **options)
            for k, face in enumerate(faces):
                rows.append({"input": row, "sample": k, "image": base64.b64encode(face_png(face)).decode("ascii")})
        return pd.DataFrame(rows, columns=["input", "sample", "image"])
