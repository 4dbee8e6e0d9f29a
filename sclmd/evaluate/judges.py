"""The judges of generated faces: gender, age and identity networks trained on real faces only.

The paper judges with VGG-Face features and the commercial Face++ API, neither of which
is available offline.  Ours are three separate small CNNs, trained on the real faces of
the training split (never on generated images, never on val or test speakers):

- `gender`: a binary classifier (logit > 0: male);
- `age`: a regressor (years);
- `identity`: a classifier over the training speakers, whose penultimate layer (L2
  normalised) is the feature space for feature distances, Fréchet distance and retrieval.

Generated faces are blurrier than real ones, so the judges train on real faces degraded
the way a decoder degrades them (random Gaussian blur, small colour shifts): a judge
should read the face, not its sharpness.  `Judges.save_pretrained` / `from_pretrained`
use safetensors only; a user can point `judges.pretrained` at judges trained elsewhere
(e.g. on a real data set) and the report names them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sclmd.errors import SclmdError
from sclmd.io import atomic_dir

TASKS = ("gender", "age", "identity")
# Age accuracy counts a judged age within +-5 years of the label: the paper's "10-year range".
AGE_TOLERANCE = 5.0
CONFIG = "judges.json"


@dataclass(frozen=True)
class JudgeConfig:
    image_size: int
    width: int  # channels of the first block; doubled at each of the 4 stride-2 blocks (capped at 8x)
    feature_dim: int  # the identity feature size
    n_identities: int  # training speakers the identity head tells apart
    age_mean: float  # the regressor predicts (age - mean) / std
    age_std: float

    def to_dict(self) -> dict:
        return asdict(self)


class JudgeNet(nn.Module):
    """A small CNN: four stride-2 conv blocks, global pooling, a feature layer, one head."""

    def __init__(self, cfg: JudgeConfig, outputs: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for block in range(4):
            out_ch = cfg.width * min(2**block, 8)
            layers += [
                nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(out_ch, out_ch, 3, padding=1),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        self.trunk = nn.Sequential(*layers)
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch, cfg.feature_dim),
            nn.BatchNorm1d(cfg.feature_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
        )
        self.head = nn.Linear(cfg.feature_dim, outputs)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.features(self.trunk(image).mean(dim=(2, 3), keepdim=True))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(image))


@dataclass
class Verdicts:
    """What the judges make of a batch of faces."""

    male_probability: np.ndarray  # [N]
    age: np.ndarray  # [N] years
    features: np.ndarray  # [N, feature_dim], unit length


class Judges(nn.Module):
    def __init__(self, cfg: JudgeConfig, source: str = "trained on the real training faces of this run"):
        super().__init__()
        self.config = cfg
        self.source = source
        self.gender = JudgeNet(cfg, 1)
        self.age = JudgeNet(cfg, 1)
        self.identity = JudgeNet(cfg, cfg.n_identities)

    def net(self, task: str) -> JudgeNet:
        return getattr(self, task)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 256) -> Verdicts:
        """Faces [N, 3, H, W] in [-1, 1] -> verdicts (eval mode, in batches)."""
        self.eval()
        male, age = [], []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float()
            male.append(torch.sigmoid(self.gender(x)[:, 0]))
            age.append(self.age(x)[:, 0] * self.config.age_std + self.config.age_mean)
        features = self.identity_features(images, batch_size)
        return Verdicts(torch.cat(male).numpy(), torch.cat(age).numpy(), features)

    @torch.no_grad()
    def identity_features(self, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Faces [N, 3, H, W] in [-1, 1] -> unit identity features [N, feature_dim] (`Verdicts.features`); alone,
        without the gender and age nets, it costs a third of a verdict (for callers that read only identity)."""
        self.eval()
        return torch.cat(
            [
                F.normalize(self.identity.embed(images[s : s + batch_size].float()), dim=-1)
                for s in range(0, len(images), batch_size)
            ]
        ).numpy()

    def save_pretrained(self, directory: Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        with atomic_dir(Path(directory)) as tmp:
            for task in TASKS:
                state = {k: v.detach().cpu().contiguous() for k, v in self.net(task).state_dict().items()}
                save_file(state, str(tmp / f"{task}.safetensors"))
            (tmp / CONFIG).write_text(
                json.dumps({"config": self.config.to_dict(), "source": self.source, **(extra or {})}, indent=2) + "\n"
            )

    @classmethod
    def from_pretrained(cls, directory: Path) -> "Judges":
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            meta = json.loads((directory / CONFIG).read_text())
            if meta.get("kind") == "pretrained":  # the real-photo judges (`judges.kind`): no weights of ours
                from sclmd.evaluate.pretrained_judges import AlignedFaceJudges

                return AlignedFaceJudges(meta["padding"])
            judges = cls(JudgeConfig(**meta["config"]), meta.get("source", str(directory)))
            for task in TASKS:
                judges.net(task).load_state_dict(load_file(str(directory / f"{task}.safetensors")))
        except FileNotFoundError as e:
            raise SclmdError(
                f"{directory}: no judges ({Path(e.filename).name} missing). Run `sclmd stage judges`, "
                f"or point judges.pretrained at a folder it wrote."
            ) from None
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SclmdError(f"{directory}: unreadable judges ({e}). Re-run `sclmd stage judges`.") from None
        return judges


def as_judge_input(faces_uint8: torch.Tensor) -> torch.Tensor:
    """Stored faces, uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1] (as `Batch.face_float`)."""
    return faces_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1


def male_labels(genders) -> np.ndarray:
    """1.0 male, 0.0 female, NaN unknown (the manifest's 'm' / 'f' or words)."""
    from sclmd.evaluate.embeddings import _gender_labels

    return _gender_labels(genders)


def degrade(images: torch.Tensor, generator: torch.Generator, max_blur: float, colour: float) -> torch.Tensor:
    """Random Gaussian blur (sigma up to `max_blur` px, some images left sharp), brightness and
    contrast shifts, and horizontal flips: real faces made to look as a decoder might draw them."""
    n = len(images)
    out = images
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    if max_blur > 0:
        sigma = torch.rand(n, generator=generator) * max_blur
        radius = max(1, math.ceil(2 * max_blur))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, k]; sigma ~0 gives a delta
        channels = out.shape[1]
        # separable blur, one kernel per image: fold images into channels of a grouped conv
        flat = out.reshape(1, n * channels, *out.shape[2:])
        k = kernel.repeat_interleave(channels, dim=0)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * channels)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=n * channels)
        out = flat.reshape(out.shape)
    if colour > 0:
        gain = 1 + colour * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
        shift = colour * (2 * torch.rand(n, 3, 1, 1, generator=generator) - 1) * 0.5
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * gain + mean + shift).clamp(-1, 1)
    return out


