"""pSp super-resolution degradation: the low-resolution input pSp's super-resolution model was trained on.

Source: eladrich/pixel2style2pixel ``configs/transforms_config.py`` ``SuperResTransforms`` and
``datasets/augmentations.py``. The encoder input of the super-resolution task is built from a face image as
``Resize((256, 256)) -> BilinearResize(factors) -> Resize((256, 256)) -> ToTensor -> Normalize(0.5, 0.5)``
(torchvision transforms on PIL images: both ``Resize`` are PIL bilinear resizes). Despite its name,
``BilinearResize`` applies ``BicubicDownSample(factor)`` (one factor drawn per image from
``--resize_factors``): ``ToTensor`` (uint8 / 255, float32), a separable cubic-convolution filter (Keys,
a = -0.5) of ``4 * factor`` taps, tap ``i`` at ``(i - floor(2 * factor) + 0.5) / factor``, normalised to
sum 1, with reflect padding of ``4 * factor - factor`` pixels split floor/ceil (top/left first) and stride
``factor``; then ``clamp(0, 1)`` and ``ToPILImage`` (``mul(255).byte()``: truncation, not rounding).

:func:`bicubic_downsample` is that filter on tensors; :func:`simulate_low_resolution` is the whole
``transform_inference`` chain up to the 8-bit image (with one given factor), using PIL for the two
resizes as the reference does. Note that factor 1 is not the identity: it is a half-pixel cubic shift.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["bicubic_kernel", "bicubic_downsample", "simulate_low_resolution", "simulate_low_resolution_frame",
           "PSP_SR_FACTORS", "PSP_SR_SIZE"]

#: pSp's default ``--resize_factors`` (``SuperResTransforms``; README super-resolution command).
PSP_SR_FACTORS = (1, 2, 4, 8, 16, 32)
#: Side of the images the super-resolution transforms produce (and the encoder reads).
PSP_SR_SIZE = 256


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

    Raises:
        ValueError: factor < 1.
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


def simulate_low_resolution(image: np.ndarray, factor: int, size: int = PSP_SR_SIZE) -> np.ndarray:
    """pSp's super-resolution input for one face image and one factor (``SuperResTransforms``
    ``transform_inference`` before ``ToTensor``/``Normalize``).

    Steps: PIL bilinear resize to ``size`` x ``size``; ``ToTensor`` (/255, float32); ``BicubicDownSample(factor)``
    (:func:`bicubic_downsample`); ``clamp(0, 1)``; ``mul(255)`` truncated to uint8; PIL bilinear resize back
    to ``size`` x ``size``.

    Args:
        image: (H, W, 3) uint8 RGB face (e.g. an aligned crop, any size).
        factor: down-sampling factor >= 1 (pSp trains with 1, 2, 4, 8, 16, 32); ``size`` should be divisible
            by it (otherwise the low-resolution image is ``size // factor`` wide, as in the reference).
        size: side of the result (256 in pSp).

    Returns:
        (size, size, 3) uint8 RGB: the degraded face at the encoder's resolution.

    Raises:
        ValueError: not an (H, W, 3) uint8 array, factor < 1, or ``size // factor`` < 1.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an (H, W, 3) uint8 RGB array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    factor = int(factor)
    if factor < 1 or size // factor < 1:
        raise ValueError(f"bad down-sampling factor {factor} for size {size}")
    hr = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return np.asarray(Image.fromarray(_downsample8(hr, factor)).resize((size, size), Image.Resampling.BILINEAR))


def _downsample8(image: np.ndarray, factor: int) -> np.ndarray:
    """``ToTensor`` -> :func:`bicubic_downsample` -> ``clamp(0, 1)`` -> ``mul(255).byte()`` (truncation):
    (H, W, 3) uint8 -> (H // factor, W // factor, 3) uint8."""
    t = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0).float().div(255)
    lr = bicubic_downsample(t, factor)[0].clamp(0, 1)
    return lr.mul(255).byte().permute(1, 2, 0).numpy()


def simulate_low_resolution_frame(image: np.ndarray, factor: int) -> np.ndarray:
    """A whole video frame degraded as pSp's ``BilinearResize`` degrades a face: ``BicubicDownSample(factor)``
    (:func:`bicubic_downsample`, 8-bit truncation as ``ToPILImage``), then a PIL bilinear resize back to the
    frame's size. Used by ``vidinv restore --simulate-factor`` to make a low-resolution input from a
    high-resolution video (the faces then have ``1 / factor`` of their detail, as the model's training
    inputs); unlike :func:`simulate_low_resolution` there is no first resize to 256.

    Args:
        image: (H, W, 3) uint8 RGB, H and W >= ``factor``.
        factor: down-sampling factor >= 1.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: not an (H, W, 3) uint8 array, factor < 1 or larger than the frame.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an (H, W, 3) uint8 RGB array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    factor = int(factor)
    h, w = image.shape[:2]
    if factor < 1 or h // factor < 1 or w // factor < 1:
        raise ValueError(f"bad down-sampling factor {factor} for a {w}x{h} frame")
    lr = _downsample8(image, factor)
    return np.asarray(Image.fromarray(lr).resize((w, h), Image.Resampling.BILINEAR))
