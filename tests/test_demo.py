"""`sclmd demo` end to end: the real server on 127.0.0.1, driven over HTTP and in a real headless chromium."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.browser import Browser, free_port
from tests.conftest import REPO

pytestmark = pytest.mark.slow

VOICE = REPO / "real_voices" / "czech_machac_M.flac"
SCREENSHOT = REPO / "reports" / "demo" / "last_test_run.png"  # gitignored: refreshed by every test run


@pytest.fixture(scope="module")
def demo(ran_pipeline):
    root = ran_pipeline[0]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = open(root.parent / f"demo-{port}.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "sclmd", "demo", "--checkpoint", "models/ldm", "--samples", "2", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                assert json.loads(response.read())["samples"] == 2
            break
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                log.seek(0)
                pytest.fail(f"sclmd demo did not start: {log.read()[-3000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(30)


def post(url: str, data: bytes, filename: str | None = "voice.flac") -> tuple[int, dict]:
    headers = {"Content-Type": "application/octet-stream", **({"X-Filename": filename} if filename else {})}
    request = urllib.request.Request(url + "/api/faces", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_answers_a_voice_with_judged_faces_and_bad_uploads_with_a_message(demo):
    from PIL import Image

    status, body = post(demo, VOICE.read_bytes())
    assert status == 200 and len(body["faces"]) == 2
    assert Image.open(io.BytesIO(base64.b64decode(body["faces"][0]["png"]))).size == (64, 64)
    assert body["summary"]["judged_male"] + body["summary"]["judged_female"] == 2
    assert all(0 <= f["male_probability"] <= 1 for f in body["faces"])

    status, body = post(demo, b"this is not audio at all", "notes.txt")
    assert status == 422 and "'notes.txt' cannot be used" in body["error"]
    assert "/tmp" not in body["error"] and "sclmd-demo-" not in body["error"]  # no server paths
    assert post(demo, b"")[0] == 400
    assert post(demo, VOICE.read_bytes(), None)[0] == 400  # not from the page: no X-Filename
    # too large: answered from the declared length, before any of the body is read
    connection = http.client.HTTPConnection(demo.removeprefix("http://"), timeout=60)
    connection.putrequest("POST", "/api/faces")
    for key, value in (
        ("Content-Length", str(26 * 2**20)),
        ("X-Filename", "big.wav"),
        ("Content-Type", "application/octet-stream"),
    ):
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "limit is 25 MB" in json.loads(response.read())["error"]
    connection.close()
    with urllib.request.urlopen(demo + "/", timeout=10) as response:
        page = response.read().decode()
    # self-contained: nothing is loaded from anywhere else
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page


def test_page_in_a_real_browser_upload_rejected_upload_and_microphone(demo, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(
            "chromium and chromium-driver are missing: `make test` installs them (apt-get install "
            "chromium chromium-driver)"
        )
    bad = tmp_path / "notes.txt"
    bad.write_text("not a voice")
    with Browser(fake_microphone=True) as browser:
        browser.get(demo + "/")
        assert "A face from your voice" in browser.text("h1")
        browser.upload("#file", VOICE)
        browser.wait_for("return document.querySelectorAll('#faces img').length === 2")
        assert "Judged male in" in browser.text("#summary") and browser.text("#error") == ""
        # the images really decoded (a broken data URL has naturalWidth 0)
        assert browser.script("return [...document.querySelectorAll('#faces img')].every(i => i.naturalWidth === 64)")
        browser.screenshot(SCREENSHOT)
        assert SCREENSHOT.stat().st_size > 10_000

        browser.upload("#file", bad)
        message = browser.wait_for("return document.querySelector('#error').textContent")
        assert "'notes.txt' cannot be used" in message
        assert browser.script("return document.querySelectorAll('#faces img').length") == 0

        # the microphone: chromium's fake capture device plays a test tone
        browser.click("#record")
        browser.wait_for("return document.querySelector('#record').textContent === 'Stop'", 30)
        assert browser.text("#error") == ""  # the last upload's message is gone
        time.sleep(2.0)
        browser.click("#record")
        status = browser.wait_for(
            "const s = document.querySelector('#status').textContent; "
            "return (s.startsWith('Faces for') || document.querySelector('#error').textContent) && s"
        )
        assert browser.text("#error") == "" and status == "Faces for your recording:"
        assert browser.script("return document.querySelectorAll('#faces img').length") == 2
