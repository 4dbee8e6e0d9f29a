"""The statistical face prior p: the mean face latent (SCLDM, "Explicit Face Prior as Normalization").

p is the mean of the frozen pre-trained face encoder's latent `z` over N faces drawn
gender-balanced from the training split.  Stored as `prior.safetensors` (the tensor)
plus `prior.json` (how it was made), so that nothing needs pickle to read it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir

WEIGHTS = "prior.safetensors"
INFO = "prior.json"


@dataclass(frozen=True)
class FacePrior:
    mean: torch.Tensor  # [C, h, w] in the face encoder's (unscaled) latent space
    n_faces: int  # how many faces were averaged
    n_female: int
    n_male: int
    requested: int  # the N asked for; n_faces < requested means the data capped it

    @property
    def capped(self) -> bool:
        return self.n_faces < self.requested

    def info(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "mean"} | {
            "capped": self.capped,
            "shape": list(self.mean.shape),
        }

    def save(self, directory: Path, extra_files: dict[str, bytes] | None = None) -> None:
        """Atomically: the tensor, the facts, and any extra files (e.g. the decoded picture)."""
        with atomic_dir(Path(directory)) as tmp:
            save_file({"prior": self.mean.detach().cpu().contiguous()}, str(tmp / WEIGHTS))
            (tmp / INFO).write_text(json.dumps(self.info(), indent=2) + "\n")
            for name, payload in (extra_files or {}).items():
                (tmp / name).write_bytes(payload)

    @classmethod
    def load(cls, directory: Path) -> "FacePrior":
        directory = Path(directory)
        try:
            info = json.loads((directory / INFO).read_text())
            mean = load_file(str(directory / WEIGHTS))["prior"]
        except FileNotFoundError as e:
            raise SclmdError(
                f"{directory}: no face prior ({Path(e.filename).name} missing). Run `sclmd stage prior`."
            ) from None
        except Exception as e:  # a damaged file: say which, never a deep traceback
            raise SclmdError(f"{directory}: unreadable face prior ({e}). Re-run `sclmd stage prior`.") from None
        return cls(mean, int(info["n_faces"]), int(info["n_female"]), int(info["n_male"]), int(info["requested"]))
