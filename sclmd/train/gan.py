"""Adversarial training of the GAN baselines (Wav2Pix, Wen et al.), one explicit loop each.

Both loops share `AdversarialRun`: the Accelerate set-up (DDP over the processes of a
several-process run, each reading its share of every global batch), resumable checkpoints
of every network and optimiser, an optional EMA of the generator (the originals keep none),
a progress bar, logging, and the two ways GAN training is known to fail:

- **divergence**: a loss that is not finite stops the run at that step (`status: diverged`);
- **mode collapse**: after training the generator draws the val speakers' faces; when their
  pairwise spread is a small fraction of the real val faces' (`collapse_ratio`), the run is
  `collapsed` (a conditional generator without a noise input that ignores the voice draws
  one face for everyone).

Either is written into the stage's metrics and printed, and `evaluate` marks the row, instead
of reporting the numbers of a failed run as if it had worked.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sclmd.models.gan_baselines import (
    IdentityHead,
    Wav2Pix,
    Wav2PixConfig,
    Wav2PixDiscriminator,
    Wen,
    WenConfig,
    WenCritic,
)
from sclmd.train.checkpoints import CheckpointStore
from sclmd.train.distributed import (
    agree_on_weights,
    check_divisible,
    make_accelerator,
    mean_over_processes,
    process_share,
)


@dataclass
class GanData:
    """One split in memory: int16 waveforms, faces in [-1, 1], speaker index per clip."""

    audio: torch.Tensor  # int16 [N, samples]
    faces: torch.Tensor  # float [N, 3, H, W]
    identity: torch.Tensor  # int64 [N]
    n_identities: int

    @classmethod
    def from_split(cls, clips) -> "GanData":
        """`clips`: a `PackedClips` split."""
        everything = np.arange(len(clips))
        speakers = clips.rows["speaker_id"].astype(str).to_numpy()
        names, identity = np.unique(speakers, return_inverse=True)
        return cls(
            clips.audio(everything),
            clips.faces_float(everything),
            torch.from_numpy(identity.astype(np.int64)),
            len(names),
        )

    def waves(self, rows: torch.Tensor) -> torch.Tensor:
        return self.audio[rows].float() / 32768.0


@dataclass
class RunSummary:
    """How a GAN run went: `status` ok | collapsed | diverged, and why."""

    status: str = "ok"
    why: str = ""
    steps: int = 0
    diversity_ratio: float = float("nan")
    history: dict = field(default_factory=dict)
    weights_sha256: str = ""
    seconds: float = float("nan")  # wall time, set by the stage (not a metric: it differs run to run)

    def metrics(self) -> dict:
        return {"status": self.status, "why": self.why, "steps": self.steps, "diversity_ratio": self.diversity_ratio}


class OptimizerBundle:
    """Several optimisers checkpointed as one (CheckpointStore saves one optimizer state)."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def pairwise_spread(faces: torch.Tensor) -> float:
    """Mean distance between two different faces of the batch (RMS over pixels)."""
    flat = faces.flatten(1).double()
    d = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    n = len(flat)
    return float(d.sum() / max(n * (n - 1), 1))


def collapse_check(generated: torch.Tensor, real: torch.Tensor, ratio: float) -> tuple[bool, float, str]:
    """(collapsed?, spread ratio, why): the generated faces' spread against the real faces'."""
    spread = pairwise_spread(generated) / max(pairwise_spread(real), 1e-12)
    if not math.isfinite(spread):
        return True, spread, "its val faces are not finite"
    if spread < ratio:
        return (
            True,
            spread,
            (
                f"mode collapse: its val faces spread {spread:.3f}x as much as the real ones "
                f"(below {ratio:g}); it draws nearly one face for every voice"
            ),
        )
    return False, spread, ""


