"""Blend masks and compositing of an edited aligned face back into its frame.

* :func:`mask_from_parsing` — face mask from a BiSeNet face-parsing label map (19 CelebAMask-HQ
  classes, the official ``79999_iter.pth`` model used by the Feature-Style encoder).
* :func:`mask_from_landmarks` — face mask from 68 landmarks (convex hull raised to the forehead),
  for when no parsing network is available.
* :func:`feather_mask` — dilation then Gaussian feathering with a hard support bound.
* :func:`frame_alpha` — the blend weights :func:`composite` uses, on the whole frame.
* :func:`composite` — inverse-warp the crop and its mask into the frame (on the quad's bounding
  box only) and alpha-blend, or Poisson-blend (``cv2.seamlessClone``) then alpha-blend.

Guarantee of :func:`composite`: every pixel where the warped mask is exactly 0 (all pixels
outside the warped mask's support, in particular everything outside the quad's square) is copied
byte for byte from the input frame; such pixels are never converted to float and back.

All masks are float32 in [0, 1], 1 = take the edited face. Images are uint8 RGB unless stated.
"""
from __future__ import annotations

import numpy as np

from .align import unalign_roi

__all__ = [
    "NonFiniteFaceError",
    "CELEBAMASK_HQ_CLASSES",
    "FACE_CLASSES",
    "FS_MASK_CLASSES",
    "mask_from_parsing",
    "mask_from_landmarks",
    "feather_mask",
    "composite",
    "frame_alpha",
]

#: The 19 labels of the face-parsing BiSeNet (CelebAMask-HQ order; index = label value).
CELEBAMASK_HQ_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear",
                         "r_ear", "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth",
                         "hair", "hat")

#: Our face mask: skin, brows, eyes, eyeglasses, nose, mouth, lips. Excluded: background, ears and
#: earrings (often cut by the FFHQ crop and poorly reconstructed), neck and necklace, cloth, hair,
#: hat. Eyeglasses are included because they sit on the face (and an eyeglasses edit changes them).
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)

#: The set used by the Feature-Style reference (``utils/video_utils.generate_mask``): ours + earrings (9).
FS_MASK_CLASSES = (1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13)

class NonFiniteFaceError(ValueError):
    """An edited face (or its mask) holds NaN or infinite values: it would be pasted as a black patch
    (NaN cast to uint8 is 0), so :func:`composite` refuses it. ``vidinv edit`` names the frame and track."""


_EPS = 1.0 / 512.0  # feathered values below this (< half a uint8 level at full contrast) become 0


