"""pSp super-resolution degradation: random bicubic downsampling, then back up to the input size.

pSp's ``SuperResTransforms`` builds the encoder input from a 256x256 aligned face as
``Resize(256) -> BilinearResize(factors) -> Resize(256) -> ToTensor -> Normalize(0.5, 0.5)``, where
``BilinearResize`` (``datasets/augmentations.py``) draws one factor per image and applies
``BicubicDownSample(factor)``: a separable cubic-convolution kernel (Keys, a = -0.5) of
``4 * factor`` taps, tap ``i`` at ``(i - floor(2 * factor) + 0.5) / factor``, normalised to sum 1,
reflect padding of ``4 * factor - factor`` pixels split ``floor/ceil`` (top/left first) and stride
``factor``; the result is clamped to [0, 1] and converted to an 8-bit PIL image (``ToPILImage``:
``mul(255).byte()``, i.e. truncation). The target is the full-resolution image.

:func:`degrade` reproduces this on tensors (the filter is
:func:`vidinv.models.sr_degradation.bicubic_downsample`, shared with inference's
:func:`~vidinv.models.sr_degradation.simulate_low_resolution`); the final resize back to the input size is bilinear
(``align_corners=False``), PIL's bilinear in pSp (identical away from the border, where PIL
renormalises its triangle filter instead of clamping the source coordinate).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidinv.models.sr_degradation import PSP_SR_FACTORS, bicubic_downsample, bicubic_kernel

__all__ = ["bicubic_kernel", "bicubic_downsample", "degrade", "PSP_SR_FACTORS"]


def degrade(x01: torch.Tensor, factor: int, out_size: int | None = None, quantize: bool = True) -> torch.Tensor:
    """pSp super-resolution input: bicubic downsample by ``factor``, clamp, 8-bit truncate, resize back.

    Args:
        x01: (B, 3, H, W) or (3, H, W) float images in [0, 1] (the target, before normalisation).
        factor: downsampling factor (one of pSp's 1, 2, 4, 8, 16, 32).
        out_size: side of the result (default H, the input size: 256 in pSp).
        quantize: truncate to 8 bits as pSp's ``ToPILImage`` round trip does.

    Returns:
        Float images in [0, 1], shape of ``x01`` (or ``out_size`` square).
    """
    squeeze = x01.ndim == 3
    x = x01.unsqueeze(0) if squeeze else x01
    size = out_size or x.shape[-1]
    lr = bicubic_downsample(x, int(factor)).clamp(0.0, 1.0)
    if quantize:
        lr = torch.floor(lr * 255.0) / 255.0
    out = F.interpolate(lr, size=(size, size), mode="bilinear", align_corners=False)
    out = out.clamp(0.0, 1.0)
    if quantize:
        out = torch.round(out * 255.0) / 255.0  # the PIL resize result is 8-bit again (rounded)
    return out[0] if squeeze else out
