"""`sclmd demo`: a page on 127.0.0.1 where a person records or drops their voice and sees faces.

The page (`page.html`, one self-contained file: no script, style or font from anywhere else)
records from the microphone with the browser's MediaRecorder, or takes a dropped or chosen
audio file, and POSTs the bytes to `/api/faces`.  The server decodes them exactly as
`sclmd generate` does (any format PyAV reads, looped or cut to the training length), draws K
faces with the chosen pipeline and has the run's judges read each face's gender and age.

Bad uploads are answered with a status in the 4xx range and `{"error": "..."}` that the page
shows as it is: empty or without the page's X-Filename header (400), too large (413), not
usable as audio (422: unreadable, silent, too short).  Nothing a client sends can produce a 500; an unexpected
failure inside the
model is logged and answered 500 with a generic message, never a traceback.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from sclmd.errors import ClipRejected

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
PAGE = Path(__file__).with_name("page.html")
log = logging.getLogger(__name__)


@dataclass
class DemoModel:
    pipeline: "object"  # SpeechToFacePipeline
    judges: "object"  # Judges
    samples: int
    source: str  # what the page says the model is
    seed: int = 0


def _suffix(filename: str | None) -> str:
    """A safe suffix for the temp file (PyAV sniffs the format anyway; the suffix only helps it)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"


def faces_for_audio(model: DemoModel, data: bytes, filename: str | None) -> dict:
    """Upload bytes -> {"faces": [{"png": base64, "male_probability", "age"}], "summary": {...}}.
    ClipRejected when the bytes are not usable speech."""
    import torch

    from sclmd.evaluate.plots import face_png
    from sclmd.generate import load_wave

    pipeline = model.pipeline
    with tempfile.TemporaryDirectory(prefix="sclmd-demo-") as tmp:
        path = Path(tmp) / f"upload{_suffix(filename)}"
        path.write_bytes(data)
        try:
            wave = load_wave(path, int(pipeline.data["sample_rate"]), float(pipeline.data["clip_seconds"]))
        except ClipRejected as e:  # the reason names the temp file; the person knows their file by its name
            raise ClipRejected(e.reason.replace(f"'{path}'", "it").replace(str(path), "it")) from None
    emb = pipeline.speech_embedding(torch.from_numpy(wave)[None])
    faces = pipeline(emb, seed=model.seed, samples=model.samples)
    verdicts = model.judges(faces)
    shown = [
        {"png": base64.b64encode(face_png(face)).decode(), "male_probability": float(p), "age": float(a)}
        for face, p, a in zip(faces, verdicts.male_probability, verdicts.age)
    ]
    male = sum(f["male_probability"] > 0.5 for f in shown)
    return {
        "faces": shown,
        "summary": {
            "faces": len(shown),
            "judged_male": int(male),
            "judged_female": len(shown) - int(male),
            "mean_age": sum(f["age"] for f in shown) / len(shown),
        },
    }


def create_app(model: DemoModel) -> FastAPI:
    app = FastAPI(title="sclmd demo", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # one generation at a time: the model is not shared-state safe, and CPU-bound
    page = (
        PAGE.read_text(encoding="utf-8")
        .replace("{{SOURCE}}", html.escape(model.source))
        .replace("{{SAMPLES}}", str(model.samples))
        .replace("{{MAX_MB}}", str(MAX_UPLOAD_BYTES // 2**20))
    )

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "model": model.source, "samples": model.samples}

    def generate_locked(data: bytes, filename: str | None) -> dict:
        with lock:
            return faces_for_audio(model, data, filename)

    @app.post("/api/faces")
    async def api_faces(request: Request):
        # The page always sends X-Filename. Requiring it makes a cross-site request a non-simple
        # one, which a browser only sends after a CORS preflight that this server never grants.
        if "x-filename" not in request.headers:
            return error(400, "missing the X-Filename header (send uploads from the demo page, or set it).")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return error(
                413,
                f"the file is {int(declared) / 2**20:.1f} MB; the limit is "
                f"{MAX_UPLOAD_BYTES // 2**20} MB. Send a shorter recording (6 s are used).",
            )
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return error(
                    413,
                    f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB. Send a shorter recording (6 s are used).",
                )
        if not data:
            return error(400, "the upload is empty. Record your voice or choose an audio file.")
        filename = unquote(request.headers.get("x-filename") or "")[:200] or None
        try:  # in a worker thread: the page and /healthz stay answered while a voice is drawn
            return await run_in_threadpool(generate_locked, bytes(data), filename)
        except ClipRejected as e:
            name = f"'{filename}'" if filename else "the upload"
            return error(
                422,
                f"{name} cannot be used: {e.reason}. Record a few seconds of speech, or choose an "
                "audio file (wav, flac, mp3, m4a, ogg, webm...).",
            )
        except Exception:  # a bug, not the user's upload: say so without a traceback on the page
            log.exception("demo: generating faces failed")
            return error(500, "generating faces failed inside the model (see the server's log).")

    return app


def serve(model: DemoModel, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    uvicorn.run(create_app(model), host=host, port=port, log_level="warning")
