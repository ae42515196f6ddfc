"""Plain-PyTorch versions of the two custom StyleGAN2 ops (no compiled extensions).

The rosinality StyleGAN2 code (used by pSp and the Feature-Style encoder) calls two CUDA
extensions, ``upfirdn2d`` and ``fused_leaky_relu``. This module computes the same math with
ordinary PyTorch ops, so it runs on the CPU and on CUDA, in any floating dtype; the kernel
and the bias follow the device and dtype of the input.

Semantics (those of the reference CUDA kernels and of rosinality's ``upfirdn2d_native``):

* :func:`upfirdn2d`: upsample by inserting ``up - 1`` zeros after every sample, pad with zeros
  (negative pads crop), convolve every channel with the 2-D FIR kernel as a *true* convolution
  (cross-correlation with the kernel flipped in both axes), then keep every ``down``-th sample.
* :func:`fused_leaky_relu`: ``leaky_relu(x + bias[channel], negative_slope) * scale``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["upfirdn2d", "fused_leaky_relu", "conv_memory_format"]


def _pads(pad: Sequence[int]) -> tuple[int, int, int, int]:
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad
    raise ValueError(f"pad must have 2 entries (both axes) or 4 (x0, x1, y0, y1), got {pad}")


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0), *, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample, FIR-filter and downsample every channel of ``x`` (StyleGAN2's ``upfirdn2d``).

    Args:
        x: (B, C, H, W) floating tensor, any device.
        kernel: (kh, kw) FIR kernel (e.g. the generator's ``*.blur.kernel`` /
            ``*.upsample.kernel`` buffers). Cast to ``x``'s dtype and device. Applied as a true
            convolution, i.e. flipped in both axes before the cross-correlation, exactly as the
            reference op does; this matters for non-symmetric kernels.
        up: integer upsampling factor (zero insertion: sample ``i`` goes to ``i * up``).
        down: integer downsampling factor (keep samples ``0, down, 2*down, ...`` after filtering).
        pad: ``(p0, p1)`` zeros added before/after along both axes, or ``(x0, x1, y0, y1)``.
            Negative values crop.
        bias: optional (C,) per-channel value added to the output (an extension of the
            reference op, fused into the filter's convolution; the generator uses it for the
            bias that follows the blur of an upsampling conv).

    Returns:
        (B, C, H_out, W_out) tensor in ``x``'s dtype, with
        ``H_out = (H * up + y0 + y1 - kh) // down + 1`` (likewise for W).

    Raises:
        ValueError: ``x`` is not 4-D, ``kernel`` is not 2-D, factors are < 1, or the padded
            signal is smaller than the kernel.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    up, down = int(up), int(down)
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    x0, x1, y0, y1 = _pads(pad)
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    hp, wp = h * up + y0 + y1, w * up + x0 + x1
    if hp < kh or wp < kw:
        raise ValueError(f"upfirdn2d: padded size ({hp}, {wp}) is smaller than the kernel ({kh}, {kw})")
    # Every channel is filtered alone: fold the batch into the channels and run one depthwise conv.
    # On the CPU the channels-last layout is several times faster for depthwise convs.
    fmt = conv_memory_format(x)
    xg = x.reshape(1, b * c, h, w)
    k = kernel.to(device=x.device, dtype=x.dtype)
    if bias is not None:
        if bias.shape != (c,):
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not match the {c} channels of x")
        bias = bias.to(device=x.device, dtype=x.dtype).repeat(b)

    def depthwise(kk: torch.Tensor) -> torch.Tensor:  # (kh, kw) -> (B * C, 1, kh, kw), one filter per channel
        return kk.reshape(1, 1, kh, kw).expand(b * c, 1, kh, kw).contiguous(memory_format=fmt)

    if up > 1 and down == 1:
        # Zero insertion, padding and the true convolution with ``kernel`` are one depthwise transposed conv
        # (weight = the kernel itself, stride = up) when the pads fit: per axis q = k - 1 - p0 >= 0 is its
        # padding and p1 - p0 + up - 1 in [0, up) its output padding (the generator's 2x upsampling of the RGB
        # skip image: pad (2, 1), kernel 4x4). No zero-stuffed buffer is made (2.7x faster at 1024 on the CPU).
        qy, qx = kh - 1 - y0, kw - 1 - x0
        oy, ox = y1 - y0 + up - 1, x1 - x0 + up - 1
        if qy >= 0 and qx >= 0 and 0 <= oy < up and 0 <= ox < up:
            out = F.conv_transpose2d(xg.contiguous(memory_format=fmt), depthwise(k), bias, stride=up,
                                     padding=(qy, qx), output_padding=(oy, ox), groups=b * c)
            return out.view(b, c, out.shape[2], out.shape[3])
    conv_pad = (0, 0)
    if up == 1 and x0 == x1 >= 0 and y0 == y1 >= 0:
        conv_pad = (y0, x0)  # symmetric zero padding: let the convolution do it
    elif up > 1 or x0 > 0 or x1 > 0 or y0 > 0 or y1 > 0:
        # zero insertion and zero padding in one buffer: sample i lands at max(pad0, 0) + i * up
        py0, px0 = max(y0, 0), max(x0, 0)
        buf = torch.empty((1, b * c, h * up + py0 + max(y1, 0), w * up + px0 + max(x1, 0)),
                          dtype=x.dtype, device=x.device, memory_format=fmt).zero_()
        buf[:, :, py0:py0 + h * up:up, px0:px0 + w * up:up] = xg
        xg = buf
    if x0 < 0 or x1 < 0 or y0 < 0 or y1 < 0:  # negative pads crop
        xg = xg[:, :, max(-y0, 0):xg.shape[2] - max(-y1, 0), max(-x0, 0):xg.shape[3] - max(-x1, 0)]
    out = F.conv2d(xg, depthwise(torch.flip(k, [0, 1])), bias, stride=down, padding=conv_pad, groups=b * c)
    return out.view(b, c, out.shape[2], out.shape[3])


def conv_memory_format(x: torch.Tensor) -> torch.memory_format:
    """Memory format for convolutions on ``x``'s device: channels-last on the CPU (oneDNN's fast
    path, notably for depthwise and grouped convs), the default elsewhere."""
    return torch.channels_last if x.device.type == "cpu" else torch.contiguous_format


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2.0)) -> torch.Tensor:
    """Bias + leaky ReLU + gain, as StyleGAN2's ``fused_leaky_relu``.

    Computes ``leaky_relu(x + bias.view(1, C, 1, ...), negative_slope) * scale``.

    Args:
        x: (B, C, ...) floating tensor (2-D for linear layers, 4-D for conv layers).
        bias: (C,) per-channel bias, or None for none. Cast to ``x``'s dtype and device.
        negative_slope: slope for negative inputs (0.2 in StyleGAN2).
        scale: gain applied after the activation (sqrt(2) in StyleGAN2, which keeps the
            signal's second moment).

    Returns:
        Tensor of ``x``'s shape and dtype.
    """
    if bias is not None:
        if x.ndim < 2 or bias.shape != (x.shape[1],):
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not match the channels of x "
                             f"{tuple(x.shape)}")
        x = x + bias.to(device=x.device, dtype=x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale
