"""Training configuration: one schema of dataclasses per task, every field documented.

Two tasks share the ``run``, ``data``, ``weights`` and ``optim`` sections:

* :class:`FSTrainConfig` (``python -m vidinv.training fs``): the Feature-Style encoder (Yao et al., ECCV 2022,
  section 4). Defaults = the official ``configs/001.yaml`` with ``trainer.py``/``train.py``: one
  synthetic + one real image per step, 12 epochs of 10 000 iterations, Ranger lr 1e-4 with betas
  (0.95, 0.999), ``StepLR(step_size=10 epochs, gamma=0.1)``, loss weights l2 1, lpips 0.2 (three
  scales), f_recon 0.01, id 0.1 (five ArcFace layers), parsing 0.1 (three BiSeNet heads), feature
  scale warm-up ``min(1, 1e-4 * iteration)``.
* :class:`PSPTrainConfig` (``python -m vidinv.training psp``): pSp (Richardson et al., CVPR 2021), objectives
  ``encode`` and ``super_resolution`` (field ``objective``; before it was called ``task``, a name still
  read with a :class:`ConfigDeprecationWarning`). Defaults = ``options/train_options.py`` and the README
  commands / ``configs/train/{encode,superres}.yaml``: batch 8, Ranger lr 1e-4 (constant), 500 000
  steps, ``start_from_latent_avg``; encode: l2 1, lpips 0.8, id 0.1, w_norm 0; super-resolution: L2 +
  LPIPS + identity with no W-norm term, on inputs downsampled by a random factor of x1, x2, x4, x8 or x16
  (the pSp super-resolution setting; x32, which pSp's code also offers, is an option: ``sr_factors``).
  The pSp README's super-resolution command also sets ``--w_norm_lambda 0.005``; set ``loss.w_norm`` to
  reproduce it.

The dataclasses are OmegaConf structured configs (:func:`load_config`): the task's defaults, then a YAML
or JSON file, then a nested dict (command-line flags), then ``section.key=value`` overrides
(:meth:`omegaconf.OmegaConf.from_dotlist`) are merged with :meth:`omegaconf.OmegaConf.merge`, which
rejects unknown keys and values of the wrong type; what types cannot say (ranges, list lengths,
consistency) is checked by each config's ``validate()``. Every problem is one :class:`ConfigError` line
naming the dotted key. Field documentation lives in each field's ``metadata["doc"]`` (:func:`describe`,
and the comments :func:`to_yaml` writes).
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml
from omegaconf import Node, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

__all__ = [
    "ConfigError",
    "ConfigDeprecationWarning",
    "RunConfig",
    "DataConfig",
    "WeightsConfig",
    "OptimConfig",
    "FSLossConfig",
    "FSEncoderConfig",
    "FSTrainConfig",
    "PSPLossConfig",
    "PSPEncoderConfig",
    "PSPTrainConfig",
    "TASKS",
    "PSP_OBJECTIVES",
    "default_config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "upgrade_legacy_keys",
    "flat_dict",
    "flatten_dict",
    "validate",
    "describe",
    "to_yaml",
    "RUN_CONTROL_KEYS",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class ConfigDeprecationWarning(FutureWarning):
    """A configuration uses a deprecated name that is still read (a FutureWarning: shown by default)."""


def _f(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = dataclasses.MISSING):
    """A dataclass field carrying its documentation in ``metadata['doc']``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def _pos(name: str, v: int | float, allow_zero: bool = False) -> None:
    if v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {v}")


def _check_stages(widths: list[int], blocks: list[int]) -> None:
    if len(widths) != 4 or len(blocks) != 4:
        raise ConfigError(f"encoder.widths and encoder.blocks need 4 entries (stages), got {widths}, {blocks}")
    for i, (w, b) in enumerate(zip(widths, blocks)):
        _pos(f"encoder.widths[{i}]", w)
        _pos(f"encoder.blocks[{i}]", b)