class AdversarialRun:
    """What both GAN loops share; a loop calls `start`, then `step_done` after every step, then `finish`."""

    def __init__(
        self,
        name: str,
        nets: nn.ModuleDict,
        learning_rates: dict[str, float],
        *,
        steps: int,
        batch_size: int,
        generator: str = "g",
        ema_decay: float = 0.0,
        store: CheckpointStore | None = None,
        resume: bool = True,
        checkpoint_every: int = 0,
        collapse_ratio: float = 0.05,
        log: Callable[[dict, int], None] | None = None,
        log_every: int = 25,
    ):
        """`learning_rates`: one Adam (betas 0.5, 0.999, as both originals) per trained net."""
        optimizers = {
            key: torch.optim.Adam(nets[key].parameters(), lr=lr, betas=(0.5, 0.999))
            for key, lr in learning_rates.items()
        }
        self.name, self.nets, self.steps, self.collapse_ratio = name, nets, steps, collapse_ratio
        self.accelerator = make_accelerator(None)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        check_divisible("baselines", {f"{name}.batch_size": batch_size}, self.world)
        self.batch_size = batch_size
        self.generator_key = generator
        self.ema_decay = ema_decay
        if ema_decay > 0:
            nets["ema"] = copy.deepcopy(nets[generator]).requires_grad_(False)
        self.bundle = OptimizerBundle(optimizers)
        self.store, self.resume_enabled, self.checkpoint_every = store, resume, checkpoint_every
        self.log, self.log_every = log, log_every
        self.device = self.accelerator.device
        nets.to(self.device)
        self.ddp = {key: self.accelerator.prepare(nets[key]) for key in optimizers}
        self.optimizers = {key: self.accelerator.prepare(opt) for key, opt in optimizers.items()}
        self.summary = RunSummary()

    def start(self) -> int:
        """The first step to run (after a resumed checkpoint, if any)."""
        if self.store is None:
            return 1
        step, self.summary.history = self.store.resume(
            self.resume_enabled, self.nets, self.bundle, announce=self._say, name=f"baselines: {self.name}"
        )
        return step + 1

    def _say(self, text: str) -> None:
        if self.accelerator.is_main_process:
            print(text, flush=True)

    def rows(self, n: int) -> torch.Tensor:
        """This process's share of a global batch of random rows (the global draw is the same everywhere)."""
        return process_share(torch.randint(0, n, (self.batch_size,)), self.rank, self.world)

    def step_done(self, step: int, losses: dict[str, torch.Tensor]) -> bool:
        """EMA, logging and checkpoints after a step; False when the run must stop (a non-finite loss)."""
        # Every step, averaged over the processes: a NaN in any process reaches all of them, so they
        # stop at the same step (a process stopping alone would leave the others in a collective).
        values = mean_over_processes({k: v.detach() for k, v in losses.items()}, self.device)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            self.summary.status = "diverged"
            self.summary.why = f"non-finite {', '.join(bad)} at step {step}: training stopped there"
            self.summary.steps = step
            self._say(f"baselines: {self.name} DIVERGED: {self.summary.why}")
            return False
        if step % self.log_every == 0 or step == self.steps:
            for key, value in values.items():
                self.summary.history.setdefault(key, []).append((step, value))
            if self.log and self.accelerator.is_main_process:
                self.log(values, step)
        if self.ema_decay > 0:
            with torch.no_grad():
                for e, p in zip(self.nets["ema"].parameters(), self.nets[self.generator_key].parameters()):
                    e.lerp_(p, 1 - self.ema_decay)
                for e, b in zip(self.nets["ema"].buffers(), self.nets[self.generator_key].buffers()):
                    e.copy_(b)
        if self.store is not None and self.checkpoint_every and step % self.checkpoint_every == 0 and step < self.steps:
            if self.accelerator.is_main_process:
                self.store.save(step, self.nets, self.bundle, {"history": self.summary.history})
            self.accelerator.wait_for_everyone()
        self.summary.steps = step
        return True

    def generator(self) -> nn.Module:
        """The generator kept: its EMA copy when there is one."""
        return self.nets["ema" if self.ema_decay > 0 else self.generator_key]

    def finish(self, model: nn.Module, val: "GanData | None") -> RunSummary:
        """Agree on weights, check for collapse on val, clear the checkpoints."""
        for net in self.ddp.values():
            # Accelerate wraps a prepared module's forward in the process's autocast (bf16 when an earlier
            # loop in this process asked for it); the model kept must compute as the one saved and loaded.
            self.accelerator.unwrap_model(net, keep_fp32_wrapper=False)
        self.summary.weights_sha256 = agree_on_weights(self.accelerator, self.nets)
        model.cpu().eval()
        if val is not None and self.summary.status == "ok":
            with torch.no_grad():
                drawn = torch.cat(
                    [
                        model(val.waves(torch.arange(s, min(s + 64, len(val.faces)))))
                        for s in range(0, len(val.faces), 64)
                    ]
                )
            collapsed, ratio, why = collapse_check(drawn.clamp(-1, 1), val.faces, self.collapse_ratio)
            self.summary.diversity_ratio = ratio
            if collapsed:
                self.summary.status, self.summary.why = "collapsed", why
                self._say(f"baselines: {self.name} COLLAPSED: {why}")
        if self.store is not None and self.accelerator.is_main_process:
            self.store.clear()  # finished: checkpoints exist to survive a crash, not to skip the next run
        return self.summary


