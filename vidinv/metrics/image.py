"""Full-reference image quality: MSE, PSNR, SSIM (optionally inside a mask) and LPIPS.

These are the reconstruction numbers of the Feature-Style encoder paper (Yao et al., ECCV 2022,
Tables 1 and 3: SSIM, PSNR, MSE, LPIPS) computed on aligned face crops, and the background
preservation numbers of :mod:`vidinv.report` (PSNR / SSIM outside the blend mask).

Conventions of every function here:

* Images are ``(H, W, C)`` (one image) or ``(N, H, W, C)`` (a batch), numpy arrays or torch tensors,
  channels last, RGB. ``uint8`` images are in [0, 255]; float images are in [0, ``data_range``]
  (default 1.0). Both images of a pair must have the same shape.
* Values are computed on images scaled to [0, 1] (``x / data_range``), so MSE is in units of the
  full range squared and PSNR = 10 log10(1 / MSE) dB; for 8-bit images this is the usual
  10 log10(255^2 / MSE_8bit).
* ``mask`` (optional) is ``(H, W)`` or ``(N, H, W)`` bool (or 0/1): True = pixels to include.
* One image gives a Python ``float``; a batch gives a ``(N,)`` float64 numpy array.
* Computation is float32 (float64 when the inputs are float64) with numpy / OpenCV on the CPU
  (torch tensors are accepted and moved to the CPU); LPIPS runs on its own device.

SSIM is our own implementation of Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE TIP 2004 (their ``ssim_index.m``): 11x11 Gaussian
window with sigma 1.5 (normalised to sum 1), K1 = 0.01, K2 = 0.03, L = 1 (the scaled range), local
statistics over the *valid* window positions only (no padding, so the SSIM map is
``(H - 10) x (W - 10)``), computed per colour channel and averaged over channels (as pytorch-msssim
and scikit-image ``channel_axis``); no automatic downsampling. With a mask, only windows lying entirely
inside the mask are averaged. (scikit-image / torchmetrics / pytorch-msssim are not dependencies.)

LPIPS uses the ``lpips`` package (Zhang et al., CVPR 2018, v0.1 linear heads shipped in the package)
whose backbone needs torchvision's ImageNet weights (``alexnet-owt-7be5be79.pth`` for ``net="alex"``);
:class:`LPIPSMetric` loads them only from the local cache (never downloads) and raises
:class:`LPIPSUnavailable` with the reason when they are absent.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from vidinv.io.checkpoints import read_checkpoint
from vidinv.weights import MissingWeightsError, resolve

__all__ = [
    "mse",
    "psnr",
    "psnr_from_mse",
    "ssim",
    "ssim_map",
    "gaussian_window",
    "LPIPSMetric",
    "LPIPSUnavailable",
    "LPIPS_BACKBONE_FILES",
]

#: SSIM constants (Wang et al. 2004).
SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _to_nhwc(x: Any, data_range: float | None) -> tuple[np.ndarray, bool]:
    """(H,W,C)/(N,H,W,C) numpy/torch -> (N,H,W,C) float32/float64 numpy in [0,1]; (array, was_batched)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim not in (3, 4):
        raise ValueError(f"images must be (H, W, C) or (N, H, W, C); got shape {a.shape}")
    batched = a.ndim == 4
    if not batched:
        a = a[None]
    if a.dtype == np.uint8:
        rng = 255.0 if data_range is None else float(data_range)
        a = a.astype(np.float32) / np.float32(rng)
    elif np.issubdtype(a.dtype, np.floating):
        rng = 1.0 if data_range is None else float(data_range)
        a = a.astype(np.float64 if a.dtype == np.float64 else np.float32) / rng
    else:
        raise ValueError(f"images must be uint8 or float; got {a.dtype}")
    return a, batched


def _pair(x, y, data_range):
    a, batched = _to_nhwc(x, data_range)
    b, batched_b = _to_nhwc(y, data_range)
    if a.shape != b.shape or batched != batched_b:
        raise ValueError(f"image shapes differ: {tuple(np.shape(x))} vs {tuple(np.shape(y))}")
    dtype = np.float64 if np.float64 in (a.dtype, b.dtype) else np.float32
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False), batched