# ----------------------------------------------------------------------------------------- sections
@dataclass
class RunConfig:
    """How long to train and where/what to write."""

    out_dir: str = _f("runs/train", "Output folder: checkpoints/, samples/ (PNG grids), logs/ (TensorBoard "
                                    "events + scalars.csv), export/ (official-layout weights).")
    seed: int = _f(0, "Seed of every random draw (data order, flips, degradations, z, noise). Same seed + "
                      "same config = same run, bit for bit on the same machine and device.")
    max_steps: int = _f(120_000, "Number of optimisation steps (iterations) to train. FS: 12 epochs x 10 000 "
                                 "(configs/001.yaml); pSp: 500 000 (--max_steps).")
    steps_per_epoch: Union[int, None] = _f(10_000, "Iterations per epoch, for the learning-rate step decay and "
                                                   "the epoch number in logs (FS iter_per_epoch = 10 000). null: "
                                                   "one pass over the real images of one rank.")
    log_every: int = _f(10, "Write scalars (TensorBoard + CSV) every N steps (FS log_iter 10, pSp board_interval 50).")
    sample_every: int = _f(100, "Save a PNG grid (input | reconstructions) every N steps (FS image_save_iter, pSp "
                                "image_interval: 100). 0 disables.")
    checkpoint_every: int = _f(1000, "Write a resumable checkpoint every N steps (atomically). The last step is "
                                     "always checkpointed.")
    keep_checkpoints: int = _f(3, "How many step checkpoints to keep (oldest removed first; the newest is "
                                  "always kept).")
    device: str = _f("auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'. Under torchrun "
                             "each rank uses cuda:LOCAL_RANK.")
    precision: Literal["fp32", "bf16", "fp16"] = _f("fp32", "Autocast precision: fp32 (none), bf16 or fp16 "
                                                            "(CUDA; fp16 adds a gradient scaler).")
    num_threads: Union[int, None] = _f(None, "torch.set_num_threads for CPU runs (null: leave PyTorch's default).")
    progress: bool = _f(True, "Show a tqdm progress bar (rank 0) with it/s and ETA.")
    export_on_finish: bool = _f(True, "Write the official-layout weights to out_dir/export/ when max_steps is reached.")

    def validate(self) -> None:
        """Ranges of the run section. Raises: ConfigError naming the key."""
        _pos("run.max_steps", self.max_steps)
        if self.steps_per_epoch is not None:
            _pos("run.steps_per_epoch", self.steps_per_epoch)
        _pos("run.log_every", self.log_every)
        _pos("run.sample_every", self.sample_every, allow_zero=True)
        _pos("run.checkpoint_every", self.checkpoint_every)
        _pos("run.keep_checkpoints", self.keep_checkpoints, allow_zero=True)
        if self.num_threads is not None:
            _pos("run.num_threads", self.num_threads)
        # on use: vidinv.device imports torch; configs are read and printed without it
        from vidinv.device import is_device_name

        if not is_device_name(self.device):
            raise ConfigError(f"run.device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass
class DataConfig:
    """Where the real (aligned) face images come from."""

    real_dir: Union[str, None] = _f(None, "Folder of aligned face images (FFHQ-aligned, e.g. "
                                          "ffhq-dataset/images1024x1024). Images are resized to the training "
                                          "resolution.")
    recursive: bool = _f(True, "Also look for images in sub-folders of real_dir (FFHQ ships 70 folders of 1000).")
    train_split: float = _f(0.9, "Fraction of the sorted image list used for training (FS utils/datasets.py: "
                                 "0.9; pSp: 1.0). The rest is held out.")
    videos: list[str] = _f(doc="Videos to align faces from with the vidinv face front-end (vidinv.face; dlib "
                               "landmarks). Their aligned crops are cached once in video_cache_dir and then "
                               "used like real_dir images.", factory=list)
    video_cache_dir: Union[str, None] = _f(None, "Folder for the aligned crops of `videos` (default: "
                                                 "out_dir/video_faces).")
    video_every: int = _f(1, "Keep every N-th frame of each video.")
    video_max_frames: Union[int, None] = _f(None, "Read only the first N frames of each video (null: all).")
    video_detector: str = _f("dlib", "Landmark back-end of the face front-end ('dlib' or 'fan').")
    hflip: bool = _f(False, "Random horizontal flip (p = 0.5) of real images (pSp ffhq_encode: yes; FS and pSp "
                            "super-resolution: no).")
    num_workers: int = _f(2, "DataLoader worker processes per rank (0 = load in the main process; FS 2, "
                             "pSp --workers 8).")

    def validate(self) -> None:
        """Ranges of the data section. Raises: ConfigError naming the key."""
        if not 0 < self.train_split <= 1:
            raise ConfigError(f"data.train_split: must be in (0, 1], got {self.train_split}")
        _pos("data.video_every", self.video_every)
        if self.video_max_frames is not None:
            _pos("data.video_max_frames", self.video_max_frames)
        _pos("data.num_workers", self.num_workers, allow_zero=True)


@dataclass
class WeightsConfig:
    """Weight files of the frozen networks: registry names (see `vidinv weights list`) or explicit paths.

    A value that names an existing file, or contains a path separator, is an explicit path (it must
    exist); otherwise it is a registry name resolved with :func:`vidinv.weights.resolve` (``weights_dir``
    first, then the cache). A missing file stops training before it starts, with the registry's
    message, unless the loss that needs it is disabled (``loss.use_*: false`` / ``--no-*-loss``).
    """

    weights_dir: Union[str, None] = _f(None, "Folder of files placed by hand, searched first (as --weights-dir).")
    fetch: bool = _f(False, "Download missing registry files into the cache before starting.")
    generator: Union[str, None] = _f(None, "StyleGAN2 generator (+ latent_avg). null: the task default: FS "
                                           "'psp_ffhq_encode.pt' (decoder.*, latent_avg, as the FS trainer); pSp "
                                           "'stylegan2-ffhq-config-f.pt' (g_ema, latent_avg).")
    arcface: str = _f("backbone.pth", "ArcFace IResNet-50 (FS identity loss, and FS encoder initialisation).")
    parsing: str = _f("79999_iter.pth", "BiSeNet face parser (FS parsing loss).")
    irse50: str = _f("model_ir_se50.pth", "IR-SE50 (pSp identity loss, and pSp encoder initialisation).")
    lpips_alexnet: str = _f("alexnet-owt-7be5be79.pth", "torchvision AlexNet ImageNet weights, the LPIPS trunk. "
                                                        "The LPIPS linear layers ship with the lpips package.")
    lpips_random_backbone: bool = _f(False, "Use a randomly initialised LPIPS trunk (lpips pnet_rand=True) instead "
                                            "of lpips_alexnet. For tests only: the loss is then not perceptual.")
    latent_avg_samples: int = _f(100_000, "When the generator file has no latent_avg: mean of mapping(z) over this "
                                          "many z (pSp coach: 1e5), seeded by run.seed.")

    def validate(self) -> None:
        """Ranges of the weights section. Raises: ConfigError naming the key."""
        _pos("weights.latent_avg_samples", self.latent_avg_samples)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule of the encoder (the generator and loss networks are frozen)."""

    name: Literal["ranger", "adam"] = _f("ranger", "Ranger (RAdam + Lookahead k=6 alpha=0.5 + gradient "
                                                   "centralisation, as both reference trainers) or Adam.")
    lr: float = _f(1e-4, "Learning rate (FS config lr, pSp --learning_rate: 1e-4).")
    betas: list[float] = _f(doc="Adam/Ranger betas (FS config beta_1/beta_2 and Ranger's default: 0.95, 0.999).",
                            factory=lambda: [0.95, 0.999])
    eps: Union[float, None] = _f(None, "Denominator epsilon (null: Ranger 1e-5, Adam 1e-8).")
    weight_decay: float = _f(0.0, "Weight decay (FS config: 0).")
    lr_step_epochs: Union[int, None] = _f(10, "Step decay: multiply lr by lr_gamma every this many epochs "
                                              "(FS StepLR step_size 10 of 12 epochs). null: constant lr (pSp).")
    lr_gamma: float = _f(0.1, "Step-decay factor (FS gamma 0.1).")

    def validate(self, steps_per_epoch: int | None) -> None:
        """Ranges of the optim section; a step decay needs the run's epoch length ``steps_per_epoch``.

        Raises:
            ConfigError: naming the key.
        """
        _pos("optim.lr", self.lr)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas: two values in [0, 1), got {self.betas}")
        if self.eps is not None:
            _pos("optim.eps", self.eps)
        _pos("optim.weight_decay", self.weight_decay, allow_zero=True)
        if self.lr_step_epochs is not None:
            _pos("optim.lr_step_epochs", self.lr_step_epochs)
            if steps_per_epoch is None:
                raise ConfigError("optim.lr_step_epochs needs run.steps_per_epoch (an epoch length in steps)")
        _pos("optim.lr_gamma", self.lr_gamma)


@dataclass
class FSLossConfig:
    """Feature-Style losses (paper section 4, eqs. 2-8; trainer.py compute_loss)."""

    use_lpips: bool = _f(True, "Multi-scale LPIPS on both inversions (eq. 3). Needs the LPIPS trunk weights.")
    use_id: bool = _f(True, "Multi-layer ArcFace identity loss on both inversions (eq. 6). Needs backbone.pth.")
    use_parsing: bool = _f(True, "Multi-layer face-parsing loss on both inversions (eq. 7). Needs 79999_iter.pth.")
    l2: float = _f(1.0, "Weight of the MSE on synthetic samples (eq. 2; config w.l2).")
    lpips: float = _f(0.2, "lambda_1, weight of the LPIPS term (w.lpips).")
    f_recon: float = _f(0.01, "lambda_2, weight of the feature reconstruction MSE ||F - G^K(w)|| (eq. 4; w.f_recon).")
    id: float = _f(0.1, "lambda_3, weight of the identity term (w.id).")
    parsing: float = _f(0.1, "lambda_4, weight of the parsing term (w.landmark).")
    lpips_scales: int = _f(3, "LPIPS scales: the image and its 2x, 4x bilinear halvings (multiscale_lpips: 3). "
                              "AlexNet LPIPS needs the smallest scale to be at least 31 pixels.")
    l2_on_real: bool = _f(False, "Also apply the MSE to real samples (reference option l2loss_on_real_image; off).")
    first_inversion: Literal["latent", "reference"] = _f(
        "latent", "'latent': the two inversions are G(w) and G(w, F) (paper). 'reference': as the official "
                  "trainer.py, whose first inversion is also G(w, F), with a fresh random noise.")
    parsing_size: int = _f(512, "Side BiSeNet reads its input at (trainer: 512, the size it was trained at).")
    id_resize_mode: Literal["nearest", "bilinear", "area"] = _f(
        "nearest", "How images are resized to ArcFace's 112x112 (trainer.py IDloss: F.interpolate default, nearest).")

    def validate(self) -> None:
        """Loss weights >= 0, positive scales and sizes. Raises: ConfigError naming the key."""
        for name in ("l2", "lpips", "id", "f_recon", "parsing"):
            _pos(f"loss.{name}", getattr(self, name), allow_zero=True)
        _pos("loss.lpips_scales", self.lpips_scales)
        _pos("loss.parsing_size", self.parsing_size)


@dataclass
class FSEncoderConfig:
    """Feature-Style encoder architecture. The defaults are the official fs_encoder_v2 (143_enc.pth)."""

    widths: list[int] = _f(doc="Channels of the IResNet stem/stages (official 64, 128, 256, 512).",
                           factory=lambda: [64, 128, 256, 512])
    blocks: list[int] = _f(doc="IBasicBlocks per stage (official IResNet-50: 3, 4, 14, 3).",
                           factory=lambda: [3, 4, 14, 3])
    input_size: int = _f(256, "Encoder input side in pixels (official enc_resolution 256; images are halved "
                              "bilinearly down to it, or upsampled when smaller).")
    stride: int = _f(2, "Stride of the last content_layer conv (fs_stride 2: F at 16x16 from a 256 input).")
    init_from_arcface: Literal["auto", "always", "never"] = _f(
        "auto", "Initialise the stem and stages from ArcFace backbone.pth (the reference always does): 'auto' "
                "when the file is present and the widths/blocks are official, 'always' (refuse to start "
                "without it), 'never' (random init).")

    def validate(self) -> None:
        """Four positive stages, a positive input size, stride 1 or 2. Raises: ConfigError naming the key."""
        _check_stages(self.widths, self.blocks)
        _pos("encoder.input_size", self.input_size)
        if self.stride not in (1, 2):
            raise ConfigError(f"encoder.stride: 1 or 2, got {self.stride}")


def _validate_sections(cfg: FSTrainConfig | PSPTrainConfig) -> None:
    """The checks every training config shares: each section's own, in order (run, data, optim, weights,
    loss, encoder). Raises ConfigError naming the key."""
    cfg.run.validate()
    cfg.data.validate()
    cfg.optim.validate(cfg.run.steps_per_epoch)
    cfg.weights.validate()
    cfg.loss.validate()
    cfg.encoder.validate()


@dataclass
class FSTrainConfig:
    """Feature-Style encoder training (``python -m vidinv.training fs``)."""

    #: Whether the config has a pSp-style ``objective`` field that selects its defaults (FS: one objective).
    has_objective: ClassVar[bool] = False

    run: RunConfig = _f(doc="Run control.", factory=RunConfig)
    data: DataConfig = _f(doc="Real images.", factory=DataConfig)
    weights: WeightsConfig = _f(doc="Frozen networks' files.", factory=WeightsConfig)
    optim: OptimConfig = _f(doc="Optimiser.", factory=OptimConfig)
    loss: FSLossConfig = _f(doc="Loss terms and weights.", factory=FSLossConfig)
    encoder: FSEncoderConfig = _f(doc="Encoder architecture.", factory=FSEncoderConfig)
    synthetic_per_batch: int = _f(1, "Synthetic samples z -> w -> G(w) per step and rank (batch_size 1).")
    real_per_batch: int = _f(1, "Real images per step and rank (use_realimg, batch_size 1).")
    # K's value is vidinv.models.fs_encoder.FS_FEATURE_LAYER (not imported: configs load without torch;
    # tests/test_architecture.py checks that the two agree)
    feature_layer: int = _f(5, "Generator feature index K that F replaces (idx_k 5: the second 16x16 layer).")
    feature_warmup_steps: int = _f(10_000, "feature_scale = min(1, step / this) (trainer: min(1, 1e-4 * n_iter)). "
                                           "0: always 1.")
    truncation_psi: float = _f(1.0, "Truncation of the synthetic w towards latent_avg (truncation_psi 1: none).")
    real_noise: Literal["random", "const"] = _f(
        "random", "Noise maps used to reconstruct real images: 'random' (a fresh draw, as the reference, which "
                  "reuses the synthetic samples' random noise) or 'const' (the generator's buffers, as at inference).")

    def validate(self) -> None:
        """Semantic checks beyond types, section by section, then the batch and feature settings.

        Raises:
            ConfigError: the first problem found, naming the key.
        """
        _validate_sections(self)
        _pos("synthetic_per_batch", self.synthetic_per_batch, allow_zero=True)
        _pos("real_per_batch", self.real_per_batch, allow_zero=True)
        if self.synthetic_per_batch + self.real_per_batch == 0:
            raise ConfigError("synthetic_per_batch + real_per_batch must be > 0")
        _pos("feature_layer", self.feature_layer)
        _pos("feature_warmup_steps", self.feature_warmup_steps, allow_zero=True)

    @classmethod
    def defaults(cls, objective: str = "encode") -> FSTrainConfig:
        """The official Feature-Style defaults (``objective`` is not used: FS has a single objective)."""
        fs = cls()
        fs.run.out_dir = "runs/fs"
        return fs


@dataclass
class PSPLossConfig:
    """pSp losses (training/coach.py calc_loss)."""

    use_lpips: bool = _f(True, "LPIPS (AlexNet) term. Needs the LPIPS trunk weights.")
    use_id: bool = _f(True, "IR-SE50 identity term 1 - <f(y_hat), f(y)>. Needs model_ir_se50.pth.")
    l2: float = _f(1.0, "--l2_lambda (1).")
    lpips: float = _f(0.8, "--lpips_lambda (0.8).")
    id: float = _f(0.1, "--id_lambda (0.1).")
    w_norm: float = _f(0.0, "--w_norm_lambda: sum_b ||w_b - latent_avg||_2 / B (0 for both tasks by default; the pSp "
                            "README's super-resolution command uses 0.005).")

    def validate(self) -> None:
        """Loss weights >= 0. Raises: ConfigError naming the key."""
        for name in ("l2", "lpips", "id", "w_norm"):
            _pos(f"loss.{name}", getattr(self, name), allow_zero=True)


@dataclass
class PSPEncoderConfig:
    """GradualStyleEncoder architecture. The defaults are the official IR-SE50 body (psp_ffhq_encode.pt)."""

    widths: list[int] = _f(doc="Channels of the IR-SE stages (official 64, 128, 256, 512; multiples of 16).",
                           factory=lambda: [64, 128, 256, 512])
    blocks: list[int] = _f(doc="IR-SE units per stage (official 50 layers: 3, 4, 14, 3).",
                           factory=lambda: [3, 4, 14, 3])
    init_from_irse50: Literal["auto", "always", "never"] = _f(
        "auto", "Initialise input_layer and body from model_ir_se50.pth (pSp does, strict=False): 'auto' when "
                "present and the architecture is official, 'always', 'never'.")

    def validate(self) -> None:
        """Four positive stages with widths divisible by 16. Raises: ConfigError naming the key."""
        _check_stages(self.widths, self.blocks)
        if any(w % 16 for w in self.widths):
            raise ConfigError(f"encoder.widths: multiples of 16 (IR-SE gates reduce by 16), got {self.widths}")


@dataclass
class PSPTrainConfig:
    """pSp training (``python -m vidinv.training psp``)."""

    #: Whether the config has an ``objective`` field that selects its defaults (:meth:`defaults`).
    has_objective: ClassVar[bool] = True

    run: RunConfig = _f(doc="Run control.", factory=RunConfig)
    data: DataConfig = _f(doc="Real images (targets).", factory=DataConfig)
    weights: WeightsConfig = _f(doc="Frozen networks' files.", factory=WeightsConfig)
    optim: OptimConfig = _f(doc="Optimiser.", factory=OptimConfig)
    loss: PSPLossConfig = _f(doc="Loss terms and weights.", factory=PSPLossConfig)
    encoder: PSPEncoderConfig = _f(doc="Encoder architecture.", factory=PSPEncoderConfig)
    objective: Literal["encode", "super_resolution"] = _f(
        "encode", "'encode': StyleGAN inversion (input = target). 'super_resolution': the input is the target "
                  "bicubic-downsampled by a random factor of sr_factors, then resized back to 256. (Formerly "
                  "'task', still read with a deprecation warning.)")
    batch_size: int = _f(8, "Images per step and rank (--batch_size 8).")
    sr_factors: list[int] = _f(doc="Super-resolution downsampling factors, one drawn per image (pSp "
                                   "--resize_factors): 1, 2, 4, 8, 16 by default; add 32 as pSp's code offers.",
                               factory=lambda: [1, 2, 4, 8, 16])
    noise: Literal["random", "const"] = _f("random", "Generator noise while training: 'random' (pSp forward's "
                                                     "randomize_noise=True) or 'const'.")

    def validate(self) -> None:
        """Semantic checks beyond types, section by section, then the batch and super-resolution factors.

        Raises:
            ConfigError: the first problem found, naming the key.
        """
        _validate_sections(self)
        _pos("batch_size", self.batch_size)
        if not self.sr_factors or any(f < 1 or f & (f - 1) for f in self.sr_factors):
            raise ConfigError(f"sr_factors: powers of two >= 1, got {self.sr_factors}")

    @classmethod
    def defaults(cls, objective: str = "encode") -> PSPTrainConfig:
        """The official pSp defaults of ``objective`` (one of :data:`PSP_OBJECTIVES`).

        Raises:
            ConfigError: unknown objective.
        """
        if objective not in PSP_OBJECTIVES:
            raise ConfigError(f"objective: must be one of {', '.join(map(repr, PSP_OBJECTIVES))}, got {objective!r}")
        cfg = cls(objective=objective)  # type: ignore[arg-type]  # checked against PSP_OBJECTIVES above
        cfg.run.out_dir = f"runs/psp_{objective}"
        cfg.run.max_steps = 500_000
        cfg.run.steps_per_epoch = None
        cfg.run.log_every = 50
        cfg.run.checkpoint_every = 5000
        cfg.data.train_split = 1.0
        cfg.data.hflip = objective == "encode"
        cfg.data.num_workers = 8
        cfg.optim.lr_step_epochs = None
        return cfg


#: The config class of each training task, by task name: the one place the names map to configs (what
#: differs between tasks is on the classes: ``has_objective``, ``defaults(objective)``).
TASKS: dict[str, type[FSTrainConfig] | type[PSPTrainConfig]] = {"fs": FSTrainConfig, "psp": PSPTrainConfig}

#: The pSp training objectives (``PSPTrainConfig.objective``).
PSP_OBJECTIVES = typing.get_args(typing.get_type_hints(PSPTrainConfig)["objective"])

#: Deprecated top-level keys still read, per task: old name -> new name.
LEGACY_KEYS = {"psp": {"task": "objective"}}

#: Keys that may differ between a checkpoint's config and the config used to resume it.
RUN_CONTROL_KEYS = frozenset({
    "run.max_steps", "run.log_every", "run.sample_every", "run.checkpoint_every", "run.keep_checkpoints",
    "run.progress", "run.export_on_finish", "run.num_threads", "run.out_dir", "run.device",
    "data.num_workers", "data.real_dir", "data.video_cache_dir", "weights.weights_dir", "weights.fetch",
})


# ------------------------------------------------------------------------------------------ presets
def _unknown_task(task: str) -> ConfigError:
    return ConfigError(f"unknown training task {task!r}; choose from {', '.join(TASKS)}")


def default_config(task: str, objective: str = "encode") -> FSTrainConfig | PSPTrainConfig:
    """The official defaults of ``task`` (``"fs"`` or ``"psp"``; for pSp also its ``objective``).

    Raises:
        ConfigError: unknown task or pSp objective.
    """
    if task not in TASKS:
        raise _unknown_task(task)
    return TASKS[task].defaults(objective)


# --------------------------------------------------------------------------------- dict <-> config
def config_to_dict(cfg: Any) -> dict:
    """Nested plain dict (JSON/YAML-ready) of a config dataclass."""
    return dataclasses.asdict(cfg)


def upgrade_legacy_keys(task: str, data: dict, source: str = "config", warn: bool = True) -> dict:
    """``data`` (a nested dict of ``task``'s config) with deprecated top-level keys renamed.

    The pSp objective used to be called ``task`` (a word that also names the training task, fs or
    psp); ``task: super_resolution`` is read as ``objective: super_resolution``.

    Args:
        task: ``"fs"`` or ``"psp"``.
        data: the keys as given (not modified).
        source: where they come from, for the messages (a file name, ``--set``, ...).
        warn: emit a :class:`ConfigDeprecationWarning` for each renamed key.

    Raises:
        ConfigError: both the old and the new name are given.
    """
    renames = LEGACY_KEYS.get(task, {})
    if not isinstance(data, Mapping) or not any(old in data for old in renames):
        return data
    out = {}
    for key, value in data.items():
        new = renames.get(key)
        if new is None:
            out[key] = value
            continue
        if new in data:
            raise ConfigError(f"{source}: {key!r} is the deprecated name of {new!r}; give only {new!r}")
        if warn:
            warnings.warn(f"{source}: the config key {key!r} is deprecated; call it {new!r}",
                          ConfigDeprecationWarning, stacklevel=4)
        out[new] = value
    return out


def _schema_type(cls: type, dotted: str) -> Any:
    """Type annotation of the dotted key (``encoder.widths[0]`` = an item of ``encoder.widths``), or None."""
    tp: Any = cls
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        if not (dataclasses.is_dataclass(tp) and name in {f.name for f in dataclasses.fields(tp)}):
            return None
        tp = _strip_optional(typing.get_type_hints(tp)[name])
        if index:
            if typing.get_origin(tp) is not list:
                return None
            tp = typing.get_args(tp)[0]
    return tp


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _expected(tp: Any, value: Any) -> str:
    """``"expected ..., got ..."`` for a value that does not fit the annotation ``tp``."""
    if typing.get_origin(tp) is Literal:
        return f"must be one of {', '.join(map(repr, typing.get_args(tp)))}, got {value!r}"
    if dataclasses.is_dataclass(tp):
        return f"expected a mapping (a section), got {value!r}"
    if tp is bool:
        return f"expected true/false, got {value!r}"
    if tp is int:
        return f"expected an integer, got {value!r}"
    if tp is float:
        return f"expected a number, got {value!r}"
    if tp is str:
        return f"expected a string, got {type(value).__name__} {value!r}"
    if typing.get_origin(tp) is list:
        return f"expected a list, got {type(value).__name__} {value!r}"
    return f"got {value!r}"


def _explain(exc: OmegaConfBaseException, cls: type) -> str:
    """One line for an OmegaConf merge error: the dotted key and what was wrong with it."""
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, ConfigKeyError) and key:
        section, _, name = key.rpartition(".")
        owner = _schema_type(cls, section) if section else cls
        allowed = [f.name for f in dataclasses.fields(owner)] if dataclasses.is_dataclass(owner) else []
        where = f" in {section}" if section else ""
        return f"unknown key{where}: {name!r} ({key}); allowed: {', '.join(allowed)}"
    value = getattr(exc, "value", None)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    elif isinstance(value, Node):  # a scalar still in OmegaConf's wrapper (e.g. a string given for a list)
        value = value._value()
    tp = _schema_type(cls, key) if key else None
    if tp is not None:
        return f"{key}: {_expected(tp, value)}"
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"{key}: {first}" if key else first


def _check_sections(cls: type, data: Mapping, prefix: str = "") -> None:
    """A section given as a scalar or list (OmegaConf's merge error would not name the key)."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        tp = hints.get(key) if isinstance(key, str) else None
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):  # only sections (dataclass types)
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _check_sections(tp, value, dotted + ".")
        elif value is not None:
            raise ConfigError(f"{dotted}: expected a mapping (a section), got {value!r}")


def _build(task: str, layers: list[tuple[str, dict]]) -> FSTrainConfig | PSPTrainConfig:
    """Merge ``layers`` (``(source, nested dict)``, later ones win) over the task's defaults and validate."""
    if task not in TASKS:
        raise _unknown_task(task)
    cls = TASKS[task]
    upgraded = []
    for src, data in layers:  # a loop, not a comprehension: the warning's stacklevel points at the caller
        upgraded.append((src, upgrade_legacy_keys(task, data, src)))
    layers = upgraded
    objective = "encode"
    for _, data in layers:
        if cls.has_objective and "objective" in data:
            objective = data["objective"]
    base = OmegaConf.structured(default_config(task, objective))
    for _, data in layers:
        _check_sections(cls, data)
    try:
        # a structured config converts back to its dataclass instance
        cfg = typing.cast(FSTrainConfig | PSPTrainConfig,
                          OmegaConf.to_object(OmegaConf.merge(base, *(data for _, data in layers))))
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc, cls)) from None
    cfg.validate()
    return cfg