def progress(name: str, first: int, steps: int, main: bool):
    from tqdm import tqdm

    return tqdm(
        range(first, steps + 1),
        initial=first - 1,
        total=steps,
        desc=f"baselines: {name}",
        unit="step",
        leave=False,
        disable=not main,
    )


def random_windows(audio: torch.Tensor, rows: torch.Tensor, samples: int) -> torch.Tensor:
    """A random window of `samples` from each row's clip (global RNG: checkpointed with the run)."""
    total = audio.shape[1]
    starts = torch.randint(0, max(total - samples, 0) + 1, (len(rows),))
    idx = starts[:, None] + torch.arange(min(samples, total))[None]
    return audio[rows[:, None], idx].float() / 32768.0


# --------------------------------------------------------------------------------------- Wav2Pix


class Wav2PixGeneratorSide(nn.Module):
    """What the generator's optimiser trains: speech encoder + generator + identity classifier, one forward."""

    def __init__(self, cfg: Wav2PixConfig):
        super().__init__()
        self.model = Wav2Pix(cfg)
        self.classifier = IdentityHead(cfg.embed_dim, cfg.n_identities)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding = self.model.encoder(self.model.condition(crops))
        return self.model.generator(embedding), embedding, self.classifier(embedding)


@dataclass(frozen=True)
class Wav2PixLoss:
    """The original's weights: G = LSGAN + 100 feature matching + 50 L1 + 20 identity CE; real label 0.9."""

    feature_matching: float = 100.0
    l1: float = 50.0
    identity: float = 20.0
    real_label: float = 0.9


