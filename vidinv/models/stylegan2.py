"""StyleGAN2 generator (Karras et al., CVPR 2020) with feature-code injection, in plain PyTorch.

This re-implements the generator used by pSp (Richardson et al., CVPR 2021) and the
Feature-Style encoder (Yao et al., ECCV 2022): rosinality's ``stylegan2-pytorch`` ``Generator`` as
extended in ``pixel2style2pixel/models/stylegan2/model.py`` of the Feature-Style repository with
``features_in`` / ``feature_scale`` / ``return_features``. Its ``state_dict()`` has exactly the
official key names and shapes (171 keys at 1024, 135 at 256), so the official checkpoints load
strictly: pSp ``psp_ffhq_encode.pt`` (keys prefixed ``decoder.``) and rosinality
``stylegan2-ffhq-config-f.pt`` (under ``g_ema``); see :func:`load_generator`.

Layer layout (``num_layers = 2 * log2(size) - 3`` styled conv layers, ``n_latent = num_layers + 1``
W+ rows):

* Styled conv layer ``j`` (1-based) is ``conv1`` (4x4) for ``j = 1`` and ``convs[j - 2]`` after;
  even ``j`` are the upsampling convs. Layer ``j`` reads W+ row ``j - 1`` and noise buffer
  ``noises.noise_{j-1}``.
* After every odd layer ``j`` a ToRGB runs (``to_rgb1`` for ``j = 1``, ``to_rgbs[(j - 3) // 2]``
  after) with W+ row ``j``; it upsamples the running RGB skip image and adds its 1x1 output.
* The feature list (``return_features``) has ``n_latent`` entries: ``features[0]`` = the constant
  input, ``features[j]`` = output of layer ``j`` (after modulated conv + noise + bias +
  leaky-ReLU x sqrt(2)). ``features[4]`` and ``features[5]`` are the two 16x16 layers.
* Feature injection at index ``k`` (``1 <= k <= num_layers - 1``) replaces the running activation
  that equals ``features[k]`` right before layer ``k + 1`` reads it:
  ``x = (1 - s) * x + s * F`` with ``s = feature_scale``. A ToRGB that follows layer ``k`` (odd ``k``)
  has already run on the original activation, so ``F`` only affects layer ``k + 1`` onwards.

The FIR kernels (``*.conv.blur.kernel``, ``*.upsample.kernel``) and the constant noise maps
(``noises.noise_i``) are persistent buffers loaded from the checkpoint and used as such (the
kernels as true convolutions, see :func:`vidinv.models.ops.upfirdn2d`).

Dtype and device: computations run in the generator's parameter dtype and on its device (move it
with ``.to()``, e.g. ``G.double()``); latent codes and feature codes passed in are moved there.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import (
    VIDINV_RECORD_KEY,
    CheckpointError,
    load_strict,
    read_checkpoint,
    read_vidinv_record,
    select_prefix,
)
from vidinv.models.fs_encoder import FS_FEATURE_LAYER
from vidinv.models.ops import conv_memory_format, fused_leaky_relu, upfirdn2d

__all__ = [
    "Generator",
    "CoarseState",
    "edit_image",
    "edit_layer_count",
    "load_generator",
    "infer_generator_config",
    "generator_from_architecture",
    "OFFICIAL_PSP_DECODER",
    "make_kernel",
]

#: On the CPU the 3x3 modulated conv runs channels-last when its input has at most this many channels
#: (see :meth:`ModulatedConv2d.forward`).
CHANNELS_LAST_MAX_CHANNELS = 128

NoiseSpec = Any  # "const" | "random" | sequence of (1 or B, 1, H, W) tensors / None


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Return the normalised 2-D FIR kernel ``outer(k, k) / sum`` (StyleGAN2 ``make_kernel``).

    ``k`` is a 1-D tap list such as ``(1, 3, 3, 1)``; a 2-D list is normalised as is. Float32.
    """
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


