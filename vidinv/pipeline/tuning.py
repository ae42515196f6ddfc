"""Per-video generator tuning of Stitch it in Time (Tzaban et al., SIGGRAPH Asia 2022): pivotal tuning (PTI)
and stitching tuning, for ``vidinv edit|invert --tune pti|stitch``.

Source: https://github.com/rotemtzaban/STIT (MIT licence). Its values, and where they are:

================================  ===========  =========================================================
value                             STIT         file (name in STIT)
================================  ===========  =========================================================
PTI learning rate / Adam beta1    3e-5 / 0.9   configs/hyperparameters.py (``pti_learning_rate``,
                                               ``pti_adam_beta1``; beta2 0.999: training/coaches/coach.py)
PTI loss: L2 / LPIPS weights      1 / 1        configs/hyperparameters.py (``pt_l2_lambda``,
                                               ``pt_lpips_lambda``); LPIPS ``lpips_type = 'alex'``
PTI steps                         50           configs/hyperparameters.py (``max_pti_steps``)
locality regulariser              on           ``use_locality_regularization = True``
  alpha, L2 / LPIPS weights       30, 0.1/0.1  ``regularizer_alpha``, ``regularizer_l2_lambda``,
                                               ``regularizer_lpips_lambda``
  samples, interval               1, 1         ``latent_ball_num_of_samples``, ``locality_regularization_interval``
  sample truncation               0.5          criteria/localitly_regularizer.py (``truncation_psi=0.5``)
LR ramp                           off          ``use_lr_ramp = False``
stitching learning rate           3e-4         configs/hyperparameters.py (``stitching_tuning_lr``)
stitching steps per frame         100          edit_video_stitching_tuning.py (``--num_steps``)
content loss weight               0.01         edit_video_stitching_tuning.py (``--content_loss_lambda``)
outer mask dilation               50 px        edit_video_stitching_tuning.py (``--outer_mask_dilation``,
                                               pixels of the 1024 crop)
border-loss threshold             0 (off)      edit_video_stitching_tuning.py (``--border_loss_threshold``;
                                               its README uses 0.005, or 0.002 for hard backgrounds)
================================  ===========  =========================================================

(STIT's ``train.py`` command line overrides some of these with its own defaults: ``--num_pti_steps 300``,
``--l2_lambda 10``, ``--no_locality_reg``; vidinv follows ``configs/hyperparameters.py``, as issue 12 asks.)

**PTI** (:func:`run_pti`, STIT ``training/coaches/coach.py::Coach.train``): the pivots are the encoder's
per-frame codes (w for pSp; w and F for Feature-Style, the image being ``G(w, F injected at K)``). One
*step* is one pass over every face of the clip in frame order, each face one Adam update (batch 1, as
STIT): loss = ``1 * MSE + 1 * LPIPS`` between ``G(pivot)`` and the aligned crop, plus the locality
regulariser on every update: one z ~ N(0, I) mapped by the *original* generator, truncated at 0.5 towards
the average latent, gives w_s; ``w_r = pivot_w + 30 (w_s - pivot_w) / ||w_s - pivot_w||`` (norm over the
whole W+ code); ``0.1 * MSE + 0.1 * LPIPS`` between the tuned and the original generator's ``G(w_r)`` with
zero noise (STIT ``noise_mode='none'``). ``--tune-steps N`` = STIT's ``max_pti_steps``; total updates =
N x faces. Every generator parameter is tuned; the noise maps are buffers and stay fixed.

*Deviation, for bounded memory*: the losses are computed at :data:`TUNE_SIZE` (256) pixels, the
generator output area-resampled to 256 (STIT compares at 1024). The crops kept between the two passes of
a run are the 256 ones (196 KB a face: about 200 MB for 1000 faces), and LPIPS is evaluated at its usual
resolution. The regulariser's images are compared at 256 too.

**Stitching tuning** (:func:`stitch_face`, STIT ``edit_video_stitching_tuning.py::optimize_border``): per
face and frame, a copy of the (PTI-tuned) generator is tuned with Adam (lr 3e-4, default betas) for
``stitch_steps`` (100) updates on the *edited* code (w', F'): ``masked_L2(G(w'), crop, border) + 0.01 *
masked_L2(G(w'), untuned edit, content)``, masked L2 = sum of squared differences over the mask and the
3 channels divided by the mask's pixel sum, images in [-1, 1]; when the border term falls below
``border_loss_threshold`` the loop stops (checked before the update, as STIT). The masks (STIT
``create_masks``; at the generator's size S, ``D = round(outer_mask_dilation * S / 1024)`` pixels):
``full = dilate(face, square of side 2D + 1)``; ``border = (full - face) | (face within D of the crop's
edge)``; ``content = face - border``. The face region is the landmark hull (or the BiSeNet parsing mask
when the run has the parser, STIT's choice), from the *original* crop. The edited face is pasted with a
blend mask inside ``full``: the face region dilated by ``D - feather`` and feathered over ``feather``
(:class:`vidinv.pipeline.faces.BlendSettings`), so the whole fade lies in the band where the tuned output
matches the original frame (STIT pastes ``full`` itself). The seam this removes is measured by
:mod:`vidinv.metrics.seam`.

Order (STIT's README: ``train.py`` then ``edit_video_stitching_tuning.py`` with the run's tuned
generator): ``--tune stitch`` runs PTI first, then stitching tuning of every face of the render pass.

Checkpoint of the tuned generator (:func:`save_tuned_generator`): ``{"g_ema": state_dict, "latent_avg":
(n_latent, 512), "vidinv_config": vidinv record}`` (rosinality's layout plus vidinv's record,
:func:`vidinv.io.checkpoints.vidinv_record` with network :data:`TUNED_NETWORK`: the architecture, the
generator file it was tuned from and its sha256, the tuning settings and cost), written atomically
(:func:`vidinv.io.outputs.atomic_save`).
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F_nn

from vidinv.edit.frame import apply_edit
from vidinv.face import align, blend
from vidinv.io.checkpoints import CheckpointError, load_strict, read_checkpoint, read_vidinv_record, vidinv_record
from vidinv.io.outputs import atomic_save
from vidinv.io.video import Frame
from vidinv.metrics.image import LPIPSMetric
from vidinv.pipeline.faces import BlendSettings, FaceCode, Item, output_size

log = logging.getLogger(__name__)

__all__ = ["TUNE_MODES", "TUNE_SIZE", "TUNED_GENERATOR_FILE", "TUNED_NETWORK", "TuneOptions", "TuneSample",
           "TuneResult", "PTI_LR", "PTI_BETA1", "PTI_STEPS", "PT_L2_LAMBDA", "PT_LPIPS_LAMBDA", "REG_ALPHA",
           "REG_L2_LAMBDA", "REG_LPIPS_LAMBDA", "REG_SAMPLES", "REG_TRUNCATION", "STITCH_LR", "STITCH_STEPS",
           "CONTENT_LOSS_LAMBDA", "OUTER_MASK_DILATION", "tuning_lpips", "collect_stage", "samples_stage",
           "run_pti", "stitch_masks", "stitch_face", "stitch_render_stage", "save_tuned_generator",
           "load_tuned_generator", "tuned_record", "check_tune_options"]

#: ``--tune`` values.
TUNE_MODES = ("none", "pti", "stitch")
#: Side of the crops kept for PTI and of the images its losses compare (see the module doc).
TUNE_SIZE = 256
#: File name of the tuned generator in an inversion export.
TUNED_GENERATOR_FILE = "tuned_generator.pt"
#: ``network`` of the vidinv record of a tuned generator.
TUNED_NETWORK = "stylegan2_tuned"

PTI_LR = 3e-5
PTI_BETA1 = 0.9
PTI_STEPS = 50
PT_L2_LAMBDA = 1.0
PT_LPIPS_LAMBDA = 1.0
REG_ALPHA = 30.0
REG_L2_LAMBDA = 0.1
REG_LPIPS_LAMBDA = 0.1
REG_SAMPLES = 1
REG_TRUNCATION = 0.5
STITCH_LR = 3e-4
STITCH_STEPS = 100
CONTENT_LOSS_LAMBDA = 0.01
OUTER_MASK_DILATION = 50


@dataclass
class TuneOptions:
    """Settings of the tuning of one run (STIT's values as defaults, see the module doc).

    Attributes:
        mode: ``"none"``, ``"pti"`` or ``"stitch"`` (PTI then stitching tuning).
        steps: PTI passes over the clip (STIT ``max_pti_steps``).
        stitch_steps: stitching-tuning updates per face (STIT ``--num_steps``).
        outer_mask_dilation: width of the stitching band, pixels of a 1024 crop (STIT
            ``--outer_mask_dilation``; scaled to the generator's size).
        border_loss_threshold: stop a face's stitching tuning once its border loss is below this (0: never).
        size: side of the PTI loss images (:data:`TUNE_SIZE`).
        seed: seed of the regulariser's z samples.
    """

    mode: str = "none"
    steps: int = PTI_STEPS
    stitch_steps: int = STITCH_STEPS
    outer_mask_dilation: int = OUTER_MASK_DILATION
    border_loss_threshold: float = 0.0
    size: int = TUNE_SIZE
    seed: int = 0


def check_tune_options(opts: TuneOptions) -> None:
    """Refuse impossible tuning settings.

    Raises:
        ValueError: an unknown mode, steps < 1, a negative dilation or threshold (naming the option).
    """
    if opts.mode not in TUNE_MODES:
        raise ValueError(f"--tune must be one of {', '.join(TUNE_MODES)}, got {opts.mode!r}")
    if int(opts.steps) < 1:
        raise ValueError(f"--tune-steps must be >= 1, got {opts.steps}")
    if int(opts.stitch_steps) < 1:
        raise ValueError(f"--stitch-steps must be >= 1, got {opts.stitch_steps}")
    if int(opts.outer_mask_dilation) < 1:
        raise ValueError(f"--outer-mask-dilation must be >= 1 (pixels at 1024), got {opts.outer_mask_dilation}")
    t = float(opts.border_loss_threshold)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"--border-loss-threshold must be a finite number >= 0, got {opts.border_loss_threshold}")


@dataclass
class TuneSample:
    """One face of the clip kept between the passes of a tuned run.

    Attributes:
        frame_index, track_id: where it is.
        quad: (4, 2) float64; landmarks: (68, 2) float64 (frame pixels).
        w: (n_latent, 512) float32 pivot (CPU numpy); F: (C, H, W) float16 feature pivot or None.
        crop: (size, size, 3) uint8 RGB FFHQ-aligned crop of the frame (the PTI target).
    """

    frame_index: int
    track_id: int
    quad: np.ndarray
    landmarks: np.ndarray
    w: np.ndarray
    F: np.ndarray | None
    crop: np.ndarray


@dataclass
class TuneResult:
    """What a PTI run did.

    Attributes:
        mode: the tuning mode; steps: passes; updates: Adam updates; faces: faces tuned on.
        seconds: wall time of the tuning; seconds_per_update: ``seconds / updates``.
        losses: mean total loss of each pass (``steps`` values, the regulariser included);
        recon_losses: mean ``MSE + LPIPS`` of each pass (without the regulariser).
    """

    mode: str
    steps: int = 0
    updates: int = 0
    faces: int = 0
    seconds: float = 0.0
    seconds_per_update: float = 0.0
    losses: list[float] = field(default_factory=list)
    recon_losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for the export's manifest and the checkpoint record)."""
        return {"mode": self.mode, "steps": self.steps, "updates": self.updates, "faces": self.faces,
                "seconds": round(self.seconds, 3), "seconds_per_update": round(self.seconds_per_update, 4),
                "first_loss": self.losses[0] if self.losses else None,
                "last_loss": self.losses[-1] if self.losses else None}


def tuning_lpips(weights_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 backbone_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """The LPIPS-AlexNet network of the tuning losses (STIT ``lpips_type = 'alex'``): ``lpips.LPIPS`` v0.1 with
    torchvision's ImageNet AlexNet trunk read from ``alexnet-owt-7be5be79.pth``
    (:class:`vidinv.metrics.image.LPIPSMetric`, never downloaded), frozen, differentiable in its inputs.

    Call ``net(x, y)`` with (B, 3, H, W) images in [-1, 1] -> (B, 1, 1, 1) distances.

    Raises:
        vidinv.metrics.image.LPIPSUnavailable: the backbone file is not present (names where to put it).
    """
    return LPIPSMetric(net="alex", weights_dir=weights_dir, backbone_path=backbone_path, device=device).model


# ------------------------------------------------------------------------------------------------ stages

def collect_stage(samples: list[TuneSample], size: int = TUNE_SIZE):
    """Stage (pass 1 of a tuned run, after the encode stage or an export's records): every face with a code is
    appended to ``samples`` as a :class:`TuneSample` with its FFHQ-aligned ``size`` crop
    (:func:`vidinv.face.align.align_crop`); items pass through unchanged."""
    def run(items: Iterable[Item]) -> Iterator[Item]:
        for it in items:
            for f in it.faces:
                if f.w is None:
                    continue
                samples.append(TuneSample(
                    int(it.frame.index), int(f.track_id), np.asarray(f.quad, np.float64),
                    np.asarray(f.landmarks, np.float64), f.w.detach().float().cpu().numpy(),
                    f.F.detach().cpu().to(torch.float16).numpy() if f.F is not None else None,
                    align.align_crop(it.frame.image, f.quad, size)))
            yield it
    return run


def samples_stage(samples: Sequence[TuneSample], device: torch.device):
    """Stage (pass 2 of a tuned run): decoded frames -> items whose faces are the kept samples of that frame
    (codes on ``device``; no detection or encoding). ``samples`` must be in frame order."""
    def run(frames: Iterable[Frame]) -> Iterator[Item]:
        i = 0
        for fr in frames:
            while i < len(samples) and samples[i].frame_index < fr.index:
                i += 1
            faces = []
            while i < len(samples) and samples[i].frame_index == fr.index:
                s = samples[i]
                faces.append(FaceCode(s.track_id, s.quad, s.landmarks, w=torch.from_numpy(s.w).to(device),
                                      F=torch.from_numpy(s.F.astype(np.float32)).to(device) if s.F is not None
                                      else None))
                i += 1
            yield Item(fr, faces)
    return run


# ------------------------------------------------------------------------------------------------ PTI

def _to_tensor(crop: np.ndarray, device) -> torch.Tensor:
    """(S, S, 3) uint8 -> (1, 3, S, S) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crop)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F_nn.interpolate(x, size=(size, size), mode="area")


def _zero_noise(G) -> list[torch.Tensor]:
    """STIT's ``noise_mode='none'``: every noise map zero."""
    return [torch.zeros_like(b) for b in G.noise_buffers("const")]


def run_pti(G, latent_avg: torch.Tensor, feature_index: int | None, samples: Sequence[TuneSample],
            lpips_net: torch.nn.Module, opts: TuneOptions | None = None, *,
            progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Pivotal tuning of ``G`` **in place** on the clip's faces (module doc; STIT ``Coach.train``).

    Args:
        G: the :class:`vidinv.models.stylegan2.Generator` to tune (float32; its device is used).
        latent_avg: (n_latent, 512) average W+ (the regulariser's truncation centre).
        feature_index: K when the samples carry F (Feature-Style), else None.
        samples: the faces, pivots and crops (:func:`collect_stage`).
        lpips_net: :func:`tuning_lpips`.
        opts: steps, size, seed (STIT's values by default).
        progress: ``progress(updates_done, updates_total)`` after each update.

    Returns:
        :class:`TuneResult` (per-pass mean losses). ``G`` is left in eval mode without parameter gradients.

    Raises:
        ValueError: no samples; F present without ``feature_index``.
    """
    opts = opts or TuneOptions(mode="pti")
    if not samples:
        raise ValueError("pivotal tuning needs at least one face")
    dev = next(G.parameters()).device
    original = copy.deepcopy(G).eval().requires_grad_(False)
    G.requires_grad_(True)
    optimizer = torch.optim.Adam(G.parameters(), lr=PTI_LR, betas=(PTI_BETA1, 0.999))
    gen = torch.Generator().manual_seed(int(opts.seed))
    zero_noise = _zero_noise(G)
    avg = latent_avg.to(dev, torch.float32)
    size = int(opts.size)
    result = TuneResult(mode=opts.mode if opts.mode != "none" else "pti", faces=len(samples))
    total = int(opts.steps) * len(samples)
    t0 = time.perf_counter()
    try:
        for _ in range(int(opts.steps)):
            tot = rec = 0.0
            for s in samples:
                w = torch.from_numpy(s.w).to(dev, torch.float32)[None]
                feat = None
                if s.F is not None:
                    if feature_index is None:
                        raise ValueError("the samples carry a feature code F but no feature_index was given")
                    feat = torch.from_numpy(s.F.astype(np.float32)).to(dev)[None]
                target = _to_tensor(s.crop, dev)
                if target.shape[-1] != size:
                    target = _resize(target, size)
                img = G.synthesis(w, noise="const", feature=feat, k=feature_index) if feat is not None \
                    else G.synthesis(w, noise="const")
                img = _resize(img, size)
                loss_rec = PT_L2_LAMBDA * F_nn.mse_loss(img, target) + \
                    PT_LPIPS_LAMBDA * lpips_net(img, target).mean()
                loss = loss_rec + _locality_loss(G, original, w, avg, lpips_net, gen, zero_noise, size)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                tot += float(loss.detach())
                rec += float(loss_rec.detach())
                result.updates += 1
                if progress is not None:
                    progress(result.updates, total)
            result.steps += 1
            result.losses.append(tot / len(samples))
            result.recon_losses.append(rec / len(samples))
    finally:
        G.requires_grad_(False).eval()
        optimizer.zero_grad(set_to_none=True)
    result.seconds = time.perf_counter() - t0
    result.seconds_per_update = result.seconds / max(1, result.updates)
    return result


def _locality_loss(G, original, w_pivot: torch.Tensor, avg: torch.Tensor, lpips_net, gen: torch.Generator,
                   zero_noise, size: int) -> torch.Tensor:
    """STIT's locality regulariser (criteria/localitly_regularizer.py, ``ball_holder_loss_lazy``), one sample."""
    loss = w_pivot.new_zeros(())
    for _ in range(REG_SAMPLES):
        z = torch.randn(1, G.style_dim, generator=gen).to(w_pivot.device)
        with torch.no_grad():
            ws = original.mapping(z).float()[:, None, :]  # (1, 1, 512)
            ws = avg[None] + REG_TRUNCATION * (ws - avg[None])  # truncation 0.5 -> (1, n_latent, 512)
            d = ws - w_pivot
            w_r = w_pivot + REG_ALPHA * d / d.norm(p=2)
            old = _resize(original.synthesis(w_r, noise=zero_noise), size)
        new = _resize(G.synthesis(w_r, noise=zero_noise), size)
        loss = loss + REG_L2_LAMBDA * F_nn.mse_loss(old, new) + REG_LPIPS_LAMBDA * lpips_net(old, new).mean()
    return loss / REG_SAMPLES


# ------------------------------------------------------------------------------------------------ stitching

def stitch_masks(face: np.ndarray, dilation_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STIT's ``create_masks`` (inner dilation 0, ``whole_image_border`` off) at the crop's size.

    Args:
        face: (S, S) bool face region in the crop.
        dilation_px: D, the outer dilation in pixels of this crop.

    Returns:
        ``(content, border, full)`` (S, S) float32 masks in {0, 1}: ``full = dilate(face, (2D+1)^2 square)``,
        ``border = (full - face) | (face within D of the crop edge)``, ``content = face - border``.
    """
    import cv2

    m = np.asarray(face).astype(np.uint8)
    d = max(0, int(dilation_px))
    full = cv2.dilate(m, np.ones((2 * d + 1, 2 * d + 1), np.uint8)) if d > 0 else m.copy()
    edge = np.zeros_like(m)
    if d > 0:
        edge[:d] = edge[-d:] = 1
        edge[:, :d] = edge[:, -d:] = 1
    border = np.maximum(edge & m, full - m).clip(0, 1)
    content = (m.astype(np.int16) - border).clip(0, 1)
    return content.astype(np.float32), border.astype(np.float32), full.astype(np.float32)


def _masked_l2(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """STIT ``masked_l2`` (L2): ``sum(((x - y) * mask)^2) / sum(mask)`` (channels summed)."""
    return (((x - y) * mask) ** 2).sum() / mask.sum().clamp_min(1.0)


def stitch_face(G, w_edit: torch.Tensor, F_edit: torch.Tensor | None, feature_index: int | None,
                original: torch.Tensor, edited: torch.Tensor, border: torch.Tensor, content: torch.Tensor,
                steps: int = STITCH_STEPS, threshold: float = 0.0) -> tuple[torch.Tensor, list[float]]:
    """Stitching tuning of one face (STIT ``optimize_border`` with ``optimize_generator=True``, L2): a copy of
    ``G`` is tuned; ``G`` itself is not changed.

    Args:
        G: the (PTI-tuned) generator.
        w_edit: (1, n_latent, 512) edited code; F_edit: (1, C, H, W) edited feature code or None.
        feature_index: K with F_edit.
        original: (1, 3, S, S) the original aligned crop in [-1, 1] (S = generator size).
        edited: (1, 3, S, S) the un-tuned edit ``G(w', F')`` in [-1, 1].
        border, content: (1, 1, S, S) float masks (:func:`stitch_masks`).
        steps: updates (STIT ``--num_steps``); threshold: STIT ``--border_loss_threshold``.

    Returns:
        ``(image (1, 3, S, S) detached, border losses of the updates)``.
    """
    Gc = copy.deepcopy(G).float().requires_grad_(True)
    optimizer = torch.optim.Adam(Gc.parameters(), lr=STITCH_LR)
    kw: dict[str, Any] = {"feature": F_edit, "k": feature_index} if F_edit is not None else {}
    losses: list[float] = []
    for _ in range(int(steps)):
        img = Gc.synthesis(w_edit, noise="const", **kw)
        b = _masked_l2(img, original, border)
        loss = b + CONTENT_LOSS_LAMBDA * _masked_l2(img, edited, content)
        losses.append(float(b.detach()))
        if losses[-1] < threshold:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = Gc.synthesis(w_edit, noise="const", **kw).detach()
    del Gc, optimizer
    return out, losses


def stitch_render_stage(bundle, edit, opts: TuneOptions, *, noise: str = "const",
                        settings: BlendSettings | None = None, timings: dict | None = None, scale: int = 1,
                        stats: dict | None = None):
    """Stage replacing :func:`vidinv.pipeline.faces.render_stage` under ``--tune stitch``: every face is
    edited with the (PTI-tuned) generator, then stitching-tuned (:func:`stitch_face`) against its original
    crop, and carries the tuned image and its blend mask (module doc: the face region dilated by ``D -
    feather`` and feathered, all inside STIT's ``full`` mask). ``stats`` (optional) receives ``faces``,
    ``seconds`` and ``border_first`` / ``border_last`` sums."""
    settings = settings or BlendSettings()
    inverter = bundle.inverter
    G = inverter.generator
    dev = inverter.runtime.torch_device
    S = int(G.size)
    D = max(1, round(int(opts.outer_mask_dilation) * S / 1024))
    st = stats if stats is not None else {}

    def run(items: Iterable[Item]) -> Iterator[Item]:
        for it in items:  # one face at a time (STIT: a generator copy per face)
            for f in it.faces:
                t0 = time.perf_counter()
                crop = align.align_crop(it.frame.image, f.quad, S)
                labels = None
                if bundle.parser is not None:
                    with torch.inference_mode():
                        x = torch.from_numpy(align.align_crop(it.frame.image, f.quad, 512)[None]).permute(
                            0, 3, 1, 2)
                        labels = bundle.parser.parse(x).cpu().numpy()[0]
                region = _face_region(f, S, labels)
                content, border, _ = stitch_masks(region, D)
                w = f.encoded_w()[None].to(dev, torch.float32)
                Fc = f.encoded_F()[None].to(dev, torch.float32) if inverter.feature_index is not None else None
                with torch.no_grad():
                    edited, w_e, F_e = apply_edit(G, w, Fc, edit, inverter.feature_index, noise=noise,
                                                  return_all=True)
                mt = [torch.from_numpy(m)[None, None].to(dev) for m in (border, content)]
                img, losses = stitch_face(G, w_e, F_e, inverter.feature_index, _to_tensor(crop, dev),
                                          edited.float(), mt[0], mt[1], steps=int(opts.stitch_steps),
                                          threshold=float(opts.border_loss_threshold))
                img = img.float()
                img = ((img.clamp(-1, 1) + 1) * 127.5).masked_fill_(~torch.isfinite(img), float("nan"))
                s_out = output_size(f.quad * scale, S)
                if s_out != S:
                    img = F_nn.interpolate(img, size=(s_out, s_out), mode="area")
                f.image = img[0].permute(1, 2, 0).contiguous().cpu().numpy()
                f.mask = stitched_blend_mask(region, D, settings, s_out)
                dt = time.perf_counter() - t0
                st["faces"] = st.get("faces", 0) + 1
                st["seconds"] = st.get("seconds", 0.0) + dt
                if losses:
                    st["border_first"] = st.get("border_first", 0.0) + losses[0]
                    st["border_last"] = st.get("border_last", 0.0) + losses[-1]
                if timings is not None:
                    timings["stitch"] = timings.get("stitch", 0.0) + dt
                    timings["generator_calls"] = timings.get("generator_calls", 0) + 1
            yield it
    return run


def _face_region(face: FaceCode, size: int, labels: np.ndarray | None) -> np.ndarray:
    """(size, size) bool face region in the crop: the parsing mask (labels at 512, resized) or the landmark hull."""
    import cv2

    if labels is not None:
        m = blend.mask_from_parsing(labels)
        if m.shape[0] != size:
            m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
        return m > 0.5
    mat = align.crop_matrix(face.quad, size)
    lm = np.c_[face.landmarks, np.ones(len(face.landmarks))] @ mat[:2].T
    return blend.mask_from_landmarks(lm, size) > 0


def stitched_blend_mask(region: np.ndarray, dilation_px: int, settings: BlendSettings, out_size: int) -> np.ndarray:
    """The blend mask of a stitching-tuned face: ``region`` (S, S) dilated by ``D - F`` and feathered over F
    (``F = settings.feather * S``, at most D), so that it is 0 beyond D of the face region, resized to
    ``out_size``. Returns (out_size, out_size) float32 in [0, 1]."""
    import cv2

    S = region.shape[0]
    fe = min(int(dilation_px), max(1, round(settings.feather * S)))
    m = blend.feather_mask(region.astype(np.float32), max(0, int(dilation_px) - fe), fe)
    if out_size != S:
        m = cv2.resize(m, (out_size, out_size), interpolation=cv2.INTER_AREA)
    return np.clip(m, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------ checkpoints

def tuned_record(G, *, base_name: str, base_sha256: str, result: TuneResult, opts: TuneOptions) -> dict:
    """The vidinv record of a tuned generator (:func:`vidinv.io.checkpoints.vidinv_record`, network
    :data:`TUNED_NETWORK`): the generator's architecture, the file it was tuned from (name, sha256), the
    tuning settings and cost."""
    arch = {k: getattr(G, k) for k in ("size", "style_dim", "n_mlp", "channel_multiplier", "max_channels", "lr_mlp")
            if hasattr(G, k)}
    licence = (f"Tuned by the user with vidinv from {base_name}: the terms of {base_name} apply (see `vidinv "
               "weights list --long`).")
    return vidinv_record(TUNED_NETWORK, arch, licence=licence, name=TUNED_GENERATOR_FILE,
                         trained_from={"generator": base_name, "sha256": base_sha256},
                         training_config={"tune": result.as_dict(),
                                          "options": {"steps": opts.steps, "size": opts.size, "seed": opts.seed,
                                                      "lr": PTI_LR, "beta1": PTI_BETA1}})


def save_tuned_generator(G, latent_avg: torch.Tensor, path: str | os.PathLike, record: dict) -> Path:
    """Write the tuned generator atomically (:func:`vidinv.io.outputs.atomic_save`: a temporary file in the
    same folder renamed over ``path`` once complete; an exception or a kill leaves no partial file).

    Format: ``{"g_ema": G.state_dict() (CPU tensors), "latent_avg": (n_latent, 512), "vidinv_config":
    record}``, readable with ``torch.load(weights_only=True)`` and by :func:`load_tuned_generator`.

    Returns:
        ``Path(path)``.
    """
    sd = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
    obj = {"g_ema": sd, "latent_avg": latent_avg.detach().cpu().float(), "vidinv_config": record}
    return atomic_save(obj, path)


def load_tuned_generator(G, path: str | os.PathLike, *, base_sha256: str | None = None) -> dict:
    """Load a tuned generator written by :func:`save_tuned_generator` into ``G`` (in place, strictly).

    Args:
        G: a generator of the same architecture (the run's, loaded from the base file).
        path: the tuned file.
        base_sha256: the sha256 of the generator file the run loaded; the file must have been tuned from it.

    Returns:
        The file's vidinv record.

    Raises:
        vidinv.io.checkpoints.CheckpointError: unreadable, not a tuned generator, another architecture or
            another base generator; CheckpointMismatchError: keys / shapes.
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        raise CheckpointError(f"{path}: not a tuned generator written by vidinv (no 'g_ema')")
    rec = read_vidinv_record(ckpt.get("vidinv_config"), path, TUNED_NETWORK)
    if rec is None:
        raise CheckpointError(f"{path}: no vidinv record: not a tuned generator written by vidinv")
    for k, v in rec["architecture"].items():
        if hasattr(G, k) and getattr(G, k) != v:
            raise CheckpointError(f"{path}: tuned generator has {k} {v}, the loaded generator {getattr(G, k)}")
    base = (rec.get("trained_from") or {}).get("sha256")
    if base_sha256 is not None and base != base_sha256:
        raise CheckpointError(f"{path}: tuned from a generator with sha256 {base}, this run loaded {base_sha256}")
    dev = next(G.parameters()).device
    load_strict(G, {k: v.to(dev) for k, v in ckpt["g_ema"].items()}, path, "tuned StyleGAN2 generator")
    G.eval()
    return rec


# ------------------------------------------------------------------------------------------------ jobs

def tune_options(opts: Any) -> TuneOptions:
    """The :class:`TuneOptions` of a job's options (``tune``, ``tune_steps`` and, for ``vidinv edit``,
    ``stitch_steps``, ``outer_mask_dilation``, ``border_loss_threshold``; missing fields take STIT's values)."""
    return TuneOptions(mode=str(getattr(opts, "tune", "none")), steps=int(getattr(opts, "tune_steps", PTI_STEPS)),
                       stitch_steps=int(getattr(opts, "stitch_steps", STITCH_STEPS)),
                       outer_mask_dilation=int(getattr(opts, "outer_mask_dilation", OUTER_MASK_DILATION)),
                       border_loss_threshold=float(getattr(opts, "border_loss_threshold", 0.0)))


def collect_samples(job, frames: range, front: Sequence[tuple[str, Callable]], size: int = TUNE_SIZE,
                    progress: Callable[[int, int | None], None] | None = None) -> list[TuneSample]:
    """Pass 1 of a tuned run: decode ``frames`` of the job's video through the ``front`` stages (front-end and
    encoder, or an export's records) and keep every face as a :class:`TuneSample` (:func:`collect_stage`).

    Memory: per face a ``size`` crop (196 KB at 256), w (36 KB) and F as float16 (256 KB for Feature-Style
    at 1024); frames are not kept.
    """
    samples: list[TuneSample] = []
    video = job.open_video(frames)
    try:
        for _ in job.stream(video, [*front, ("collect", collect_stage(samples, size))], total=len(frames),
                            progress=progress):
            pass
    finally:
        video.close()
    return samples


def tune_job_generator(job, samples: Sequence[TuneSample], opts: TuneOptions,
                       weights_dir: str | os.PathLike | None = None,
                       progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """PTI of the job's generator (``job.inverter.generator``, in place) on ``samples`` with LPIPS-AlexNet
    (:func:`tuning_lpips`, from ``weights_dir`` or the cache) on the job's device; logs the cost.

    Raises:
        vidinv.metrics.image.LPIPSUnavailable: no AlexNet weights; ValueError: no face to tune on.
    """
    if not samples:
        raise ValueError("--tune: no face was found in the video, nothing to tune on")
    inv = job.inverter
    net = tuning_lpips(weights_dir, device=inv.runtime.torch_device)
    res = run_pti(inv.generator, inv.latent_avg, inv.feature_index, samples, net, opts, progress=progress)
    log.info("pivotal tuning: %d pass(es) over %d face(s), %d updates in %.1f s (%.2f s/update)", res.steps,
             res.faces, res.updates, res.seconds, res.seconds_per_update)
    return res