def train_wav2pix(
    cfg: Wav2PixConfig,
    train: GanData,
    val: GanData | None,
    *,
    steps: int,
    batch_size: int,
    lr_generator: float,
    lr_discriminator: float,
    loss: Wav2PixLoss,
    seed: int,
    **options,
) -> tuple[Wav2Pix, RunSummary]:
    """Wav2Pix's adversarial training (paired: each voice with its own face, and a wrong one).
    `options`: `AdversarialRun`'s (EMA, checkpoints, collapse ratio, logging)."""
    torch.manual_seed(seed)
    nets = nn.ModuleDict({"g": Wav2PixGeneratorSide(cfg), "d": Wav2PixDiscriminator(cfg)})
    run = AdversarialRun(
        "wav2pix", nets, {"g": lr_generator, "d": lr_discriminator}, steps=steps, batch_size=batch_size, **options
    )
    g, d, device, optimizers = run.ddp["g"], run.ddp["d"], run.device, run.optimizers
    nets.train()
    for step in progress("wav2pix", run.start(), steps, run.accelerator.is_main_process):
        rows = run.rows(len(train.faces))
        wrong_rows = run.rows(len(train.faces))  # another clip's face: almost surely another speaker's
        crops = random_windows(train.audio, rows, cfg.audio_samples).to(device)
        real, wrong = train.faces[rows].to(device), train.faces[wrong_rows].to(device)
        same = train.identity[rows] == train.identity[wrong_rows]
        fake, embedding, logits = g(crops)

        # discriminator: real pair -> 0.9, generated -> 0, real face with a wrong voice -> 0 (one forward)
        n = len(real)
        scores, _ = d(torch.cat([real, fake.detach(), wrong]), embedding.detach().repeat(3, 1))
        wrong_target = torch.where(same.to(device), loss.real_label, 0.0)
        d_loss = (
            F.mse_loss(scores[:n], torch.full_like(scores[:n], loss.real_label))
            + F.mse_loss(scores[n : 2 * n], torch.zeros_like(scores[:n]))
            + F.mse_loss(scores[2 * n :], wrong_target)
        )
        optimizers["d"].zero_grad(set_to_none=True)
        run.accelerator.backward(d_loss)
        optimizers["d"].step()

        # generator: fool D, match D's mean features of real faces, stay near the paired face, keep identity
        scores, features = d(torch.cat([fake, real]), embedding.repeat(2, 1))
        adversarial = F.mse_loss(scores[:n], torch.ones_like(scores[:n]))
        matching = F.mse_loss(features[:n].mean(0), features[n:].detach().mean(0))
        l1 = F.l1_loss(fake, real)
        identity = F.cross_entropy(logits, train.identity[rows].to(device))
        g_loss = adversarial + loss.feature_matching * matching + loss.l1 * l1 + loss.identity * identity
        optimizers["g"].zero_grad(set_to_none=True)
        run.accelerator.backward(g_loss)
        optimizers["g"].step()
        losses = {
            "d_loss": d_loss,
            "g_adversarial": adversarial,
            "g_feature_matching": matching,
            "g_l1": l1,
            "g_identity": identity,
        }
        if not run.step_done(step, losses):
            break
    model = run.generator().model  # the speech encoder and generator; the identity head was for training only
    return model, run.finish(model, val)


# ---------------------------------------------------------------------------------------- Wen et al.


class VoiceIdentifier(nn.Module):
    """The voice embedder with a linear speaker-identity head: how Wen et al.'s embedder is trained."""

    def __init__(self, cfg: WenConfig):
        super().__init__()
        from sclmd.models.gan_baselines import VoiceEmbedNet

        self.embed = VoiceEmbedNet(cfg)
        self.head = nn.Linear(cfg.embed_dim, cfg.n_identities)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(fbank))


def train_voice_embedder(
    model: Wen, train: GanData, *, steps: int, batch_size: int, lr: float, crop_frames: int, seed: int, log=None
) -> tuple[dict, torch.Tensor]:
    """Speaker identification on random `crop_frames`-frame crops of the training clips' filterbanks;
    the embedder is then frozen (as in the original, which trains it separately).  Returns its
    loss history and the unit-norm embedding of every whole training clip (`Wen.embed`'s)."""
    torch.manual_seed(seed)
    accelerator = make_accelerator(None)
    rank, world = accelerator.process_index, accelerator.num_processes
    check_divisible("baselines", {"wen.batch_size": batch_size}, world)
    identifier = VoiceIdentifier(model.config)
    identifier.embed = model.voice  # trained in place
    optimizer = torch.optim.Adam(identifier.parameters(), lr=lr)
    ddp, optimizer = accelerator.prepare(identifier, optimizer)
    everything = torch.arange(len(train.faces))
    fbanks = torch.cat([model.fbank(train.waves(chunk)) for chunk in everything.split(128)])  # once, not per step
    history = []
    identifier.train()
    for step in progress("wen voice embedder", 1, steps, accelerator.is_main_process):
        rows = process_share(torch.randint(0, len(train.faces), (batch_size,)), rank, world)
        start = torch.randint(0, max(fbanks.shape[-1] - crop_frames, 0) + 1, (1,)).item()
        logits = ddp(fbanks[rows, :, start : start + crop_frames].to(accelerator.device))
        ce = F.cross_entropy(logits, train.identity[rows].to(accelerator.device))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(ce)
        optimizer.step()
        if step % 25 == 0 or step == steps:
            value = mean_over_processes({"ce": ce.detach()}, accelerator.device)["ce"]
            history.append((step, value))
            if log and accelerator.is_main_process:
                log({"voice_ce": value}, step)
    agree_on_weights(accelerator, model.voice)
    model.voice.cpu().eval().requires_grad_(False)
    with torch.no_grad():  # the frozen embedder's embedding of each whole clip, from the same filterbanks
        embeddings = torch.cat([F.normalize(model.voice(chunk), dim=1) for chunk in fbanks.split(128)])
    return {"voice_ce": history}, embeddings