class PixelNorm(nn.Module):
    """``z * rsqrt(mean(z**2, dim=1) + 1e-8)``: the first layer of the mapping network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (keys ``weight`` (out, in), ``bias`` (out,)).

    ``y = x @ (weight * lr_mul / sqrt(in)).T + bias * lr_mul``; with ``activation=True`` the bias
    goes through :func:`fused_leaky_relu` instead.
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR filter applied after a transposed conv (buffer ``kernel`` (4, 4))."""

    kernel: torch.Tensor

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor ** 2)
        self.register_buffer("kernel", k, persistent=True)
        self.pad = pad

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, bias=bias)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip image (buffer ``kernel`` (4, 4))."""

    kernel: torch.Tensor

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor ** 2)
        self.register_buffer("kernel", k, persistent=True)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) conv, batched as one grouped conv.

    Keys: ``weight`` (1, out, in, k, k), ``modulation.weight`` (in, style_dim),
    ``modulation.bias`` (in,) (initialised to 1), and ``blur.kernel`` (4, 4) when upsampling.
    Upsampling is ``conv_transpose2d(stride=2)`` followed by the FIR blur, as in the reference.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.demodulate = demodulate
        self._terms_cache: tuple | None = None

    def _fixed_terms(self, fmt: torch.memory_format) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The style-independent parts of the weight: ``(wsq, base)``.

        ``wsq`` (out, in) = ``sum_{kh,kw} weight^2`` (the demodulation's sums; None without demodulation);
        ``base`` = the weight as the convolution reads it: (out, in, k, k) in ``fmt``, (in, out, k, k) in
        ``fmt`` for the transposed conv, (out, in) for the 1x1.

        When no gradient can reach the weight (grad mode off, or a frozen weight) the terms are computed once
        and cached, keyed on the weight's storage, version counter (bumped by every in-place change:
        optimiser steps, ``load_state_dict``, ``copy_``), dtype and device, so a changed weight recomputes
        them; otherwise (training, pivotal tuning) they are recomputed, differentiably, on every call.
        """
        w = self.weight
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if tracing or (torch.is_grad_enabled() and w.requires_grad):
            return self._compute_terms(w[0], fmt)
        key = (w.data_ptr(), w._version, w.dtype, w.device, fmt)
        cache = self._terms_cache
        if cache is None or cache[0] != key:
            # ordinary (not inference-mode) tensors, so that they may be saved for a backward through x / style
            with torch.inference_mode(False), torch.no_grad():
                cache = (key, self._compute_terms(w.detach()[0], fmt))
            self._terms_cache = cache
        return cache[1]

    def _compute_terms(self, w: torch.Tensor, fmt: torch.memory_format) -> tuple[torch.Tensor | None, torch.Tensor]:
        wsq = w.square().sum([2, 3]) if self.demodulate else None
        if self.upsample:
            base = w.transpose(0, 1).contiguous(memory_format=fmt)
        elif self.kernel_size == 1:
            base = w.reshape(self.out_channel, self.in_channel)
        else:
            base = w.contiguous(memory_format=fmt)
        return wsq, base

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in, H, W), style (B, style_dim) -> (B, out, H', W') (H' = 2H when upsampling).

        ``gain`` multiplies the result and ``bias`` (out,) is added last (after the blur when
        upsampling); both are fused into the convolutions.

        Memory layout on the CPU: the transposed conv and the blur run channels-last, and so does the 3x3
        conv when ``in_channel <= CHANNELS_LAST_MAX_CHANNELS`` (the high resolutions, where oneDNN's
        channels-last conv is up to 2.5x faster and within ~3x of the default layout's float32 error);
        the wide low-resolution convs keep the default layout (there oneDNN's channels-last conv is ~10x
        less accurate in float32 against float64 for no speed gain, and the edit's feature difference
        ``G^5(w_edit) - G^5(w)`` is computed from them). The output keeps the layout it was computed in.
        """
        b, c, h, w = x.shape
        k, o = self.kernel_size, self.out_channel
        cpu = x.device.type == "cpu"
        if self.upsample:
            fmt = conv_memory_format(x)
        elif cpu and c <= CHANNELS_LAST_MAX_CHANNELS and k > 1:
            fmt = torch.channels_last
        else:
            fmt = torch.contiguous_format
        wsq, base = self._fixed_terms(fmt)
        s = self.modulation(style)  # (B, in)
        # per-sample factor on the (out, in) weight: scale * s_i, times the demodulation
        # rsqrt(sum_{i,kh,kw} (scale * W * s_i)^2 + eps) computed as a small matmul
        out_scale: torch.Tensor | float = gain
        if wsq is not None:
            demod = torch.rsqrt(torch.matmul(s.square(), wsq.t()) * (self.scale ** 2) + self.eps)  # (B, out)
            out_scale = (demod * gain).view(b, o, 1)
        if k > 1 and b * h * w <= o * k * k:
            # the "non-fused" form (StyleGAN2-ADA's): modulate the input, convolve with the fixed weight, scale
            # the output; cheaper than modulating the weight where the weight is larger than the activation
            # (the wide low-resolution layers), and the same math up to float rounding
            xs = (x * (self.scale * s).view(b, c, 1, 1)).contiguous(memory_format=fmt)
            osc = out_scale.view(b, o, 1, 1) if isinstance(out_scale, torch.Tensor) else out_scale
            if self.upsample:
                return self.blur(F.conv_transpose2d(xs, base, stride=2) * osc, bias)
            out = F.conv2d(xs, base, padding=self.padding)
            if bias is None:
                return out * osc
            return torch.addcmul(bias.view(1, o, 1, 1), out, osc) if isinstance(osc, torch.Tensor) \
                else out * osc + bias.view(1, o, 1, 1)
        factor = (self.scale * s).view(b, 1, c) * out_scale
        if k == 1 and not self.upsample:  # 1x1 (ToRGB): a batched matmul over the pixels, in x's layout
            weight = base * factor  # (B, out, in)
            if b == 1 and torch.jit.is_tracing():
                # for an exported graph (vidinv.models.export) a 1x1 conv: a compiler keeps it in its conv layout,
                # where a matmul needs reorders of the activation on both sides
                out = F.conv2d(x, weight.view(o, c, 1, 1))
            elif b == 1 and x.is_contiguous(memory_format=torch.channels_last):
                out = torch.matmul(x.permute(0, 2, 3, 1).reshape(1, h * w, c), weight.transpose(1, 2))
                out = out.view(1, h, w, o).permute(0, 3, 1, 2)
            else:
                out = torch.matmul(weight, x.reshape(b, c, h * w)).view(b, o, h, w)
            return out if bias is None else out + bias.view(1, o, 1, 1)
        if self.upsample:
            # (in, out, k, k) per sample, stacked as (B * in, out, k, k): groups = B
            weight = base.unsqueeze(0) * factor.transpose(1, 2).reshape(b, c, o, 1, 1)
            if b > 1:
                weight = weight.reshape(b * c, o, k, k).contiguous(memory_format=fmt)
            else:
                weight = weight[0]
            out = F.conv_transpose2d(x.reshape(1, b * c, h, w).contiguous(memory_format=fmt), weight, padding=0,
                                     stride=2, groups=b)
            out = out.view(b, o, out.shape[-2], out.shape[-1]) if b > 1 else out
            return self.blur(out, bias)
        weight = base.unsqueeze(0) * factor.reshape(b, o, c, 1, 1)  # (B, out, in, k, k)
        if b > 1:  # fold the batch into the channels: one grouped conv with a per-sample weight (groups = B)
            out = F.conv2d(x.reshape(1, b * c, h, w).contiguous(memory_format=fmt),
                           weight.reshape(b * o, c, k, k).contiguous(memory_format=fmt),
                           None if bias is None else bias.repeat(b), padding=self.padding, groups=b)
            return out.view(b, o, out.shape[-2], out.shape[-1])
        return F.conv2d(x.contiguous(memory_format=fmt), weight[0], bias, padding=self.padding)


class NoiseInjection(nn.Module):
    """``x + weight * noise`` (key ``weight`` (1,), initialised to 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        else:
            noise = noise.to(device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant (key ``input`` (1, C, 4, 4)), repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky ReLU(0.2) x sqrt(2) (key ``bias`` (C,))."""

    def __init__(self, channel: int, negative_slope: float = 0.2, scale: float = math.sqrt(2.0)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class StyledConv(nn.Module):
    """One synthesis layer: modulated 3x3 conv, noise, bias + leaky ReLU (keys ``conv.*``,
    ``noise.weight``, ``activate.bias``)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=True,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """``leaky_relu(conv(x, style) + noise_weight * noise + bias, 0.2) * sqrt(2)``.

        x (B, in, H, W), style (B, style_dim), noise (1 or B, 1, H', W') or None (fresh N(0, 1)).
        Computed as ``leaky_relu(g*conv + g*noise_weight*noise + g*bias)`` with g = sqrt(2) > 0
        (the same value: leaky ReLU is positively homogeneous), the gain and bias being fused into
        the convolution, so only two passes over the activation remain.
        """
        g = self.activate.scale
        out = self.conv(x, style, gain=g, bias=self.activate.bias * g)
        if noise is None:
            b, _, h, w = out.shape
            noise = torch.randn(b, 1, h, w, device=out.device, dtype=out.dtype)
        else:
            noise = noise.to(device=out.device, dtype=out.dtype)
        out = out.add_(noise * (self.noise.weight * g))  # the conv output is fresh: safe in place
        return F.leaky_relu(out, self.activate.negative_slope, inplace=True)


class ToRGB(nn.Module):
    """1x1 modulated (not demodulated) conv to RGB + bias, plus the 2x-upsampled skip image.

    Keys ``conv.*``, ``bias`` (1, 3, 1, 1) and, when upsampling, ``upsample.kernel`` (4, 4).
    """

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


@dataclass
class CoarseState:
    """What :meth:`Generator.fine` needs to finish a synthesis from the feature at index ``k``.

    Attributes:
        k: feature index (1 <= k <= num_layers - 1); ``feature`` is ``features[k]``.
        feature: (B, C_k, r, r) activation ``G^k(w)`` = output of styled conv layer ``k`` (for
            ``k = 5``: (B, 512, 16, 16)), float, unbounded.
        skip: (B, 3, r', r') RGB skip image accumulated by the ToRGB layers that ran up to layer
            ``k`` (from the same W+); ``r' = r`` for odd ``k``, ``r / 2`` for even ``k``.
    """

    k: int
    feature: torch.Tensor
    skip: torch.Tensor


class Generator(nn.Module):
    """StyleGAN2 generator with the official (rosinality / pSp / Feature-Style) state_dict layout.

    Args:
        size: output resolution (power of two, >= 8); 1024 for FFHQ config-f.
        style_dim: latent size (512).
        n_mlp: mapping-network depth (8).
        channel_multiplier: 2 for config-f (channels 512 up to 32x32, then 256*m, 128*m, 64*m,
            32*m, 16*m at 64..1024).
        lr_mlp: learning-rate multiplier of the mapping network (0.01); a run-time scale.
        max_channels: cap on every layer's channel count (512 = the official table; smaller
            values give tiny configs for tests).
        blur_kernel: 1-D FIR taps the kernel buffers are initialised with; loaded checkpoints
            overwrite the buffers.

    Attributes:
        size, style_dim, n_latent (W+ rows, 18 at 1024), num_layers (styled conv layers, 17 at
        1024), log_size, channels (resolution -> channels), layers_run (running count of styled
        conv layers executed, one per layer call whatever the batch size; reset it with
        :meth:`reset_layer_count`).
    """

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 lr_mlp: float = 0.01, max_channels: int = 512, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        log_size = int(round(math.log2(size)))
        if size < 8 or 2 ** log_size != size:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size = int(size)
        self.style_dim = int(style_dim)
        self.n_mlp = int(n_mlp)
        self.channel_multiplier = int(channel_multiplier)
        self.lr_mlp = float(lr_mlp)
        self.max_channels = int(max_channels)
        self.log_size = log_size
        self.num_layers = (log_size - 2) * 2 + 1
        self.n_latent = log_size * 2 - 2
        self.channels = _channel_table(channel_multiplier, max_channels, log_size)
        self.layers_run = 0
        #: optional compiled back-end (:class:`vidinv.models.export.OnnxBackend`, set by
        #: :func:`vidinv.models.export.attach_backend`): :meth:`coarse`, :meth:`fine` and :meth:`synthesis` run
        #: through it when a call fits what it compiled, and the eager code otherwise.
        self.backend: Any = None

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])

        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, blur_kernel=blur_kernel)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty in the reference too (no state_dict keys)
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = (i + 5) // 2
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, 2 ** res, 2 ** res), persistent=True)
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    # ------------------------------------------------------------------ helpers
    def architecture(self) -> dict[str, Any]:
        """Constructor arguments of this generator (``size``, ``style_dim``, ``n_mlp``,
        ``channel_multiplier``, ``lr_mlp``, ``max_channels``), as vidinv records them in the checkpoints it
        writes; :func:`generator_from_architecture` builds the same network back. (Loaded checkpoints set
        the FIR kernel buffers, so ``blur_kernel`` is not recorded.)"""
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier, "lr_mlp": self.lr_mlp, "max_channels": self.max_channels}

    def _ref(self) -> torch.Tensor:
        return self.input.input

    def reset_layer_count(self) -> None:
        """Set :attr:`layers_run` back to 0."""
        self.layers_run = 0

    def _layer(self, j: int) -> StyledConv:
        return self.conv1 if j == 1 else cast(StyledConv, self.convs[j - 2])

    def _to_rgb(self, j: int) -> ToRGB:
        return self.to_rgb1 if j == 1 else cast(ToRGB, self.to_rgbs[(j - 3) // 2])

    def _wplus(self, w: torch.Tensor) -> torch.Tensor:
        ref = self._ref()
        w = torch.as_tensor(w).to(device=ref.device, dtype=ref.dtype)
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if w.ndim == 3 and w.shape[1:] == (self.n_latent, self.style_dim):
            return w
        raise ValueError(f"expected w of shape (B, {self.style_dim}) or W+ of shape (B, {self.n_latent}, "
                         f"{self.style_dim}), got {tuple(w.shape)}")

    def noise_buffers(self, noise: NoiseSpec = "const") -> list[torch.Tensor | None]:
        """The per-layer noise of a noise spec: ``num_layers`` entries, one per styled conv layer.

        Args:
            noise: ``"const"`` (the checkpoint's ``noises.noise_i`` buffers, (1, 1, H, W), not copies),
                ``"random"`` (``None`` entries: each layer draws fresh N(0, 1) noise when it runs) or a
                list of ``num_layers`` tensors (1 or B, 1, H, W) / None, returned as a list.

        Pass the result as ``noise=`` to run several passes with the same noise (as
        :func:`edit_image` does for its coarse and fine passes).

        Raises:
            ValueError: an unknown name, or a list of the wrong length.
        """
        if isinstance(noise, str):
            if noise == "const":
                return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
            if noise == "random":
                return [None] * self.num_layers
            raise ValueError(f"noise must be 'const', 'random' or a list of {self.num_layers} tensors, "
                             f"got {noise!r}")
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"a noise list needs {self.num_layers} entries (one per styled conv layer), "
                             f"got {len(noise)}")
        return noise

    def _check_k(self, k: int) -> int:
        k = int(k)
        if not 1 <= k <= self.num_layers - 1:
            raise ValueError(f"feature index k must be in [1, {self.num_layers - 1}] for a {self.size}x{self.size} "
                             f"generator, got {k}")
        return k

    def feature_shape(self, k: int) -> tuple[int, int, int]:
        """(C, H, W) of ``features[k]`` (``k = 0`` is the constant input). (512, 16, 16) for k = 4, 5."""
        if not 0 <= k <= self.num_layers:
            raise ValueError(f"feature index must be in [0, {self.num_layers}], got {k}")
        res = 4 if k <= 1 else 2 ** ((k + 4) // 2)
        return self.channels[res], res, res

    def _run_layers(self, x: torch.Tensor, skip: torch.Tensor | None, wp: torch.Tensor,
                    noise: list, j_start: int, j_stop: int, feats: list | None):
        """Run styled conv layers ``j_start..j_stop`` (and the ToRGBs after odd ones) on ``x``."""
        for j in range(j_start, j_stop + 1):
            x = self._layer(j)(x, wp[:, j - 1], noise[j - 1])
            self.layers_run += 1
            if feats is not None:
                feats.append(x)
            if j % 2 == 1:
                skip = self._to_rgb(j)(x, wp[:, j], skip)
        return x, skip

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise maps, one per styled conv layer: ``num_layers`` tensors (batch, 1, H, W).

        Pass the list as ``noise=`` to reuse one draw across calls (reference ``make_noise``, which
        draws batch 1 and shares it over the batch).
        """
        ref = self._ref()
        return [torch.randn(batch, 1, *getattr(self.noises, f"noise_{i}").shape[-2:], device=ref.device,
                            dtype=ref.dtype, generator=generator) for i in range(self.num_layers)]

    # ------------------------------------------------------------------ mapping
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Map z (B, style_dim) ~ N(0, I) to w (B, style_dim) (reference ``get_latent``).

        PixelNorm, then ``n_mlp`` EqualLinear layers (lr_mul ``lr_mlp``, fused leaky ReLU).
        """
        ref = self._ref()
        z = torch.as_tensor(z).to(device=ref.device, dtype=ref.dtype)
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"expected z of shape (B, {self.style_dim}), got {tuple(z.shape)}")
        return self.style(z)

    get_latent = mapping

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` random z: (1, style_dim) (reference ``mean_latent``).

        ``generator`` is an optional ``torch.Generator`` on the generator's device for a
        reproducible estimate.
        """
        ref = self._ref()
        z = torch.randn(n, self.style_dim, device=ref.device, dtype=ref.dtype, generator=generator)
        return self.mapping(z).mean(0, keepdim=True)

    # ------------------------------------------------------------------ synthesis
    def synthesis(self, w: torch.Tensor, *, noise: NoiseSpec = "const", feature: torch.Tensor | None = None,
                  k: int = FS_FEATURE_LAYER, feature_scale: float = 1.0, return_features: bool = False):
        """Synthesise images from W+ codes, optionally with a feature code injected at index ``k``.

        Equivalent to the reference ``G([w], input_is_latent=True, randomize_noise=..., features_in=
        [None]*k + [feature] + ..., feature_scale=..., return_features=...)`` (truncation off).

        Args:
            w: W+ (B, n_latent, style_dim), or w (B, style_dim) used for every row.
            noise: ``"const"`` (the checkpoint's ``noises.noise_i`` buffers; default, temporally
                stable), ``"random"`` (fresh N(0, 1) maps per call) or a list of ``num_layers``
                tensors (1 or B, 1, H, W) (``None`` entries draw random noise).
            feature: optional feature code F (B or 1, C, H, W) of shape :meth:`feature_shape`(k)
                ((512, 16, 16) for k = 5). Replaces ``features[k]`` before layer ``k + 1``:
                ``x = (1 - s) * x + s * F``.
            k: feature index, 1 <= k <= num_layers - 1 (5 = the second 16x16 layer).
            feature_scale: s above.
            return_features: also return the ``n_latent`` activations (see module doc); entry
                ``k`` is the original activation, not F.

        Returns:
            image (B, 3, size, size) in the generator's dtype, unbounded (about [-1, 1] RGB with
            real weights); or ``(image, features)`` with ``features`` a list of ``n_latent``
            tensors.
        """
        wp = self._wplus(w)
        be = self.backend
        if (be is not None and not return_features and (feature is None or int(k) == be.k)
                and be.usable(self, noise, (wp, feature))):
            state = be.coarse(self, wp)
            x = state.feature if feature is None else self._inject(feature, state, feature_scale)
            return be.fine(self, x, wp, state.skip)
        noise_l = self.noise_buffers(noise)
        feats: list | None = [] if return_features else None
        if feature is None:
            x = self.input(wp.shape[0])
            if feats is not None:
                feats.append(x)
            _, skip = self._run_layers(x, None, wp, noise_l, 1, self.num_layers, feats)
        else:
            k = self._check_k(k)
            state = self._coarse(wp, k, noise_l, feats)
            skip = self._fine(feature, wp, state, noise_l, feature_scale, feats)
        image = skip.contiguous()
        if feats is not None:
            return image, feats
        return image

    def _coarse(self, wp: torch.Tensor, k: int, noise_l: list, feats: list | None) -> CoarseState:
        x = self.input(wp.shape[0])
        if feats is not None:
            feats.append(x)
        x, skip = self._run_layers(x, None, wp, noise_l, 1, k, feats)
        return CoarseState(k=k, feature=x, skip=skip)

    @staticmethod
    def _inject(feature: torch.Tensor, state: CoarseState, feature_scale: float) -> torch.Tensor:
        x = state.feature
        feature = torch.as_tensor(feature).to(device=x.device, dtype=x.dtype)
        if feature.ndim != 4 or feature.shape[1:] != x.shape[1:]:
            raise ValueError(f"feature code at k={state.k} must have shape (B, {', '.join(map(str, x.shape[1:]))}), "
                             f"got {tuple(feature.shape)}")
        return (1 - feature_scale) * x + feature_scale * feature

    def _fine(self, feature: torch.Tensor, wp: torch.Tensor, state: CoarseState, noise_l: list,
              feature_scale: float, feats: list | None) -> torch.Tensor:
        x = self._inject(feature, state, feature_scale)
        _, skip = self._run_layers(x, state.skip, wp, noise_l, state.k + 1, self.num_layers, feats)
        return skip.contiguous()

    def coarse(self, w: torch.Tensor, k: int = FS_FEATURE_LAYER, noise: NoiseSpec = "const") -> CoarseState:
        """Run only styled conv layers 1..k (and their ToRGBs): the cheap first part of synthesis.

        For ``k = 5`` this is conv1, convs[0..3] (up to 16x16), 5 of the 17 layers at 1024.

        Args:
            w: W+ (B, n_latent, style_dim) or w (B, style_dim); only rows 0..k are read.
            k: feature index, 1 <= k <= num_layers - 1.
            noise: as in :meth:`synthesis` (a list must still have ``num_layers`` entries).

        Returns:
            :class:`CoarseState` with ``feature`` = ``features[k]`` = G^k(w) and the RGB skip image.
        """
        wp, k = self._wplus(w), self._check_k(k)
        be = self.backend
        if be is not None and k == be.k and be.usable(self, noise, (wp,)):
            return be.coarse(self, wp)
        return self._coarse(wp, k, self.noise_buffers(noise), None)

    def fine(self, feature: torch.Tensor, w: torch.Tensor, state: CoarseState, noise: NoiseSpec = "const",
             feature_scale: float = 1.0) -> torch.Tensor:
        """Finish a synthesis from a feature code at index ``state.k``, without re-running layers 1..k.

        ``fine(F, w, coarse(w, k), s)`` equals ``synthesis(w, feature=F, k=k, feature_scale=s)``.

        Args:
            feature: feature code F (B or 1, C, H, W), shape of ``state.feature``.
            w: W+ (B, n_latent, style_dim) or w (B, style_dim); rows k..n_latent-1 are read.
                Use the same W+ the state was computed from (the state's skip image comes from it).
            state: from :meth:`coarse`.
            noise: as in :meth:`synthesis`.
            feature_scale: s in ``x = (1 - s) * state.feature + s * F``.

        Returns:
            image (B, 3, size, size), unbounded (about [-1, 1] RGB with real weights).
        """
        wp = self._wplus(w)
        be = self.backend
        if be is not None and state.k == be.k and be.usable(self, noise, (feature, wp, state.feature, state.skip)):
            return be.fine(self, self._inject(feature, state, feature_scale), wp, state.skip)
        return self._fine(feature, wp, state, self.noise_buffers(noise), feature_scale, None)

    def preview(self, w: torch.Tensor, *, resolution: int = 256, feature: torch.Tensor | None = None,
                k: int = FS_FEATURE_LAYER, noise: NoiseSpec = "const") -> torch.Tensor:
        """The synthesis stopped early: the RGB skip image once the layers of ``resolution`` ran (StyleGAN2's
        skip architecture sums the ToRGB outputs of every resolution, so this is the image without the
        finer layers' detail). Costs the layers up to ``resolution`` only (at 1024 and 256: about 60% of a
        full synthesis' multiply-adds). Not counted in :attr:`layers_run`.

        Args:
            w: W+ (B, n_latent, style_dim) or w (B, style_dim).
            resolution: a power of two, 4 <= resolution <= size.
            feature, k: a feature code injected at index ``k`` as in :meth:`synthesis` (k must lie below the
                last layer of ``resolution``), or None.
            noise: as in :meth:`synthesis`.

        Returns:
            (B, 3, resolution, resolution) in the generator's dtype, about [-1, 1] RGB.

        Raises:
            ValueError: a bad resolution or k.
        """
        r = int(resolution)
        if r < 4 or r > self.size or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in [4, {self.size}], got {resolution}")
        stop = 1 if r == 4 else 2 * (int(round(math.log2(r))) - 2) + 1
        count = self.layers_run
        try:
            wp = self._wplus(w)
            noise_l = self.noise_buffers(noise)
            if feature is None:
                _, skip = self._run_layers(self.input(wp.shape[0]), None, wp, noise_l, 1, stop, None)
                return skip.contiguous()
            k = self._check_k(k)
            if k >= stop:
                raise ValueError(f"feature index k={k} is not below the last layer ({stop}) of resolution {r}")
            state = self._coarse(wp, k, noise_l, None)
            x = state.feature
            feature = torch.as_tensor(feature).to(device=x.device, dtype=x.dtype)
            if feature.ndim != 4 or feature.shape[1:] != x.shape[1:]:
                raise ValueError(f"feature code at k={k} must have shape (B, {', '.join(map(str, x.shape[1:]))}), "
                                 f"got {tuple(feature.shape)}")
            _, skip = self._run_layers(feature, state.skip, wp, noise_l, k + 1, stop, None)
            return skip.contiguous()
        finally:
            self.layers_run = count

    def forward(self, styles: torch.Tensor, *, input_is_latent: bool = False, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, noise: NoiseSpec = "const",
                feature: torch.Tensor | None = None, k: int = FS_FEATURE_LAYER, feature_scale: float = 1.0,
                return_features: bool = False):
        """Convenience entry: z or w/W+ in, image out (reference ``Generator.forward``, no style mixing).

        Args:
            styles: z (B, style_dim) when ``input_is_latent`` is False (mapped with
                :meth:`mapping`); otherwise w (B, style_dim) or W+ (B, n_latent, style_dim).
                A one-element list ``[tensor]`` (the reference's calling convention) is accepted;
                style mixing (two or more tensors) is not supported.
            truncation: psi; when < 1 the codes become ``t + psi * (w - t)`` with
                ``t = truncation_latent`` ((style_dim,), (1, style_dim) or (n_latent, style_dim)),
                which is then required.
            noise, feature, k, feature_scale, return_features: as in :meth:`synthesis`.

        Returns:
            As :meth:`synthesis`.

        Raises:
            ValueError: truncation < 1 without a truncation_latent, a list of several style
                tensors, or shapes that do not fit.
        """
        if isinstance(styles, (list, tuple)):
            if len(styles) != 1:
                raise ValueError(f"style mixing is not supported: pass one tensor, got a list of {len(styles)}")
            styles = styles[0]
        w = styles if input_is_latent else self.mapping(styles)
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. G.mean_latent(4096) or latent_avg)")
            ref = self._ref()
            t = torch.as_tensor(truncation_latent).to(device=ref.device, dtype=ref.dtype)
            if t.ndim == 2 and t.shape[0] == self.n_latent and self.n_latent > 1:  # per-row (n_latent, 512)
                w, t = self._wplus(w), t.unsqueeze(0)
            else:
                t = t.reshape(1, self.style_dim)
                w = torch.as_tensor(w).to(device=ref.device, dtype=ref.dtype)
                if w.ndim == 3:
                    t = t.unsqueeze(0)
            w = t + truncation * (w - t)
        return self.synthesis(w, noise=noise, feature=feature, k=k, feature_scale=feature_scale,
                              return_features=return_features)


def _channel_table(channel_multiplier: int, max_channels: int, log_size: int) -> dict[int, int]:
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    table = {}
    for i in range(2, log_size + 1):
        r = 2 ** i
        c = base.get(r, max(1, (16 * channel_multiplier * 1024) // r))
        table[r] = int(min(c, max_channels))
    return table


def edit_layer_count(num_layers: int, k: int = FS_FEATURE_LAYER) -> int:
    """Styled conv layers run by :func:`edit_image` per edited frame: ``num_layers + k``.

    One full synthesis (``coarse(w_edit)`` + ``fine``) plus one coarse pass ``coarse(w)`` of ``k``
    layers: 22 at 1024 with k = 5 (instead of 3 x 17 = 51 for three full passes).
    """
    return int(num_layers) + int(k)


def edit_image(G: Generator, w: torch.Tensor, F: torch.Tensor, w_edit: torch.Tensor, k: int = FS_FEATURE_LAYER,
               *, noise: NoiseSpec = "const", feature_scale: float = 1.0, return_feature: bool = False):
    """Edit an inverted frame with the Feature-Style rule (Yao et al., ECCV 2022, eq. 1), given the edited code.

    This is the generator's fast path of eq. 1 for an already edited W+ ``w_edit``; the one function that
    applies a built edit (directions, strengths, rows) is :func:`vidinv.edit.apply_edit`, which calls it.

    With ``G^k(w)`` the generator's activation at index k for the W+ code w, eq. 1 moves the
    encoder's feature code F along with the latent edit:

        ``F_edit = F + G^k(w_edit) - G^k(w)``,  image = G(w_edit, F_edit injected at k)

    (evaluated left to right as in the reference ``latent_manipulation``). Cost: one coarse pass
    on w (k layers) and one full synthesis on w_edit split as :meth:`Generator.coarse` +
    :meth:`Generator.fine`, i.e. :func:`edit_layer_count` styled conv layers.

    Args:
        G: the generator.
        w: W+ (B, n_latent, 512) of the frame (encoder output, latent_avg already added).
        F: feature code (B, C, H, W) of the frame at index k ((B, 512, 16, 16) for k = 5).
        w_edit: edited W+ (B, n_latent, 512), e.g. ``w + strength * direction``.
        k: feature index (5 in the Feature-Style encoder).
        noise: as in :meth:`Generator.synthesis` (``"const"``: the same noise in every frame).
        feature_scale: injection weight s (1.0 = replace).
        return_feature: also return F_edit.

    Returns:
        image (B, 3, size, size) float, unbounded (about [-1, 1] RGB with real weights); with
        ``return_feature`` a tuple ``(image, F_edit)``.
    """
    if isinstance(noise, str) and noise == "random":
        # one draw shared by the three passes, so G^k(w_edit) - G^k(w) holds no noise difference
        noise = G.make_noise(torch.as_tensor(w).shape[0])
    noise_l = G.noise_buffers(noise)
    sw = G.coarse(w_edit, k, noise=noise_l)
    s0 = G.coarse(w, k, noise=noise_l)
    f_edit = torch.as_tensor(F).to(sw.feature) + sw.feature - s0.feature
    image = G.fine(f_edit, w_edit, sw, noise=noise_l, feature_scale=feature_scale)
    return (image, f_edit) if return_feature else image


# ---------------------------------------------------------------------- checkpoint loading
_CONVS = re.compile(r"^convs\.(\d+)\.conv\.weight$")
_TORGB = re.compile(r"^to_rgbs\.(\d+)\.conv\.weight$")
_STYLE = re.compile(r"^style\.(\d+)\.weight$")


#: pSp's decoder for an official file (``Generator(opts.output_size, 512, 8)``, rosinality defaults); ``size`` is
#: ``opts['output_size']``.
OFFICIAL_PSP_DECODER = {"style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "max_channels": 512}

_ARCH_KEYS = ("size", "style_dim", "n_mlp", "channel_multiplier", "lr_mlp", "max_channels")


def generator_from_architecture(arch: Mapping[str, Any], source: str | os.PathLike = "architecture") -> Generator:
    """Build a :class:`Generator` from constructor arguments (keys of :meth:`Generator.architecture`;
    ``size`` required, the others default to the official config-f values).

    Raises:
        CheckpointError: unknown keys or values the class refuses (names ``source``).
    """
    unknown = sorted(set(arch) - set(_ARCH_KEYS))
    if unknown:
        raise CheckpointError(f"{source}: unknown StyleGAN2 generator architecture key(s) {unknown}")
    a = {**OFFICIAL_PSP_DECODER, "lr_mlp": 0.01, **dict(arch)}
    try:
        return Generator(int(a["size"]), int(a["style_dim"]), int(a["n_mlp"]),
                         channel_multiplier=int(a["channel_multiplier"]), lr_mlp=float(a["lr_mlp"]),
                         max_channels=int(a["max_channels"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the generator architecture {dict(arch)} cannot be built: {exc}") from exc


def _psp_decoder_arch(ckpt: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The decoder architecture of a pSp-layout file: its vidinv record's, else pSp's official one."""

    raw_opts = ckpt.get("opts")
    opts: Mapping[str, Any] = raw_opts if isinstance(raw_opts, Mapping) else {}
    record = read_vidinv_record(opts.get(VIDINV_RECORD_KEY), source, "psp")
    if record is not None:
        dec = record["architecture"].get("decoder")
        if not isinstance(dec, Mapping) or "size" not in dec:
            raise CheckpointError(f"{source}: the vidinv record's architecture has no 'decoder' with a 'size'")
        return dict(dec)
    try:
        size = int(opts.get("output_size", 1024))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: bad opts['output_size'] {opts.get('output_size')!r}") from exc
    return {"size": size, **OFFICIAL_PSP_DECODER}


def _generator_state_dict(ckpt: Any, source: str
                          ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, dict[str, Any] | None]:
    """``(state_dict, latent_avg, architecture)``; the architecture is set for pSp-layout files (see
    :func:`load_generator`) and None for rosinality / plain files (inferred from the tensors)."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict-like checkpoint, got {type(ckpt).__name__}")
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt.get("latent_avg"), torch.Tensor) else None
    if "g_ema" in ckpt and isinstance(ckpt["g_ema"], Mapping):
        return dict(ckpt["g_ema"]), latent_avg, None
    if "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        sd = select_prefix(ckpt["state_dict"], "decoder")
        if not sd:
            raise CheckpointError(f"{source}: the 'state_dict' has no 'decoder.' entries, so it holds no "
                                  "StyleGAN2 generator (expected a pSp checkpoint such as psp_ffhq_encode.pt)")
        return sd, latent_avg, _psp_decoder_arch(ckpt, source)
    if any(isinstance(k, str) and k.startswith("decoder.") for k in ckpt):
        return select_prefix(ckpt, "decoder"), latent_avg, _psp_decoder_arch({}, source)
    if "to_rgb1.conv.weight" in ckpt or "conv1.conv.weight" in ckpt:
        return {k: v for k, v in ckpt.items() if k != "latent_avg"}, latent_avg, None
    raise CheckpointError(
        f"{source}: no StyleGAN2 generator found. Expected a pSp checkpoint ({{'state_dict': {{'decoder.*': ...}}, "
        "'latent_avg', 'opts'}}), a rosinality checkpoint ({'g_ema': ..., 'latent_avg'}) or a plain generator "
        f"state_dict (keys 'style.1.weight', 'conv1.conv.weight', ...); top-level keys: {list(ckpt)[:8]}")


def infer_generator_config(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, int]:
    """Infer size, style_dim, n_mlp, channel_multiplier and max_channels from a generator state_dict.

    Args:
        sd: the generator's tensors under the official key names (``style.*``, ``conv1.*``, ``convs.*``,
            ``to_rgbs.*``, ``noises.*``).
        source: the file, named in errors.

    Returns:
        The :class:`Generator` constructor arguments (``size``, ``style_dim``, ``n_mlp``,
        ``channel_multiplier``, ``max_channels``).

    Raises:
        CheckpointError: ``sd`` is not a StyleGAN2 generator state_dict.
    """
    rgb = [int(m.group(1)) for k in sd if (m := _TORGB.match(k))]
    if "conv1.conv.weight" not in sd or "input.input" not in sd:
        raise CheckpointError(f"{source}: not a StyleGAN2 generator state_dict (no 'conv1.conv.weight' / "
                              "'input.input'); first keys: " + ", ".join(list(sd)[:8]))
    n_rgb = max(rgb) + 1 if rgb else 0
    log_size = n_rgb + 2
    style_keys = [int(m.group(1)) for k in sd if (m := _STYLE.match(k))]
    n_mlp = max(style_keys) if style_keys else 8
    style_dim = int(sd["conv1.conv.modulation.weight"].shape[1]) if "conv1.conv.modulation.weight" in sd else 512
    max_channels = int(sd["input.input"].shape[1])
    # channels per resolution from the second conv of each block
    got = {}
    for i in range(3, log_size + 1):
        key = f"convs.{2 * (i - 3) + 1}.conv.weight"
        if key in sd:
            got[2 ** i] = int(sd[key].shape[1])
    cm = 2
    for cand in (2, 1, 4, 8, 3, 6):
        table = _channel_table(cand, max_channels, log_size)
        if all(table[r] == c for r, c in got.items()):
            cm = cand
            break
    return {"size": 2 ** log_size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": cm,
            "max_channels": max_channels}


def load_generator(path: str | os.PathLike, *, size: int | None = None, channel_multiplier: int | None = None,
                   style_dim: int | None = None, n_mlp: int | None = None, lr_mlp: float = 0.01,
                   max_channels: int | None = None, device: str | torch.device | None = None,
                   dtype: torch.dtype | None = None, allow_pickle: bool = False
                   ) -> tuple[Generator, torch.Tensor | None]:
    """Load a StyleGAN2 generator from a checkpoint file, strictly.

    Accepted layouts (read with :func:`vidinv.io.checkpoints.read_checkpoint`):

    * pSp (``psp_ffhq_encode.pt`` and other pSp/e4e files): ``{"state_dict": {"decoder.<key>": ...,
      "encoder.<key>": ...}, "latent_avg": (18, 512) or (512,), "opts": {...}}``.
    * rosinality (``stylegan2-ffhq-config-f.pt``): ``{"g_ema": state_dict, "g": ..., "d": ...,
      "latent_avg": (512,)}``; ``g_ema`` is used.
    * a plain generator state_dict (keys ``style.1.weight``, ``input.input``, ``conv1.conv.weight``,
      ..., ``noises.noise_0``, ...), or any dict with top-level ``decoder.*`` keys.

    Configuration: a pSp-layout file is held to the decoder pSp builds from its ``opts``
    (``Generator(opts['output_size'] (default 1024), 512, 8, channel_multiplier=2)``,
    :data:`OFFICIAL_PSP_DECODER`), or, when vidinv wrote it, to the decoder its vidinv record declares
    (``opts['vidinv_config']['architecture']['decoder']``); nothing is sized from the tensors, so a file
    with keys removed (e.g. the last mapping layer ``style.8.*``) fails. Rosinality and plain files
    record no configuration (rosinality's ``train.py`` takes it on the command line): it is inferred from
    the keys and shapes (size from the number of ``to_rgbs.*`` entries, style_dim and n_mlp from the
    mapping layers, max_channels from ``input.input``, the channel multiplier from the per-resolution
    channel counts). Arguments given here override either. ``lr_mlp`` is not stored in the files (0.01
    for all official ones). Every key, buffers included (FIR kernels, constant noise maps), must match:
    a truncated file or one from another model raises
    :class:`vidinv.io.checkpoints.CheckpointMismatchError` naming the file and the keys.

    Args:
        path: the checkpoint file.
        size, channel_multiplier, style_dim, n_mlp, max_channels: override the configuration.
        lr_mlp: mapping-network learning-rate multiplier.
        device, dtype: where to put the generator (default: CPU, the file's float32).
        allow_pickle: passed to :func:`read_checkpoint` (only for trusted files).

    Returns:
        ``(G, latent_avg)``: the generator in eval mode, and the file's ``latent_avg`` tensor as stored
        ((18, 512) or (512,), float32, CPU) or None when the file has none.

    Raises:
        vidinv.io.checkpoints.CheckpointError: unreadable file, no generator in it, or a bad vidinv record.
        vidinv.io.checkpoints.CheckpointMismatchError: keys or shapes do not match the configuration.
    """
    source = str(path)
    ckpt = read_checkpoint(path, allow_pickle=allow_pickle)
    sd, latent_avg, arch = _generator_state_dict(ckpt, source)
    cfg: dict[str, Any] = dict(arch) if arch is not None else infer_generator_config(sd, source)
    cfg.setdefault("lr_mlp", lr_mlp)
    for name, val in (("size", size), ("channel_multiplier", channel_multiplier), ("style_dim", style_dim),
                      ("n_mlp", n_mlp), ("max_channels", max_channels)):
        if val is not None:
            cfg[name] = int(val)
    if lr_mlp != 0.01:
        cfg["lr_mlp"] = float(lr_mlp)
    G = generator_from_architecture(cfg, source)
    load_strict(G, sd, source, f"StyleGAN2 generator ({G.size}x{G.size})")
    G.eval()
    if device is not None or dtype is not None:
        G.to(device=device, dtype=dtype)
    return G, latent_avg
