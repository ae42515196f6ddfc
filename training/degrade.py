"""pSp super-resolution degradation: random bicubic downsampling, then back up to the input size.

pSp's ``SuperResTransforms`` builds the encoder input from a 256x256 aligned face as
``Resize(256) -> BilinearResize(factors) -> Resize(256) -> ToTensor -> Normalize(0.5, 0.5)``, where
``BilinearResize`` (``datasets/augmentations.py``) draws one factor per image and applies
``BicubicDownSample(factor)``: a separable cubic-convolution kernel (Keys, a = -0.5) of
``4 * factor`` taps, tap ``i`` at ``(i - floor(2 * factor) + 0.5) / factor``, normalised to sum 1,
reflect padding of ``4 * factor - factor`` pixels split ``floor/ceil`` (top/left first) and stride
``factor``; the result is clamped to [0, 1] and converted to an 8-bit PIL image (``ToPILImage``:
``mul(255).byte()``, i.e. truncation). The target is the full-resolution image.

:func:`degrade` reproduces this on tensors; the final resize back to the input size is bilinear
(``align_corners=False``), PIL's bilinear in pSp (identical away from the border, where PIL
renormalises its triangle filter instead of clamping the source coordinate).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = ["bicubic_kernel", "bicubic_downsample", "degrade", "PSP_SR_FACTORS"]

#: pSp's default ``--resize_factors`` (``SuperResTransforms``; README super-resolution command).
PSP_SR_FACTORS = (1, 2, 4, 8, 16, 32)


def _cubic(x: float, a: float = -0.5) -> float:
    ax = abs(x)
    if ax <= 1.0:
        return (a + 2.0) * ax ** 3 - (a + 3.0) * ax ** 2 + 1.0
    if ax < 2.0:
        return a * ax ** 3 - 5.0 * a * ax ** 2 + 8.0 * a * ax - 4.0 * a
    return 0.0


@functools.lru_cache(maxsize=16)
def _kernel_tuple(factor: int) -> tuple[float, ...]:
    size = 4 * factor
    taps = [_cubic((i - math.floor(size / 2) + 0.5) / factor) for i in range(size)]
    s = sum(taps)
    return tuple(t / s for t in taps)


def bicubic_kernel(factor: int) -> torch.Tensor:
    """The normalised 1-D kernel (4 * factor,) float32 of pSp's ``BicubicDownSample(factor)``.

    Raises:
        ValueError: factor < 1.
    """
    if factor < 1:
        raise ValueError(f"downsampling factor must be >= 1, got {factor}")
    return torch.tensor(_kernel_tuple(int(factor)), dtype=torch.float32)


def bicubic_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """pSp ``BicubicDownSample(factor)(x)``: separable bicubic filter with stride ``factor``.

    Args:
        x: (B, C, H, W) float images (any range; pSp uses [0, 1]).
        factor: integer downsampling factor >= 1 (1 still filters: a half-pixel cubic shift).

    Returns:
        (B, C, H // factor, W // factor) (for H divisible by factor), dtype/device of ``x``.
    """
    k = bicubic_kernel(factor).to(device=x.device, dtype=x.dtype)
    size = k.numel()
    c = x.shape[1]
    pad = max(size - factor, 0)
    top, bottom = pad // 2, pad - pad // 2
    kh = k.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = k.view(1, 1, 1, size).repeat(c, 1, 1, 1)
    x = F.pad(x, (0, 0, top, bottom), mode="reflect")
    x = F.conv2d(x, kh, stride=(factor, 1), groups=c)
    x = F.pad(x, (top, bottom, 0, 0), mode="reflect")
    return F.conv2d(x, kw, stride=(1, factor), groups=c)


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
