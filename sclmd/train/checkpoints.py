"""Training checkpoints: atomic, verified, resumable.

A checkpoint is a folder `step-NNNNNNN/` holding the model (safetensors), the
optimizer state (torch.save, read back with weights_only=True), the RNG state, a
JSON of the loop's own state, and `checksums.json` with the SHA-256 of each file.
It is written to a temp folder and renamed, so a crash never leaves a half
checkpoint under a real name; a file damaged later (disk, copy, hand edit) fails
its checksum and is refused with a message, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir

MODEL = "model.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.safetensors"
STATE = "state.json"
CHECKSUMS = "checksums.json"
FILES = (MODEL, OPTIMIZER, RNG, STATE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_key(params: dict, files: list[Path]) -> str:
    """What a checkpoint must match to be resumed: the params and the bytes of `files`.

    Params alone are not enough: DVC re-runs a stage when its code or inputs changed,
    and resuming from the old run's checkpoints would hand back the old model.  Files
    that do not exist (yet) count as empty.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    blob = json.dumps({"params": params, "files": digest.hexdigest()}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class CheckpointStore:
    def __init__(self, directory: Path, params_hash: str, keep: int = 2):
        self.directory = Path(directory)
        self.params_hash = params_hash
        self.keep = keep

    def steps(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("step-*") if p.is_dir())

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
        target = self.directory / f"step-{step:07d}"
        with atomic_dir(target) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / MODEL))
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
            save_file(rng, str(tmp / RNG))
            (tmp / STATE).write_text(json.dumps({**state, "step": step, "params_hash": self.params_hash}))
            (tmp / CHECKSUMS).write_text(json.dumps({name: file_sha256(tmp / name) for name in FILES}, indent=1))
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def verify(self, path: Path) -> str | None:
        """None when intact, else what is wrong."""
        try:
            expected = json.loads((path / CHECKSUMS).read_text())
        except (OSError, json.JSONDecodeError) as e:
            return f"no readable {CHECKSUMS} ({e})"
        for name in FILES:
            file = path / name
            if not file.exists():
                return f"{name} is missing"
            if file_sha256(file) != expected.get(name):
                return f"{name} does not match its checksum (truncated or modified)"
        return None

    def latest(self) -> Path | None:
        """The newest checkpoint of these params; refuses a damaged one with a clear message."""
        steps = self.steps()
        if not steps:
            return None
        newest = steps[-1]
        problem = self.verify(newest)
        if problem:
            raise SclmdError(
                f"{newest}: checkpoint is corrupt: {problem}. It was not loaded. Delete that folder to "
                f"resume from the previous checkpoint, or delete {self.directory} (or set resume: false) to start over."
            )
        state = json.loads((newest / STATE).read_text())
        if state.get("params_hash") != self.params_hash:
            return None  # written under other params: not ours to resume
        return newest

    def load(self, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        model.load_state_dict(load_file(str(path / MODEL)))
        optimizer.load_state_dict(torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True))
        rng = load_file(str(path / RNG))
        torch.set_rng_state(rng["torch"])
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        return json.loads((path / STATE).read_text())

    def resume(
        self,
        enabled: bool,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        announce=print,
        name: str = "train",
    ) -> tuple[int, dict]:
        """(first step, loss history) to continue from: the latest checkpoint of these params.

        Checkpoints of other params (or code, or data) are deleted rather than mixed into
        this run; with `enabled` false every checkpoint is deleted and training starts at 0.
        """
        latest = self.latest() if enabled else None
        if latest is None:
            self.clear()
            return 0, {}
        state = self.load(latest, model, optimizer)
        announce(f"{name}: resuming from {latest} (step {state['step']})")
        return state["step"], {k: [tuple(p) for p in v] for k, v in state["history"].items()}

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
