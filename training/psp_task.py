"""pSp training step (Richardson et al., CVPR 2021, section 3; reference ``training/coach.py``).

Input ``x`` (B, 3, 256, 256) in [-1, 1]: the aligned face (objective ``encode``; randomly flipped when
``data.hflip``) or its super-resolution degradation (``super_resolution``: bicubic downsampling by a
random factor of ``sr_factors``, then back to 256; :mod:`training.degrade`); the target ``y`` is the
full-resolution face. The GradualStyleEncoder predicts W+ codes starting from the average latent
(``w = encoder(x) + latent_avg``, ``--start_from_latent_avg``); the frozen StyleGAN2 synthesises
``G(w)`` with random noise (pSp's ``randomize_noise=True`` while training), average-pooled to 256x256
(``face_pool``). Loss (``calc_loss``):

``L = l2 * MSE(y_hat, y) + lpips * LPIPS(y_hat, y) + id * (1 - <f(y_hat), f(y)>) + w_norm * ||w - latent_avg||``

with weights 1, 0.8, 0.1 and no W-norm term by default for both objectives (super-resolution: L2 + LPIPS +
identity, as the pSp super-resolution setting; the README command's W-norm 0.005 is a config option).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.models.irse import load_irse50
from vidinv.models.psp import GradualStyleEncoder
from vidinv.training.config import ConfigError, PSPTrainConfig, config_to_dict
from vidinv.training.export import export_psp, psp_export_name, run_name
from vidinv.training.losses import IRSEIdentityLoss, build_lpips, mse_loss, w_norm_loss
from vidinv.training.networks import (
    WeightFiles,
    build_psp_encoder,
    init_psp_encoder_from_irse50,
    is_official_arch,
    load_training_generator,
)
from vidinv.training.task import StepOutput, TrainingTask

log = logging.getLogger(__name__)

__all__ = ["PSPTask", "PSP_SIZE"]

#: Side of pSp's encoder input, targets and pooled outputs.
PSP_SIZE = 256


class PSPTask(TrainingTask):
    """Networks, losses, one step and export of a pSp run (the :class:`training.task.TrainingTask` of
    ``python -m vidinv.training psp``).

    Args:
        cfg: the run's :class:`training.config.PSPTrainConfig`.
        files: resolved weight files.
        device: device of the run.

    Attributes:
        encoder: the trained :class:`vidinv.models.psp.GradualStyleEncoder` (on ``device``).
        G, latent_avg: the frozen generator and its (n_latent, 512) W+ average.
        image_size: 256 (images are loaded at pSp's resolution).
        real_per_step: ``batch_size``.
    """

    name = "psp"
    config_class = PSPTrainConfig
    default_generator = "stylegan2-ffhq-config-f.pt"  # g_ema and latent_avg

    encoder: GradualStyleEncoder

    @classmethod
    def weight_roles(cls, cfg: PSPTrainConfig) -> tuple[dict[str, str], dict[str, str]]:
        """Generator and LPIPS trunk (see the base class) and IR-SE50 (identity loss, or
        ``encoder.init_from_irse50: always``; optional with ``auto``)."""
        required, optional = super().weight_roles(cfg)
        if cfg.loss.use_id or cfg.encoder.init_from_irse50 == "always":
            required["irse50"] = cfg.weights.irse50
        elif cfg.encoder.init_from_irse50 == "auto":
            optional["irse50"] = cfg.weights.irse50
        return required, optional

    def __init__(self, cfg: PSPTrainConfig, files: WeightFiles, device: torch.device):
        self.cfg, self.device, self.files = cfg, device, files
        self.G, self.latent_avg = load_training_generator(files.generator, cfg.weights.latent_avg_samples,
                                                          cfg.run.seed, device)
        e = cfg.encoder
        self.encoder = build_psp_encoder(self.G.n_latent, self.G.style_dim, e.widths, e.blocks)
        irse = load_irse50(files.irse50) if files.irse50 is not None else None
        if e.init_from_irse50 != "never":
            if not is_official_arch(e.widths, e.blocks):
                if e.init_from_irse50 == "always":
                    raise ConfigError("encoder.init_from_irse50: 'always' needs the official widths/blocks")
                log.info("encoder not initialised from IR-SE50 (non-official widths/blocks)")
            elif irse is not None:
                init_psp_encoder_from_irse50(self.encoder, irse)
                log.info("pSp encoder initialised from %s", files.irse50)
            else:
                log.warning("model_ir_se50.pth not found: the pSp encoder starts from random weights "
                            "(pSp initialises it from IR-SE50)")
        self.encoder.to(device).train()
        lo = cfg.loss
        self.lpips = build_lpips(files.lpips_alexnet, random_backbone=cfg.weights.lpips_random_backbone,
                                 device=device) if lo.use_lpips else None
        self.id_loss: IRSEIdentityLoss | None = None
        if lo.use_id:
            assert irse is not None  # weight_roles makes irse50 a required file with loss.use_id
            self.id_loss = IRSEIdentityLoss(irse).to(device)
        self.image_size = PSP_SIZE
        self.real_per_step = int(cfg.batch_size)

    def dataset_options(self) -> dict:
        """Keyword arguments of :class:`training.data.FaceImageDataset` for this task."""
        sr = self.cfg.sr_factors if self.cfg.objective == "super_resolution" else None
        return {"hflip": self.cfg.data.hflip, "sr_factors": sr}

    def compute(self, model: nn.Module, real: dict | None, step: int, g: torch.Generator) -> StepOutput:
        """Losses of one step.

        Args:
            model: the encoder, possibly wrapped in DistributedDataParallel.
            real: a batch with ``"input"`` and ``"target"`` (B, 3, 256, 256) in [-1, 1].
            step: 0-based step (unused by pSp's losses).
            g: this step's CPU generator (noise draws).

        Returns:
            ``(total, scalars, visuals)``: loss, dict of 0-dim tensors (enabled terms unweighted and
            ``total``), image columns ``[input, target, output]``.
        """
        G, dev, lo = self.G, self.device, self.cfg.loss
        assert real is not None  # every pSp step is a real batch (real_per_step = batch_size > 0)
        x = real["input"].to(dev, non_blocking=True).float()
        y = real["target"].to(dev, non_blocking=True).float()
        codes = model(x)
        w = codes + self.latent_avg.to(codes.dtype)
        noise: list[torch.Tensor] | str
        if self.cfg.noise == "random":
            noise = [torch.randn(x.shape[0], 1, *getattr(G.noises, f"noise_{i}").shape[-2:], generator=g).to(dev)
                     for i in range(G.num_layers)]
        else:
            noise = "const"
        y_hat = G.synthesis(w, noise=noise).float()
        y_hat = F.adaptive_avg_pool2d(y_hat, (PSP_SIZE, PSP_SIZE))
        terms: dict[str, torch.Tensor] = {"l2": mse_loss(y_hat, y)}
        total = lo.l2 * terms["l2"]
        if self.lpips is not None:
            terms["lpips"] = self.lpips(y_hat, y).mean()
            total = total + lo.lpips * terms["lpips"]
        if self.id_loss is not None:
            with torch.no_grad():
                y_emb = self.id_loss.embedding(y)
            terms["id"] = self.id_loss(y_hat, y_emb)
            total = total + lo.id * terms["id"]
        if lo.w_norm > 0:
            terms["w_norm"] = w_norm_loss(w.float(), self.latent_avg)
            total = total + lo.w_norm * terms["w_norm"]
        terms["total"] = total
        return total, terms, [x.detach(), y.detach(), y_hat.detach()]

    def export(self, folder: str | os.PathLike) -> Path:
        """Write ``<folder>/<run name>_psp_<task>.pt`` in pSp's layout, with a vidinv record (architecture, the
        user's licence label, this run's config; see :mod:`training.export`)."""
        cfg = self.cfg
        name = psp_export_name(run_name(cfg.run.out_dir), cfg.objective)
        init = self.files.irse50 if cfg.encoder.init_from_irse50 != "never" and is_official_arch(
            cfg.encoder.widths, cfg.encoder.blocks) and self.files.irse50 is not None else None
        trained_from = {"generator": Path(self.files.generator).name, "initialised_from": init and Path(init).name,
                        "real_dir": cfg.data.real_dir, "videos": list(cfg.data.videos)}
        sr = cfg.sr_factors if cfg.objective == "super_resolution" else None
        loss = {"l2": cfg.loss.l2, "lpips": cfg.loss.lpips if cfg.loss.use_lpips else 0.0,
                "id": cfg.loss.id if cfg.loss.use_id else 0.0, "w_norm": cfg.loss.w_norm}
        return export_psp(self.encoder, self.G, self.latent_avg, Path(folder) / name, task=cfg.objective, loss=loss,
                          resize_factors=sr, config=config_to_dict(cfg), trained_from=trained_from)