def _mask_array(mask, n: int, h: int, w: int) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask).astype(bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, (n, h, w))
    if m.shape != (n, h, w):
        raise ValueError(f"mask must be (H, W) or (N, H, W) = ({n}, {h}, {w}); got {m.shape}")
    return m


def _out(v: np.ndarray, batched: bool):
    arr = np.asarray(v, dtype=np.float64)
    return arr if batched else float(arr[0])


def mse(x, y, mask=None, data_range: float | None = None):
    """Mean squared error between two images scaled to [0, 1].

    Args:
        x, y: images (see the module conventions), same shape.
        mask: optional ``(H, W)`` / ``(N, H, W)`` bool, pixels to average over (all channels).
        data_range: value of full intensity (default 255 for uint8, 1.0 for float).

    Returns:
        MSE in [0, 1] (float, or ``(N,)`` array for a batch); ``nan`` where the mask is empty.

    Raises:
        ValueError: shapes differ or are not images.
    """
    xa = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    ya = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if xa.dtype == np.uint8 and ya.dtype == np.uint8 and xa.shape == ya.shape and xa.ndim in (3, 4):
        # exact integer path: squared 8-bit differences, scaled once
        batched = xa.ndim == 4
        xi = (xa if batched else xa[None]).astype(np.int32)
        d = (xi - (ya if batched else ya[None])) ** 2
        rng = 255.0 if data_range is None else float(data_range)
        scale = 1.0 / (rng * rng)
    else:
        a, b, batched = _pair(xa, ya, data_range)
        d = (a.astype(np.float64) - b) ** 2
        scale = 1.0
    n, h, w, c = d.shape
    m = _mask_array(mask, n, h, w)
    if m is None:
        return _out(d.reshape(n, -1).sum(axis=1, dtype=np.float64) * scale / (h * w * c), batched)
    num = (d.sum(axis=3, dtype=np.float64) * m).sum(axis=(1, 2)) * scale
    den = m.sum(axis=(1, 2)).astype(np.float64) * c
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    return _out(val, batched)


def psnr_from_mse(value, data_range: float = 1.0):
    """PSNR in dB from an MSE on the scale of ``data_range``: ``10 log10(data_range^2 / mse)``.

    ``mse == 0`` gives ``inf`` (identical images); ``nan`` stays ``nan``. Accepts a float or an array.
    """
    v = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(float(data_range) ** 2 / v)
    out = np.where(v == 0, np.inf, out)
    return float(out) if out.ndim == 0 else out