@dataclass
class JudgeTraining:
    judges: Judges
    history: dict[str, list[tuple[int, float]]]


def train_judges(
    faces: torch.Tensor,
    genders,
    ages,
    speakers,
    *,
    image_size: int,
    width: int,
    feature_dim: int,
    epochs: int,
    batch_size: int,
    lr: float,
    max_blur: float,
    colour: float,
    seed: int,
    log=None,
) -> JudgeTraining:
    """Train the three judges on real faces [N, 3, H, W] in [-1, 1] with their labels.

    Each judge learns only from rows that carry its label (unknown gender or age rows are
    skipped by that judge).  Deterministic for a seed on one machine.
    """
    from tqdm import tqdm

    male = male_labels(genders)
    age = np.asarray(ages, dtype=np.float64)
    ids, identity = np.unique(np.asarray(speakers).astype(str), return_inverse=True)
    known_age = np.isfinite(age)
    if known_age.sum() < 2 or np.isfinite(male).sum() < 2 or not (male == 0).any() or not (male == 1).any():
        raise SclmdError(
            "judges need training faces of both genders and with ages; the train split has "
            f"{int(np.nansum(male == 1))} male, {int(np.nansum(male == 0))} female and "
            f"{int(known_age.sum())} aged faces."
        )
    cfg = JudgeConfig(
        image_size, width, feature_dim, len(ids), float(age[known_age].mean()), float(max(age[known_age].std(), 1.0))
    )
    torch.manual_seed(seed)
    judges = Judges(cfg)
    targets = {
        "gender": (np.flatnonzero(np.isfinite(male)), torch.as_tensor(np.nan_to_num(male), dtype=torch.float32)),
        "age": (
            np.flatnonzero(known_age),
            torch.as_tensor((np.nan_to_num(age) - cfg.age_mean) / cfg.age_std, dtype=torch.float32),
        ),
        "identity": (np.arange(len(faces)), torch.as_tensor(identity, dtype=torch.int64)),
    }
    history: dict[str, list[tuple[int, float]]] = {f"loss_{t}": [] for t in TASKS}
    generator = torch.Generator().manual_seed(seed)
    for task in TASKS:
        net = judges.net(task)
        rows, target = targets[task]
        steps_per_epoch = max(1, math.ceil(len(rows) / batch_size))
        total = epochs * steps_per_epoch
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
        net.train()
        bar = tqdm(total=total, desc=f"judges: {task}", unit="step", leave=False)
        step = 0
        for _ in range(epochs):
            order = rows[torch.randperm(len(rows), generator=generator).numpy()]
            for start in range(0, len(order), batch_size):
                batch = torch.as_tensor(order[start : start + batch_size])
                if len(batch) < 2:  # batch norm needs two rows
                    continue
                x = degrade(faces[batch].float(), generator, max_blur, colour)
                out = net(x)
                y = target[batch]
                if task == "gender":
                    loss = F.binary_cross_entropy_with_logits(out[:, 0], y)
                elif task == "age":
                    loss = F.smooth_l1_loss(out[:, 0], y)
                else:
                    loss = F.cross_entropy(out, y, label_smoothing=0.1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                bar.update()
                if step % 10 == 0 or step == total:
                    history[f"loss_{task}"].append((step, float(loss.item())))
                    if log:
                        log({f"loss_{task}": float(loss.item())}, step)
        bar.close()
        net.eval()
    return JudgeTraining(judges, history)


def judge_accuracy_per_clip(verdicts: Verdicts, genders, ages, age_tolerance: float) -> dict[str, np.ndarray]:
    """Per face: gender right (1.0 / 0.0), age within the tolerance (1.0 / 0.0) and the absolute
    age error (years); NaN where the face has no such label.  Arrays [N]."""
    male = male_labels(genders)
    age = np.asarray(ages, dtype=np.float64)
    g = np.isfinite(male)
    a = np.isfinite(age)
    error = np.abs(np.asarray(verdicts.age, dtype=np.float64) - age)
    return {
        "gender_acc": np.where(g, ((verdicts.male_probability > 0.5) == (male == 1)).astype(np.float64), np.nan),
        "age_acc": np.where(a, (error <= age_tolerance).astype(np.float64), np.nan),
        "age_mae": np.where(a, error, np.nan),
    }


def judge_accuracy(verdicts: Verdicts, genders, ages, age_tolerance: float) -> dict:
    """Gender accuracy and age accuracy (|judged - true| <= tolerance), over rows with labels."""
    per_clip = judge_accuracy_per_clip(verdicts, genders, ages, age_tolerance)
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in per_clip.items()}