def train_wen(
    cfg: WenConfig,
    train: GanData,
    val: GanData | None,
    *,
    embed_steps: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    embed_lr: float = 1e-3,
    **options,
) -> tuple[Wen, RunSummary]:
    """Wen et al.: the voice embedder for speaker ID first, then G against the shared face critic.

    Voices and faces are drawn independently (the original is unpaired: only the identity label
    links them).  The frozen embedder's embeddings are computed once for the whole clips, then
    each step adds the original's noise (sigma 0.05) and normalises again."""
    torch.manual_seed(seed)
    model = Wen(cfg)
    voice_history, embeddings = train_voice_embedder(
        model,
        train,
        steps=embed_steps,
        batch_size=batch_size,
        lr=embed_lr,
        crop_frames=300,
        seed=seed,
        log=options.get("log"),
    )
    torch.manual_seed(seed + 1)
    nets = nn.ModuleDict({"g": model.generator, "c": WenCritic(cfg)})
    run = AdversarialRun("wen", nets, {"g": lr, "c": lr}, steps=steps, batch_size=batch_size, **options)
    g, c, device, optimizers = run.ddp["g"], run.ddp["c"], run.device, run.optimizers
    nets.train()
    for step in progress("wen", run.start(), steps, run.accelerator.is_main_process):
        voice_rows, face_rows = run.rows(len(train.faces)), run.rows(len(train.faces))
        emb = embeddings[voice_rows]
        emb = F.normalize(F.normalize(emb, dim=1) + cfg.embedding_noise * torch.randn_like(emb), dim=1).to(device)
        fake = g(emb)
        real = train.faces[face_rows].to(device)
        n = len(real)

        # critic: real -> 1, generated -> 0, and the real faces' identities
        real_or_fake, identity = c(torch.cat([real, fake.detach()]))
        c_loss = (
            F.binary_cross_entropy_with_logits(real_or_fake[:n], torch.ones_like(real_or_fake[:n]))
            + F.binary_cross_entropy_with_logits(real_or_fake[n:], torch.zeros_like(real_or_fake[n:]))
            + F.cross_entropy(identity[:n], train.identity[face_rows].to(device))
        )
        optimizers["c"].zero_grad(set_to_none=True)
        run.accelerator.backward(c_loss)
        optimizers["c"].step()

        # generator: look real, and be taken for the voice's speaker
        real_or_fake, identity = c(fake)
        adversarial = F.binary_cross_entropy_with_logits(real_or_fake, torch.ones_like(real_or_fake))
        identity_loss = F.cross_entropy(identity, train.identity[voice_rows].to(device))
        g_loss = adversarial + identity_loss
        optimizers["g"].zero_grad(set_to_none=True)
        run.accelerator.backward(g_loss)
        optimizers["g"].step()
        if not run.step_done(step, {"c_loss": c_loss, "g_adversarial": adversarial, "g_identity": identity_loss}):
            break
    model.generator = run.generator()
    summary = run.finish(model, val)
    summary.history.update(voice_history)
    return model, summary