def mask_from_parsing(labels, classes=FACE_CLASSES) -> np.ndarray:
    """Binary face mask from a face-parsing label map.

    Args:
        labels: (H, W) integer label map (BiSeNet argmax, values 0..18, :data:`CELEBAMASK_HQ_CLASSES`).
        classes: label values that count as face (default :data:`FACE_CLASSES`).

    Returns:
        (H, W) float32 mask, 1.0 on the listed classes and 0.0 elsewhere.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an (H, W) integer array; got {lab.shape} {lab.dtype}")
    return np.isin(lab, np.asarray(classes, dtype=lab.dtype)).astype(np.float32)


def mask_from_landmarks(landmarks_aligned, size, forehead: float = 0.4) -> np.ndarray:
    """Filled convex hull of the 68 landmarks extended to the forehead.

    The brow points (17..26) are copied upward by ``forehead`` x H, where H = |B - L8| is the
    distance from the chin tip (point 8) to the brow centre B (mean of points 17..26), along the
    unit vector from the chin to B. The filled hull of the 68 points plus these 10 forehead points
    (sub-pixel polygon filling) is the mask. With the default 0.4 the forehead reaches about the
    hairline of an FFHQ-aligned face.

    Args:
        landmarks_aligned: (68, 2) landmarks in the crop's pixel coordinates (x = column, y = row),
            e.g. ``(crop_matrix(quad, S) @ [lm, 1].T)[:2].T``.
        size: S (square) or (H, W) of the mask.
        forehead: forehead extension as a fraction of the chin-to-brow height (>= 0).

    Returns:
        (H, W) float32 mask in {0, 1}.
    """
    import cv2

    lm = np.asarray(landmarks_aligned, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks_aligned must be finite (68, 2); got {lm.shape}")
    if forehead < 0:
        raise ValueError(f"forehead must be >= 0; got {forehead}")
    h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
    brows = lm[17:27]
    up = brows.mean(axis=0) - lm[8]
    height = float(np.hypot(*up))
    pts = lm
    if height > 0 and forehead > 0:
        pts = np.concatenate([lm, brows + up / height * (forehead * height)], axis=0)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    shift = 4
    poly = np.rint(hull.astype(np.float64) * (1 << shift)).astype(np.int32)
    out = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(out, poly, 1, lineType=cv2.LINE_8, shift=shift)
    return out.astype(np.float32)


def _as_float_mask(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W); got {m.shape}")
    if m.dtype == np.bool_:
        return m.astype(np.float32)
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def _disc(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def feather_mask(mask, dilate_px: int, feather_px: int) -> np.ndarray:
    """Dilate a mask, then feather its edge with a truncated Gaussian.

    1. Dilation by a disc of radius ``dilate_px`` (binary masks: Euclidean distance to the support
       <= dilate_px, via an exact distance transform; soft masks: grey dilation, elliptic kernel).
    2. Gaussian blur with sigma = feather_px / 3 and a kernel truncated at radius ``feather_px``
       (zero border: the mask fades out at the image edge).
    3. Support bound: values at Euclidean distance > ``dilate_px + feather_px`` from the input's
       support, and values below 1/512, are set to exactly 0.

    Args:
        mask: (H, W) float in [0, 1], bool, or uint8 (0..255).
        dilate_px, feather_px: non-negative integers (pixels).

    Returns:
        (H, W) float32 in [0, 1]; exactly 0 beyond ``dilate_px + feather_px`` from the input's support.
    """
    import cv2

    d, f = int(dilate_px), int(feather_px)
    if d < 0 or f < 0:
        raise ValueError(f"dilate_px and feather_px must be >= 0; got {dilate_px}, {feather_px}")
    m = _as_float_mask(mask)
    if not (m > 0).any():
        return np.zeros_like(m)
    # Euclidean distance of every pixel to the input's support (0 on the support).
    dist = cv2.distanceTransform((m <= 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if d > 0:
        if np.all((m == 0) | (m == 1)):
            m = (dist <= d).astype(np.float32)  # binary mask: disc dilation via the distance map
        else:
            m = cv2.dilate(m, _disc(d), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if f > 0:
        m = cv2.GaussianBlur(m, (2 * f + 1, 2 * f + 1), sigmaX=f / 3.0, sigmaY=f / 3.0,
                             borderType=cv2.BORDER_CONSTANT)
    if d + f > 0:
        m = np.where(dist <= d + f, m, 0.0)
    m = np.where(m < _EPS, 0.0, m)
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def _seamless_roi(src: np.ndarray, dst: np.ndarray, support: np.ndarray) -> np.ndarray:
    """cv2.seamlessClone of src into dst (same size) where support > 0, without any shift.

    OpenCV cannot clone supports narrower than 3 px; for those src is returned unchanged (the
    composite is then a plain alpha blend)."""
    import cv2

    m = 2  # OpenCV clears the mask's 1-pixel frame; keep the support off the border
    src_p = cv2.copyMakeBorder(src, m, m, m, m, cv2.BORDER_REPLICATE)
    dst_p = cv2.copyMakeBorder(dst, m, m, m, m, cv2.BORDER_REFLECT_101)
    sup_p = cv2.copyMakeBorder(support, m, m, m, m, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(sup_p)
    if w < 3 or h < 3:
        return src.copy()
    center = (x + w // 2, y + h // 2)
    out = cv2.seamlessClone(src_p, dst_p, sup_p, center, cv2.NORMAL_CLONE)
    return out[m:-m, m:-m]


def _roi_alpha(mask: np.ndarray, quad, hw, antialias: bool):
    """Blend weights on the quad's bounding box: the mask warped into the frame (zero border), in
    [0, 1], 0 where the crop does not cover the pixel; and the box (x0, y0, x1, y1)."""
    alpha, coverage, box = unalign_roi(mask, quad, hw, antialias=antialias, border_mode="constant")
    alpha = np.clip(alpha, 0.0, 1.0)
    alpha[coverage <= 0] = 0.0
    return alpha, box


def frame_alpha(mask_aligned, quad, frame_hw, antialias: bool = True) -> np.ndarray:
    """The blend weights :func:`composite` uses, on the whole frame.

    Args:
        mask_aligned: (S, S) blend mask in the crop's coordinates (as for :func:`composite`).
        quad: (4, 2) the crop's quad (frame index coordinates).
        frame_hw: (H, W) of the frame.
        antialias: as for :func:`composite`.

    Returns:
        (H, W) float32 alpha in [0, 1]; :func:`composite` leaves every pixel where it is 0 byte-identical
        to the input frame (e.g. to measure what an edit changed outside its mask).
    """
    hw = (int(frame_hw[0]), int(frame_hw[1]))
    out = np.zeros(hw, np.float32)
    alpha, (x0, y0, x1, y1) = _roi_alpha(_as_float_mask(mask_aligned), quad, hw, antialias)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = alpha
    return out


def composite(frame, crop, quad, mask_aligned, mode: str = "alpha", antialias: bool = True) -> np.ndarray:
    """Paste an (edited) aligned crop back into its frame.

    The crop and the mask are warped into the frame with :func:`vidinv.face.align.unalign_roi`
    (exact inverse of the alignment, bilinear, anti-aliased when the crop is larger than the face;
    the mask uses a zero border so it vanishes outside the quad's square). Inside the quad's
    bounding box, with alpha = warped mask:

    * ``"alpha"``: out = rint(frame (1 - alpha) + crop alpha).
    * ``"poisson"``: the crop is first Poisson-blended (``cv2.seamlessClone``, NORMAL_CLONE) into the
      frame on the support alpha > 0 (gradient-domain colour matching), then alpha-blended as above
      (supports under 3 px wide fall back to plain alpha blending).

    Pixels where alpha == 0 are copied byte for byte from ``frame``.

    Args:
        frame: (H, W, 3) uint8 RGB frame (not modified).
        crop: (S, S, 3) aligned crop, uint8 or float in [0, 255] (convert a generator's [-1, 1]
            output with (x + 1) * 127.5 first).
        quad: (4, 2) the quad the crop was aligned with (frame index coordinates).
        mask_aligned: (S, S) blend mask in the crop's coordinates, float in [0, 1] (e.g. from
            :func:`feather_mask`); bool / uint8 0..255 accepted.
        mode: ``"alpha"`` or ``"poisson"``.
        antialias: anti-alias the inverse warp when the crop is larger than the face in the frame.

    Returns:
        (H, W, 3) uint8 new frame.

    Raises:
        NonFiniteFaceError: ``crop`` or ``mask_aligned`` holds NaN or infinite values (e.g. a generator
            that overflowed): refused instead of pasting a black patch.
        ValueError: bad shapes, dtypes or mode.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) uint8; got {frame.shape} {frame.dtype}")
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"crop must be (S, S, 3); got {crop.shape}")
    mask = _as_float_mask(mask_aligned)
    if mask.shape != crop.shape[:2]:
        raise ValueError(f"mask_aligned {mask.shape} must match the crop {crop.shape[:2]}")
    if crop.dtype.kind == "f" and not np.isfinite(crop).all():
        bad = int(np.count_nonzero(~np.isfinite(crop)))
        raise NonFiniteFaceError(f"the edited face holds {bad} NaN or infinite value(s) of {crop.size}; it would be "
                                 "pasted as a black patch")
    if not np.isfinite(mask).all():
        raise NonFiniteFaceError("the blend mask holds NaN or infinite values")
    if mode not in ("alpha", "poisson"):
        raise ValueError(f"mode must be 'alpha' or 'poisson'; got {mode!r}")
    hw = frame.shape[:2]
    warped, _, (x0, y0, x1, y1) = unalign_roi(crop, quad, hw, antialias=antialias)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    alpha, _ = _roi_alpha(mask, quad, hw, antialias)
    sel = alpha > 0
    if not sel.any():
        return out
    roi = frame[y0:y1, x0:x1]
    src = warped
    if mode == "poisson":
        src_u8 = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
        src = _seamless_roi(src_u8, np.ascontiguousarray(roi), sel.astype(np.uint8) * 255).astype(np.float32)
    a = alpha[..., None]
    blended = roi.astype(np.float32) * (1.0 - a) + src.astype(np.float32) * a
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out_roi = out[y0:y1, x0:x1]
    out_roi[sel] = blended[sel]
    return out
