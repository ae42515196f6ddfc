"""Feature-Style encoder training step (Yao et al., ECCV 2022, section 4; reference ``trainer.py``).

Each step and rank takes ``synthetic_per_batch`` synthetic samples and ``real_per_batch`` real aligned
faces (synthetic first, as the reference concatenates them):

* synthetic: ``z ~ N(0, I)`` → ``w = mapping(z)`` (truncated towards latent_avg when psi < 1) →
  ``x = G(w, noise)`` with a fresh noise draw that is **kept** and passed back when reconstructing
  that sample (so the sample can be reconstructed exactly);
* real: images in [-1, 1] at the generator resolution, reconstructed with a fresh random noise draw
  (``real_noise: random``) or the generator's constant noise (``const``).

The encoder sees the images halved bilinearly down to its input size (``downscale``, as
``Trainer.encode``) and predicts W+ offsets (``w = offsets + latent_avg``) and the feature code F. Two
inversions are made (first_inversion ``latent``): ``G(w)`` and ``G(w, F)`` = the synthesis with F
replacing the activation at layer K, mixed with the warm-up ``feature_scale = min(1, step /
feature_warmup_steps)`` (the reference's ``min(1, 1e-4 * n_iter)``). Losses (eqs. 2-8):

``L = l2 * MSE(G(w)[synthetic], x[synthetic]) + lpips * sum_{G(w), G(w,F)} LPIPS_3scales
+ f_recon * MSE(F, G^K(w).detach()) + id * sum ID_5layers + parsing * sum Parsing_3heads``

with the default weights 1, 0.2, 0.01, 0.1, 0.1 (configs/001.yaml).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.models.bisenet import load_bisenet
from vidinv.models.fs_encoder import FeatureStyleEncoder, downscale
from vidinv.models.iresnet import load_arcface
from vidinv.training.config import ConfigError, FSTrainConfig, config_to_dict
from vidinv.training.export import export_fs_encoder, fs_export_name, run_name
from vidinv.training.losses import (
    LPIPS_MIN_SIZE,
    MultiLayerIdentityLoss,
    ParsingLoss,
    build_lpips,
    feature_reconstruction_loss,
    mse_loss,
    multiscale_lpips,
)
from vidinv.training.networks import (
    WeightFiles,
    build_fs_encoder,
    init_fs_encoder_from_arcface,
    is_official_arch,
    load_training_generator,
)
from vidinv.training.task import StepOutput, TrainingTask

log = logging.getLogger(__name__)

__all__ = ["FSTask", "feature_scale"]


def feature_scale(step: int, warmup_steps: int) -> float:
    """Feature-code mixing weight at ``step``: ``min(1, step / warmup_steps)`` (1 when warmup is 0).

    With 10 000 warm-up steps this is the reference's ``min(1.0, 0.0001 * n_iter)``.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / float(warmup_steps))


