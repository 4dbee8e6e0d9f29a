"""A real headless browser for tests: Debian's chromium driven by its chromedriver over the W3C
WebDriver protocol (plain HTTP, so no client library is needed).  Nothing is downloaded: a
missing chromium or chromedriver is an error that says which Debian packages to install."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless chromium session. Use as a context manager."""

    def __init__(self, fake_microphone: bool = False, width: int = 1100, height: int = 900):
        browser, driver = _which(CHROMIUM), _which(DRIVER)
        if not browser or not driver:
            raise RuntimeError(
                "a browser test needs Debian's chromium and chromium-driver: "
                "apt-get install chromium chromium-driver (make test installs them when it can)"
            )
        self.port = free_port()
        self.driver = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            "--no-first-run",
            "--disable-extensions",
        ]
        if fake_microphone:  # a generated test signal instead of a microphone, and no permission prompt
            args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
        deadline = time.time() + 30
        while True:
            try:
                caps = {
                    "capabilities": {
                        "alwaysMatch": {
                            "browserName": "chrome",
                            "goog:chromeOptions": {"binary": browser, "args": args},
                        }
                    }
                }
                self.session = self._call("POST", "/session", caps)["sessionId"]
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline:
                    self.close()
                    raise
                time.sleep(0.2)
            except Exception:  # the driver answered with an error: do not leave it running
                self.close()
                raise

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.code} {e.read()[:500]!r}") from None

    def _session(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        element = self._session("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(element.values()))

    def upload(self, css: str, path: Path) -> None:
        """Choose a file in an <input type=file> (fires its change event, as a person choosing it)."""
        self._session("POST", f"/element/{self.find(css)}/value", {"text": str(Path(path).resolve())})

    def click(self, css: str) -> None:
        self._session("POST", f"/element/{self.find(css)}/click")

    def script(self, source: str, *args):
        return self._session("POST", "/execute/sync", {"script": source, "args": list(args)})

    def text(self, css: str) -> str:
        return self.script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def wait_for(self, source: str, timeout: float = 120.0, *args):
        """Poll a script until it returns something truthy; its value."""
        deadline = time.time() + timeout
        while True:
            value = self.script(source, *args)
            if value:
                return value
            if time.time() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for: {source}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._session("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._call("DELETE", f"/session/{self.session}")
        except Exception:
            pass
        self.driver.terminate()
        try:
            self.driver.wait(10)
        except subprocess.TimeoutExpired:
            self.driver.kill()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
