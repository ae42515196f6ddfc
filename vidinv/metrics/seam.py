"""The seam metric: how visibly a pasted face departs from the frame around the blend-mask boundary.

Where a generated face is blended into a frame, a seam shows when, near the edge of the blend mask, the
pasted pixels differ from the frame's own pixels (colour) or its texture (gradients). Stitching tuning
(Tzaban et al., "Stitch it in Time", SIGGRAPH Asia 2022, sec. 3.4; :mod:`vidinv.pipeline.tuning`) tunes the
generator so that in a band just outside the face region its output equals the original frame; this module
measures what that tuning aims at.

Definition (both images in the same coordinates, e.g. FFHQ-aligned crops of the source and of the output
cut with the *source's* quad, as ``vidinv report`` does):

* ``inner``: the face region, (H, W) bool (the landmark hull of :func:`vidinv.face.blend.mask_from_landmarks`,
  or a parsing mask);
* the **seam band** B = ``dilate(inner, r) & ~inner`` (Euclidean disc of radius ``r`` pixels,
  :func:`seam_band`): the ring just outside the face in which a blend mask fades out. ``vidinv edit``'s
  default mask reaches 0.05 of the crop side beyond the hull (dilation 0.01 + feather 0.04), a stitching-tuned
  one ``--outer-mask-dilation`` (50 px at 1024 = 0.049); :data:`SEAM_WIDTH` = 0.1 of the crop side covers both;
* D = output - source, float, in 8-bit levels (0..255 scale), per colour channel;
* **colour** = mean over the pixels of B and the 3 channels of ``|D|``;
* **gradient** = mean over the pixels of B and the 3 channels of ``(|D(x+1, y) - D(x, y)| + |D(x, y+1) -
  D(x, y)|) / 2`` (forward differences; 0 beyond the last column / row), i.e. the difference of the two
  images' gradients.

Both are 0 when the output equals the source in the band (a seamless paste, whatever happens inside the
face), and grow with a colour step or a texture change where the face meets the frame. Units: 8-bit levels
(colour) and 8-bit levels per pixel (gradient) at the images' resolution (256 in the report).
"""
from __future__ import annotations

import numpy as np

__all__ = ["SEAM_WIDTH", "seam_band", "seam_metrics"]

#: Width of the seam band as a fraction of the crop side (0.1: 26 px at 256).
SEAM_WIDTH = 0.1


def seam_band(inner, width_px: int) -> np.ndarray:
    """The ring of pixels within ``width_px`` (Euclidean distance, exact distance transform) outside ``inner``.

    Args:
        inner: (H, W) bool (or 0/1) face region.
        width_px: ring width in pixels (>= 1).

    Returns:
        (H, W) bool; empty when ``inner`` is empty.

    Raises:
        ValueError: ``width_px`` < 1 or ``inner`` not 2-D.
    """
    import cv2

    m = np.asarray(inner).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"inner must be an (H, W) mask; got shape {m.shape}")
    if int(width_px) < 1:
        raise ValueError(f"width_px must be >= 1; got {width_px}")
    if not m.any():
        return np.zeros_like(m)
    dist = cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (dist > 0) & (dist <= float(width_px))


def seam_metrics(output, source, band) -> dict[str, float]:
    """Colour and gradient difference of ``output`` against ``source`` in the seam ``band`` (module doc).

    Args:
        output, source: (H, W, 3) uint8 RGB images (or float on the 0..255 scale), same shape.
        band: (H, W) bool, e.g. :func:`seam_band` of the face region.

    Returns:
        ``{"colour": float, "gradient": float, "pixels": int}`` (8-bit levels; NaN with an empty band).

    Raises:
        ValueError: shapes differ or are not (H, W, 3) / (H, W).
    """
    o = np.asarray(output, dtype=np.float32)
    s = np.asarray(source, dtype=np.float32)
    b = np.asarray(band).astype(bool)
    if o.shape != s.shape or o.ndim != 3 or b.shape != o.shape[:2]:
        raise ValueError(f"seam_metrics needs two (H, W, C) images and an (H, W) band; got {o.shape}, {s.shape}, "
                         f"{b.shape}")
    n = int(b.sum())
    if n == 0:
        return {"colour": float("nan"), "gradient": float("nan"), "pixels": 0}
    d = o - s
    gx = np.zeros_like(d)
    gy = np.zeros_like(d)
    gx[:, :-1] = np.abs(d[:, 1:] - d[:, :-1])
    gy[:-1] = np.abs(d[1:] - d[:-1])
    colour = float(np.abs(d)[b].mean(dtype=np.float64))
    grad = float(((gx + gy) * 0.5)[b].mean(dtype=np.float64))
    return {"colour": colour, "gradient": grad, "pixels": n}