class FSTask(TrainingTask):
    """Everything a Feature-Style run needs besides the loop: networks, losses, one step, export
    (the :class:`training.task.TrainingTask` of ``python -m vidinv.training fs``).

    Args:
        cfg: the run's :class:`training.config.FSTrainConfig`.
        files: resolved weight files (:func:`training.networks.resolve_weight_files`).
        device: device of the run.

    Attributes:
        encoder: the trained :class:`vidinv.models.fs_encoder.FeatureStyleEncoder` (on ``device``).
        G: the frozen generator; ``latent_avg`` its (n_latent, style_dim) W+ average.
        image_size: resolution of the real images (the generator's).
        real_per_step: real images per step and rank.

    Raises:
        ConfigError: the encoder does not fit the generator, or the LPIPS scales are too small.
    """

    name = "fs"
    config_class = FSTrainConfig
    default_generator = "psp_ffhq_encode.pt"  # decoder.* and latent_avg, as the FS trainer
    loss_flags = ("--no-id-loss", "--no-parsing-loss", "--no-lpips-loss")
    no_real_images_hint = "; or set real_per_batch: 0 to train on synthetic samples only"

    encoder: FeatureStyleEncoder

    @classmethod
    def weight_roles(cls, cfg: FSTrainConfig) -> tuple[dict[str, str], dict[str, str]]:
        """Generator and LPIPS trunk (see the base class), ArcFace ``backbone.pth`` (identity loss, or
        ``encoder.init_from_arcface: always``; optional with ``auto``) and BiSeNet (parsing loss)."""
        required, optional = super().weight_roles(cfg)
        w = cfg.weights
        if cfg.loss.use_id or cfg.encoder.init_from_arcface == "always":
            required["arcface"] = w.arcface
        elif cfg.encoder.init_from_arcface == "auto":
            optional["arcface"] = w.arcface
        if cfg.loss.use_parsing:
            required["parsing"] = w.parsing
        return required, optional

    def __init__(self, cfg: FSTrainConfig, files: WeightFiles, device: torch.device):
        self.cfg, self.device, self.files = cfg, device, files
        self.G, self.latent_avg = load_training_generator(files.generator, cfg.weights.latent_avg_samples,
                                                          cfg.run.seed, device)
        G = self.G
        self.k = int(cfg.feature_layer)
        if not 1 <= self.k <= G.num_layers - 1:
            raise ConfigError(f"feature_layer: must be in [1, {G.num_layers - 1}] for a {G.size}x{G.size} "
                              f"generator, got {self.k}")
        c, fh, fw = G.feature_shape(self.k)
        e = cfg.encoder
        side = e.input_size / (8 * e.stride)
        if side != fh:
            raise ConfigError(f"encoder.input_size {e.input_size} with stride {e.stride} gives a {side:g}x{side:g} "
                              f"feature code, but generator layer K={self.k} is {fh}x{fw}")
        self.encoder = build_fs_encoder(G.n_latent, G.style_dim, c, e.widths, e.blocks, e.input_size, e.stride)
        lo = cfg.loss
        if lo.use_lpips and G.size // 2 ** (lo.lpips_scales - 1) < LPIPS_MIN_SIZE:
            raise ConfigError(f"loss.lpips_scales {lo.lpips_scales} on {G.size}px images reaches "
                              f"{G.size // 2 ** (lo.lpips_scales - 1)}px, below LPIPS's {LPIPS_MIN_SIZE}px")

        arcface = load_arcface(files.arcface) if files.arcface is not None else None
        if e.init_from_arcface != "never":
            if not is_official_arch(e.widths, e.blocks):
                if e.init_from_arcface == "always":
                    raise ConfigError("encoder.init_from_arcface: 'always' needs the official widths/blocks")
                log.info("encoder backbone not initialised from ArcFace (non-official widths/blocks)")
            elif arcface is not None:
                init_fs_encoder_from_arcface(self.encoder, arcface)
                log.info("Feature-Style encoder backbone initialised from %s", files.arcface)
            else:
                log.warning("ArcFace backbone.pth not found: the Feature-Style encoder starts from random "
                            "weights (the reference initialises it from ArcFace)")
        self.encoder.to(device).train()

        self.lpips = build_lpips(files.lpips_alexnet, random_backbone=cfg.weights.lpips_random_backbone,
                                 device=device) if lo.use_lpips else None
        self.id_loss: MultiLayerIdentityLoss | None = None
        if lo.use_id:
            assert arcface is not None  # weight_roles makes arcface a required file with loss.use_id
            self.id_loss = MultiLayerIdentityLoss(arcface, lo.id_resize_mode).to(device)
        self.parsing_loss: ParsingLoss | None = None
        if lo.use_parsing:
            assert files.parsing is not None  # weight_roles makes parsing a required file with loss.use_parsing
            self.parsing_loss = ParsingLoss(load_bisenet(files.parsing), lo.parsing_size).to(device)
        self.image_size = G.size
        self.real_per_step = int(cfg.real_per_batch)

    # ------------------------------------------------------------------------------------ helpers
    def dataset_options(self) -> dict:
        """Keyword arguments of :class:`training.data.FaceImageDataset` for this task."""
        return {"hflip": self.cfg.data.hflip, "sr_factors": None}

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images at the generator size → the encoder's input size (bilinear halvings, as ``Trainer.encode``)."""
        target = int(getattr(self.encoder, "enc_resolution", self.cfg.encoder.input_size))
        size = x.shape[-1]
        if size == target:
            return x
        ratio = size / target
        times = int(round(math.log2(ratio))) if ratio > 1 else 0
        if ratio > 1 and target * 2 ** times == size:
            return downscale(x, times)
        return F.interpolate(x, size=(target, target), mode="bilinear", align_corners=False, antialias=ratio > 1)

    def _noise(self, batch: int, g: torch.Generator) -> list[torch.Tensor]:
        return [torch.randn(batch, 1, *getattr(self.G.noises, f"noise_{i}").shape[-2:], generator=g).to(self.device)
                for i in range(self.G.num_layers)]

    def _const_noise(self, batch: int) -> list[torch.Tensor]:
        return [getattr(self.G.noises, f"noise_{i}").expand(batch, -1, -1, -1) for i in range(self.G.num_layers)]

    # -------------------------------------------------------------------------------------- step
    def compute(self, model: nn.Module, real: dict | None, step: int, g: torch.Generator) -> StepOutput:
        """Losses of one step.

        Args:
            model: the encoder, possibly wrapped in DistributedDataParallel.
            real: a batch from :class:`training.data.FaceImageDataset` (``"target"`` (B_r, 3, S, S) in
                [-1, 1]) or None when ``real_per_batch`` is 0.
            step: 0-based step (sets the feature-scale warm-up).
            g: this step's CPU generator (z and noise draws).

        Returns:
            ``(total, scalars, visuals)``: the loss to back-propagate (0-dim), a dict of 0-dim tensors
            (each enabled term unweighted, ``total`` and ``feature_scale``) and the image columns
            ``[input, G(w), G(w, F)]`` for sample grids.
        """
        cfg, G, dev = self.cfg, self.G, self.device
        lo = cfg.loss
        n_syn = int(cfg.synthetic_per_batch)
        xs, noises = [], []
        if n_syn:
            z = torch.randn(n_syn, G.style_dim, generator=g).to(dev)
            n_s = self._noise(n_syn, g)
            with torch.no_grad():
                w_s = G.mapping(z)
                if cfg.truncation_psi < 1:
                    avg = self.latent_avg[0]
                    w_s = avg + cfg.truncation_psi * (w_s - avg)
                xs.append(G.synthesis(w_s, noise=n_s).float())
            noises.append(n_s)
        n_real = 0
        if real is not None:
            x_r = real["target"].to(dev, non_blocking=True).float()
            n_real = x_r.shape[0]
            xs.append(x_r)
            noises.append(self._noise(n_real, g) if cfg.real_noise == "random" else self._const_noise(n_real))
        x = torch.cat(xs)
        noise = [torch.cat(parts) for parts in zip(*noises)]
        b = x.shape[0]

        offsets, feat = model(self.encoder_input(x))
        w = offsets + self.latent_avg.to(offsets.dtype)
        s = feature_scale(step, cfg.feature_warmup_steps)
        if lo.first_inversion == "latent":
            st = G.coarse(w, self.k, noise=noise)
            img_w = G.fine(st.feature, w, st, noise=noise, feature_scale=1.0)
            target_feature = st.feature
            img_wf = G.fine(feat, w, st, noise=noise, feature_scale=s)
        else:  # official trainer.py: both inversions inject F; the first with a fresh random noise
            noise_x = self._noise(b, g)
            st1 = G.coarse(w, self.k, noise=noise_x)
            img_w = G.fine(feat, w, st1, noise=noise_x, feature_scale=s)
            target_feature = st1.feature
            st2 = G.coarse(w, self.k, noise=noise)
            img_wf = G.fine(feat, w, st2, noise=noise, feature_scale=s)
        img_w, img_wf = img_w.float(), img_wf.float()

        n_mse = b if lo.l2_on_real else n_syn
        terms: dict[str, torch.Tensor] = {"l2": mse_loss(img_w[:n_mse], x[:n_mse])}
        total = lo.l2 * terms["l2"]
        if self.lpips is not None:
            terms["lpips"] = (multiscale_lpips(self.lpips, img_w, x, lo.lpips_scales)
                              + multiscale_lpips(self.lpips, img_wf, x, lo.lpips_scales))
            total = total + lo.lpips * terms["lpips"]
        terms["f_recon"] = feature_reconstruction_loss(feat.float(), target_feature.float())
        total = total + lo.f_recon * terms["f_recon"]
        if self.id_loss is not None:
            with torch.no_grad():
                tf = self.id_loss.features(x)
            terms["id"] = self.id_loss(img_w, tf) + self.id_loss(img_wf, tf)
            total = total + lo.id * terms["id"]
        if self.parsing_loss is not None:
            with torch.no_grad():
                tp = self.parsing_loss.features(x)
            terms["parsing"] = self.parsing_loss(img_w, tp) + self.parsing_loss(img_wf, tp)
            total = total + lo.parsing * terms["parsing"]
        terms["total"] = total
        terms["feature_scale"] = torch.tensor(s, device=dev)
        return total, terms, [x.detach(), img_w.detach(), img_wf.detach()]

    # ------------------------------------------------------------------------------------ export
    def export(self, folder: str | os.PathLike) -> Path:
        """Write the encoder as ``<folder>/<run name>_fs_encoder.pth`` (the 143_enc.pth keys plus a vidinv
        record with its architecture, the user's licence label and this run's config; see :mod:`training.export`)."""
        cfg = self.cfg
        init = self.files.arcface if cfg.encoder.init_from_arcface != "never" and is_official_arch(
            cfg.encoder.widths, cfg.encoder.blocks) and self.files.arcface is not None else None
        trained_from = {"generator": Path(self.files.generator).name, "initialised_from": init and Path(init).name,
                        "real_dir": cfg.data.real_dir, "videos": list(cfg.data.videos)}
        return export_fs_encoder(self.encoder, Path(folder) / fs_export_name(run_name(cfg.run.out_dir)),
                                 config=config_to_dict(cfg), trained_from=trained_from)