def config_from_dict(task: str, data: dict | None = None) -> FSTrainConfig | PSPTrainConfig:
    """Build and validate a config: the task's official defaults updated by ``data`` (nested dict).

    Raises:
        ConfigError: unknown keys (with the allowed ones), wrong types, or values that fail
            :func:`validate`.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(data).__name__}")
    return _build(task, [("config", dict(data or {}))])


def _read_file(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text (YAML or JSON expected)") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot parse: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _dotlist(overrides: list[str]) -> dict:
    """``section.key=value`` strings as a nested dict (values parsed as YAML by OmegaConf: ``1e-4`` ->
    float, ``null`` -> None, ``[16, 32]`` -> list)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
    try:
        return typing.cast(dict, OmegaConf.to_container(OmegaConf.from_dotlist([o.strip() for o in overrides])))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"overrides {' '.join(overrides)}: {(str(exc).splitlines() or [''])[0]}") from None


def load_config(task: str, path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                extra: dict | None = None) -> FSTrainConfig | PSPTrainConfig:
    """Load a task config: official defaults, then the file (YAML or JSON), then ``extra`` (nested dict,
    e.g. from command-line flags), then ``overrides`` (``section.key=value``), merged by OmegaConf.

    A deprecated key (the pSp ``task``, now ``objective``) is read with a
    :class:`ConfigDeprecationWarning`.

    Raises:
        ConfigError: unreadable file, unknown keys, wrong types or invalid values (one line naming the key).
    """
    layers = []
    if path:
        layers.append((str(path), _read_file(path)))
    if extra:
        layers.append(("options", extra))
    if overrides:
        layers.append(("--set", _dotlist(list(overrides))))
    return _build(task, layers)


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}`` of a nested dict (empty dicts kept as values)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(flatten_dict(v, key))
        else:
            out[key] = v
    return out