def psnr(x, y, mask=None, data_range: float | None = None):
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` on images scaled to [0, 1].

    Identical images (MSE 0) give ``inf`` (``math.inf``), which is the correct value and is reported
    as such, never clipped. Arguments as :func:`mse`.

    Returns:
        dB (float, or ``(N,)`` array); ``nan`` where the mask is empty.
    """
    return psnr_from_mse(mse(x, y, mask=mask, data_range=data_range), 1.0)


def gaussian_window(size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """1-D Gaussian of ``size`` taps (centre at (size-1)/2), float64, normalised to sum 1; the SSIM window
    is its outer product (MATLAB ``fspecial('gaussian', size, sigma)``)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable filtering of one (H, W) or (H, W, C) image with the 1-D kernel g, valid part only
    ((H - k + 1, W - k + 1[, C])): the border mode does not matter there."""
    import cv2

    k = g.size
    r0, r1 = (k - 1) // 2, k - 1 - (k - 1) // 2
    kern = g.astype(img.dtype)
    out = cv2.sepFilter2D(img, -1, kern, kern, borderType=cv2.BORDER_REFLECT_101)
    return out[r0:out.shape[0] - r1, r0:out.shape[1] - r1]


def ssim_map(x, y, data_range: float | None = None, win_size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA,
             k1: float = SSIM_K1, k2: float = SSIM_K2) -> np.ndarray:
    """SSIM map per channel (Wang et al. 2004, eq. 13), valid window positions only.

    Args:
        x, y: images (module conventions), at least ``win_size`` pixels high and wide.
        data_range, win_size, sigma, k1, k2: see :func:`ssim`.

    Returns:
        ``(N, H - win_size + 1, W - win_size + 1, C)`` array (float32, or float64 for float64 inputs);
        values in [-1, 1], 1 where the two windows are identical.
    """
    a, b, _ = _pair(x, y, data_range)
    n, h, w, c = a.shape
    if h < win_size or w < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels; got {(h, w)}")
    g = gaussian_window(win_size, sigma)
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2
    out = np.empty((n, h - win_size + 1, w - win_size + 1, c), dtype=a.dtype)
    for i in range(n):
        ai, bi = np.ascontiguousarray(a[i]), np.ascontiguousarray(b[i])
        mu_a, mu_b = _filter_valid(ai, g), _filter_valid(bi, g)
        s_aa = _filter_valid(ai * ai, g) - mu_a * mu_a
        s_bb = _filter_valid(bi * bi, g) - mu_b * mu_b
        s_ab = _filter_valid(ai * bi, g) - mu_a * mu_b
        num = (2.0 * mu_a * mu_b + c1) * (2.0 * s_ab + c2)
        den = (mu_a * mu_a + mu_b * mu_b + c1) * (s_aa + s_bb + c2)
        out[i] = (num / den).reshape(out.shape[1:])
    return out


def ssim(x, y, mask=None, data_range: float | None = None, win_size: int = SSIM_WIN_SIZE,
         sigma: float = SSIM_SIGMA, k1: float = SSIM_K1, k2: float = SSIM_K2):
    """Mean structural similarity (Wang et al. 2004) of two images scaled to [0, 1].

    The mean of :func:`ssim_map` over channels and window positions; with ``mask``, over the window
    positions whose whole ``win_size`` x ``win_size`` window lies inside the mask.

    Args:
        x, y: images (module conventions), same shape, at least ``win_size`` pixels each side.
        mask: optional ``(H, W)`` / ``(N, H, W)`` bool of pixels to use.
        data_range: full intensity (default 255 for uint8, 1.0 for float).
        win_size, sigma: Gaussian window (default 11, 1.5).
        k1, k2: stabilising constants (default 0.01, 0.03); C_i = (K_i * 1)^2 on the [0, 1] scale.

    Returns:
        SSIM in [-1, 1] (1 for identical images): float, or ``(N,)`` array; ``nan`` where no window
        fits inside the mask.
    """
    smap = ssim_map(x, y, data_range=data_range, win_size=win_size, sigma=sigma, k1=k1, k2=k2)
    n, h, w, _ = smap.shape
    batched = np.ndim(x) == 4
    per_pos = smap.mean(axis=3, dtype=np.float64)  # (N, h, w) channel mean
    if mask is None:
        return _out(per_pos.mean(axis=(1, 2)), batched)
    m = _mask_array(mask, n, h + win_size - 1, w + win_size - 1)
    assert m is not None  # mask is not None here
    box = np.ones(win_size, dtype=np.float32)
    vals = np.empty(n)
    for i in range(n):
        cnt_img = _filter_valid(np.ascontiguousarray(m[i], dtype=np.float32), box)
        inside = cnt_img >= (win_size * win_size) - 0.5  # all window pixels in the mask
        cnt = int(inside.sum())
        vals[i] = per_pos[i][inside].mean() if cnt else np.nan
    return _out(vals, batched)


# --------------------------------------------------------------------------------------------------
# LPIPS

#: torchvision ImageNet weight file (registry name, see ``vidinv weights list``) of each LPIPS backbone.
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here (backbone weights not cached, or the package is missing); the message
    says why and how to fix it."""


class LPIPSMetric:
    """LPIPS distance (Zhang et al., CVPR 2018) through the ``lpips`` package, without downloads.

    The network is ``lpips.LPIPS(net=net, version="0.1")`` with its linear heads from the package
    (``lpips/weights/v0.1/<net>.pth``) and the torchvision ImageNet backbone loaded from the local file
    (registry name :data:`LPIPS_BACKBONE_FILES`; found by :func:`vidinv.weights.resolve` in
    ``weights_dir`` or torch.hub's checkpoints folder, or given as ``backbone_path``). The Feature-Style
    code uses ``net="alex"``.

    Args:
        net: ``"alex"`` (default) or ``"vgg"``.
        weights_dir: folder of files placed by hand, searched first.
        backbone_path: explicit path of the torchvision backbone state_dict (skips the lookup and its
            checksum check).
        device: torch device (default CPU).

    Call: ``metric(x, y)`` with images (module conventions: uint8 [0, 255] or float [0, 1], ``(H, W, 3)``
    or ``(N, H, W, 3)``) -> LPIPS distance, float or ``(N,)`` array, >= 0 (0 for identical images;
    typically 0.05-0.5 for reconstructions). Images are mapped to [-1, 1] as the package expects.

    Raises:
        LPIPSUnavailable: the backbone weights are not present (message names the file, URL and path),
            or ``lpips`` is not installed, or ``net`` is unknown.
    """

    def __init__(self, net: str = "alex", weights_dir: str | os.PathLike | None = None,
                 backbone_path: str | os.PathLike | None = None, device: torch.device | str | None = None):
        if net not in LPIPS_BACKBONE_FILES:
            raise LPIPSUnavailable(f"LPIPS net must be one of {sorted(LPIPS_BACKBONE_FILES)}; got {net!r}")
        self.net = net
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        fname = LPIPS_BACKBONE_FILES[net]
        if backbone_path is None:

            try:
                backbone_path = resolve([fname], weights_dir=weights_dir, fetch=False)[fname]
            except MissingWeightsError as e:
                where = e.missing[0].path if e.missing else "torch.hub's checkpoints folder"
                raise LPIPSUnavailable(f"LPIPS ({net}) needs the torchvision backbone weights {fname}, which are not "
                                       f"cached; nothing is downloaded (put the file at {where})\n{e}") from e
        self.backbone_path = str(backbone_path)
        try:
            import lpips
        except ImportError as e:  # pragma: no cover - lpips is a dependency
            raise LPIPSUnavailable("LPIPS needs the 'lpips' package (pip install lpips)") from e
        import warnings


        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notice for pretrained=False
            model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        sd = read_checkpoint(self.backbone_path)
        self._load_backbone(model, sd)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lpips_version = getattr(lpips, "__version__", "unknown")

    @staticmethod
    def _load_backbone(model, sd: dict) -> None:
        """Copy torchvision ``features.<i>.*`` tensors into the package's ``slice<k>.<i>.*`` modules
        (strict: every backbone tensor of the slices must be found, with its shape)."""
        missing, wrong = [], []
        with torch.no_grad():
            k = 1
            while hasattr(model.net, f"slice{k}"):
                sl = getattr(model.net, f"slice{k}")
                for name, module in sl.named_children():
                    for pname, p in module.state_dict().items():
                        key = f"features.{name}.{pname}"
                        if key not in sd:
                            missing.append(key)
                        elif tuple(sd[key].shape) != tuple(p.shape):
                            wrong.append(f"{key} {tuple(sd[key].shape)} != {tuple(p.shape)}")
                        else:
                            p.copy_(sd[key])
                k += 1
        if missing or wrong:
            raise LPIPSUnavailable(f"LPIPS backbone file does not match torchvision's layout: missing {missing[:5]}, "
                                   f"shape mismatches {wrong[:5]}")

    def describe(self) -> dict:
        """Identifiers for reports: package, version, net and backbone file."""
        return {"name": f"lpips_{self.net}", "package": "lpips", "package_version": self.lpips_version,
                "lpips_version": "0.1", "net": self.net, "backbone_file": self.backbone_path,
                "input": "aligned crops mapped to [-1, 1]"}

    @torch.no_grad()
    def __call__(self, x, y):
        a, b, batched = _pair(x, y, None)

        def prep(v: np.ndarray) -> torch.Tensor:  # (N, H, W, C) [0, 1] -> (N, C, H, W) [-1, 1]
            t = torch.from_numpy(np.ascontiguousarray(v)).to(self.device, torch.float32)
            return t.permute(0, 3, 1, 2) * 2.0 - 1.0

        d = self.model(prep(a), prep(b)).reshape(a.shape[0])
        return _out(d.cpu().numpy(), batched)