def flat_dict(cfg: Any) -> dict[str, Any]:
    """``{"section.key": value}`` of a config (for comparisons and logs)."""
    return flatten_dict(config_to_dict(cfg))


def validate(cfg: FSTrainConfig | PSPTrainConfig) -> None:
    """Semantic checks beyond types (ranges, list lengths, consistency): ``cfg.validate()``.

    Raises:
        ConfigError: the first problem found, naming the key.
    """
    cfg.validate()


# ------------------------------------------------------------------------------------ documentation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _docs(cls: type, prefix: str = "") -> dict[str, str]:
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        out[key] = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_docs(hints[f.name], key + "."))
    return out


def describe(task: str) -> str:
    """Human-readable list of every field of a task's config: dotted key, type, default, documentation."""
    cls = TASKS[task]
    defaults = flat_dict(default_config(task))
    lines = []

    def walk(c: type, prefix: str) -> None:
        hints = typing.get_type_hints(c)
        for f in dataclasses.fields(c):
            key = f"{prefix}{f.name}"
            tp = hints[f.name]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                lines.append(f"[{key}] {f.metadata.get('doc', '')}")
                walk(tp, key + ".")
            else:
                lines.append(f"  {key} = {defaults.get(key)!r}  ({_type_name(tp)})")
                lines.append(f"      {f.metadata.get('doc', '')}")

    walk(cls, "")
    return "\n".join(lines)


def _yaml_flow(value: Any) -> str:
    """A scalar or list as one line of YAML flow style (PyYAML does the quoting)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").rstrip()


def _dump_commented(data: dict, comments: dict[str, str], indent: int = 0, prefix: str = "") -> list[str]:
    out = []
    pad = " " * indent
    for key, val in data.items():
        path = f"{prefix}{key}"
        for line in (comments.get(path) or "").splitlines():
            out.append(f"{pad}# {line}".rstrip())
        if isinstance(val, dict) and val:
            out.append(f"{pad}{key}:")
            out.extend(_dump_commented(val, comments, indent + 2, path + "."))
        else:
            out.append(f"{pad}{key}: {_yaml_flow(val)}")
    return out


def to_yaml(cfg: FSTrainConfig | PSPTrainConfig) -> str:
    """The config as YAML with every field's documentation as a comment above it (read back by
    :func:`load_config`)."""
    return "\n".join(_dump_commented(config_to_dict(cfg), _docs(type(cfg)))) + "\n"
