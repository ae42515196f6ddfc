"""Face alignment geometry: landmarks -> oriented square (quad), aligned crop, inverse warp.

Conventions (all functions): frame pixel coordinates, float64, x = column, y = row. A pixel's
*index* coordinate is its integer (column, row); its *continuous* coordinate is index + 0.5, so the
frame area spans [0, W] x [0, H] in continuous coordinates. A quad is (4, 2): the frame positions
(index coordinates, as the FFHQ code stores them) of the aligned crop's top-left, bottom-left,
bottom-right and top-right corners. Like PIL's QUAD transform in the FFHQ recipe, the crop square of
side S spans continuous crop coordinates [0, S]^2 and its corners (0,0), (0,S), (S,S), (S,0) sit at
the continuous frame points ``quad + 0.5``.

Sources: the FFHQ alignment recipe (Karras et al., "A Style-Based Generator Architecture for GANs",
CVPR 2019, ffhq-dataset ``recreate_aligned_images``) as run by pSp (Richardson et al., CVPR 2021,
``scripts/align_all_parallel.py``); STIT (Tzaban et al., SIGGRAPH Asia 2022, ``utils/alignment.py``:
``compute_transform``, ``calc_alignment_coefficients``); Feature-Style encoder video variant (Yao et
al., ECCV 2022, ``utils/video_utils.py``: ``align_frames``). The formulas are written out in
``../shared/parity/ffhq_align/README.md``; the code here is our own.

Two crop paths:

* :func:`ffhq_crop` reproduces the pSp FFHQ recipe exactly (shrink with PIL LANCZOS, crop, reflect
  padding with blur and median fill, PIL QUAD bilinear sampling with truncation to uint8). Slow
  (scipy blur of the padded image); use it for still images and parity.
* :func:`align_crop` is the fast video path: one affine warp of a region of interest with OpenCV,
  Gaussian anti-aliasing when the face is larger than the crop, and plain reflect padding
  (numpy ``"reflect"`` = ``cv2.BORDER_REFLECT_101``) where the quad leaves the frame. Differences
  from the recipe are listed in its docstring.

:func:`unalign` / :func:`unalign_roi` apply the exact inverse of :func:`align_crop`'s transform to
paste a crop back, working only on the bounding box of the quad.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "VARIANTS",
    "AA_SIGMA_FACTOR",
    "face_transform",
    "quad_from_landmarks",
    "quad_size",
    "ffhq_crop",
    "crop_matrix",
    "crop_to_frame_matrix",
    "inverse_coefficients",
    "apply_perspective",
    "align_crop",
    "unalign",
    "unalign_roi",
    "reflect101_index",
]

#: Eye-centre rules for the quad: ``"ffhq"`` = mean of the 6 points of each eye (the official FFHQ
#: recipe, used to build the data the official StyleGAN2 FFHQ generator and the pSp / e4e /
#: Feature-Style encoders were trained on); ``"fs_video"`` = midpoint of the two eye corners
#: (Feature-Style ``align_frames``).
VARIANTS = ("ffhq", "fs_video")

#: Anti-aliasing pre-blur of :func:`align_crop` / :func:`unalign`: when the source is downscaled by
#: a factor s > 1 (source pixels per destination pixel), it is blurred with a Gaussian of
#: sigma = AA_SIGMA_FACTOR * sqrt(s^2 - 1) source pixels before bilinear sampling. The value was
#: chosen by comparing with the supersampled FFHQ recipe ``ffhq_crop(..., transform_size=4 * output_size)``
#: on the six ffhq_align frames (mean PSNR 46.0 dB; 0.25 / 0.45 give 44.8 / 44.4 dB).
AA_SIGMA_FACTOR = 0.35


# ----------------------------------------------------------------------------------------------
# Quad from landmarks
# ----------------------------------------------------------------------------------------------

def _as_landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must have shape (..., 68, 2) (dlib 68-point layout, x = column, "
                         f"y = row); got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or inf")
    return lm


def _perp(v: np.ndarray) -> np.ndarray:
    """perp(v) = (-v_y, v_x): v turned by +90 degrees in image coordinates (y down)."""
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def face_transform(landmarks, variant: str = "ffhq", scale: float = 1.0):
    """Centre and half-axes of the oriented crop square (STIT ``compute_transform``).

    Args:
        landmarks: (..., 68, 2) dlib 68-point landmarks in frame pixels (x = column, y = row).
        variant: ``"ffhq"`` (eye centre = mean of the 6 eye points; official FFHQ) or ``"fs_video"``
            (eye centre = midpoint of the eye corners 36/39 and 42/45; Feature-Style video).
        scale: factor on the half-axes (STIT's ``scale``; 1.0 = FFHQ).

    Returns:
        ``(c, x, y)``, each (..., 2) float64: centre ``c = e + 0.1 d_em``, half-width vector
        ``x = u/|u| * max(2|d_ee|, 1.8|d_em|) * scale`` with ``u = d_ee - perp(d_em)``, and
        ``y = perp(x)`` (points down the face). e = eye midpoint, d_ee = right eye - left eye,
        d_em = mouth midpoint (points 48, 54) - e.

    Raises:
        ValueError: bad shape, non-finite landmarks, unknown variant or a degenerate face (|u| = 0).
    """
    lm = _as_landmarks(landmarks)
    if variant == "ffhq":
        eye_l = lm[..., 36:42, :].mean(axis=-2)
        eye_r = lm[..., 42:48, :].mean(axis=-2)
    elif variant == "fs_video":
        eye_l = (lm[..., 36, :] + lm[..., 39, :]) * 0.5
        eye_r = (lm[..., 42, :] + lm[..., 45, :]) * 0.5
    else:
        raise ValueError(f"unknown quad variant {variant!r}; expected one of {VARIANTS}")
    eye = (eye_l + eye_r) * 0.5
    d_ee = eye_r - eye_l
    mouth = (lm[..., 48, :] + lm[..., 54, :]) * 0.5
    d_em = mouth - eye
    u = d_ee - _perp(d_em)
    norm_u = np.hypot(u[..., 0], u[..., 1])
    if np.any(norm_u == 0):
        raise ValueError("degenerate landmarks: eye line and eye-mouth line cancel (|u| = 0)")
    half = np.maximum(np.hypot(d_ee[..., 0], d_ee[..., 1]) * 2.0, np.hypot(d_em[..., 0], d_em[..., 1]) * 1.8)
    x = u / norm_u[..., None] * half[..., None]
    x = x * scale
    y = _perp(x)
    c = eye + d_em * 0.1
    return c, x, y


def quad_from_landmarks(landmarks, variant: str = "ffhq", scale: float = 1.0):
    """Oriented crop square from 68 landmarks (FFHQ recipe, or the Feature-Style video variant).

    Args:
        landmarks: (..., 68, 2) frame pixels, x = column, y = row (any leading batch shape).
        variant: ``"ffhq"`` (default; matches the official generator's training data) or ``"fs_video"``.
        scale: factor on the square's size (1.0 = FFHQ).

    Returns:
        ``(quad, qsize)``: quad (..., 4, 2) float64 = [c-x-y, c-x+y, c+x+y, c+x-y] (crop corners
        top-left, bottom-left, bottom-right, top-right, frame index coordinates); qsize (...,)
        float64 = 2|x|, the side of the square in frame pixels.

    Raises:
        ValueError: see :func:`face_transform`.
    """
    c, x, y = face_transform(landmarks, variant, scale)
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=-2)
    qsize = np.hypot(x[..., 0], x[..., 1]) * 2.0
    return quad, qsize


def quad_size(quad) -> np.ndarray:
    """Side length of a quad: mean of its 4 edge lengths, (..., 4, 2) -> (...,) float64 pixels.

    Equals ``qsize`` (= 2|x|) for the squares of :func:`quad_from_landmarks` and for any linear
    temporal smoothing of them (a weighted mean of squares c +- x +- perp(x) is again such a square).
    """
    q = np.asarray(quad, dtype=np.float64)
    edges = q - np.roll(q, 1, axis=-2)
    return np.hypot(edges[..., 0], edges[..., 1]).mean(axis=-1)


# ----------------------------------------------------------------------------------------------
# Exact pSp FFHQ crop recipe
# ----------------------------------------------------------------------------------------------

def ffhq_crop(frame, quad, qsize, output_size: int = 256, transform_size: int | None = None,
              enable_padding: bool = True, return_info: bool = False):
    """The FFHQ aligned crop exactly as pSp ``align_face`` computes it.

    Steps (``../shared/parity/ffhq_align/README.md`` section 3): shrink by k = floor(qsize/O/2) with
    PIL LANCZOS when k > 1; border b = max(rint(0.1 qsize), 3); crop to the quad's box + b; if the
    quad + b leaves the image by more than b - 4 px: reflect-pad by at least rint(0.3 qsize), blur
    the padding towards a Gaussian (sigma 0.02 qsize) and the per-channel median, round to uint8;
    PIL QUAD transform (bilinear, truncating) to T x T at corners quad + 0.5; LANCZOS resize to O
    when O < T. The padding arithmetic follows the reference's dtypes (float32 image, float64 ramp
    mask), so results are bit-identical to the reference with numpy >= 2.

    Args:
        frame: (H, W, 3) uint8 RGB.
        quad: (4, 2) frame index coordinates (from :func:`quad_from_landmarks`).
        qsize: side of the quad in pixels (the recipe's ``qsize``; drives shrink/border/pad/blur).
        output_size: O, side of the returned crop. pSp: 256; official FFHQ: 1024.
        transform_size: T, side of the QUAD warp (default O). Official FFHQ used T = 4 O
            (supersampled warp then antialiased LANCZOS downsample).
        enable_padding: the recipe's padding branch (pSp: True).
        return_info: also return a dict with ``shrink``, ``crop`` (box in the shrunk image),
            ``pad`` (l, t, r, b) or None, and ``padded`` ((O, O) bool): output pixels whose value
            depends on the padding branch (padded or blurred pixels, or samples outside the image).

    Returns:
        (O, O, 3) uint8 RGB aligned crop, or ``(crop, info)`` with ``return_info``.

    Raises:
        ValueError: frame not (H, W, 3) uint8, or the quad plus its border misses the image (the
            reference fails there too; :func:`align_crop` handles any quad).
    """
    import PIL.Image
    import scipy.ndimage

    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB; got {frame.shape} {frame.dtype}")
    out_size = int(output_size)
    t_size = int(transform_size) if transform_size is not None else out_size
    quad = np.array(quad, dtype=np.float64).reshape(4, 2)
    qsize = float(qsize)
    img = PIL.Image.fromarray(frame, "RGB")

    shrink = int(np.floor(qsize / out_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, PIL.Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError(f"the quad (plus its border) does not overlap the image: crop box {crop}")
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    affected = None  # bool map (padded image) of pixels changed by the padding branch
    used_pad = None
    if enable_padding and max(pad) > border - 4:
        p = [max(v, int(np.rint(qsize * 0.3))) for v in pad]
        used_pad = tuple(p)
        arr = np.pad(np.asarray(img, dtype=np.float32), ((p[1], p[3]), (p[0], p[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx = np.ogrid[:h, :w]
        with np.errstate(divide="ignore", invalid="ignore"):
            # float64 ramp, as the reference computes it (float32 coordinate / int64 pad -> float64).
            # A zero pad (only when qsize < 1.7 px) gives 0/0 at the edge pixel; the reference then
            # writes NaN, here that term counts as "inside" (+inf).
            def dist(a, b):
                return np.nan_to_num(a.astype(np.float64) / b, nan=np.inf, posinf=np.inf)

            ramp = np.maximum(1.0 - np.minimum(dist(xx, p[0]), dist(w - 1 - xx, p[2])),
                              1.0 - np.minimum(dist(yy, p[1]), dist(h - 1 - yy, p[3])))
        ramp = ramp[:, :, None]
        blur = qsize * 0.02
        blurred = scipy.ndimage.gaussian_filter(arr, [blur, blur, 0])
        k1 = np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
        arr = (arr.astype(np.float64) + (blurred - arr).astype(np.float64) * k1).astype(np.float32)
        median = np.median(arr, axis=(0, 1))
        arr = (arr.astype(np.float64) + (median - arr).astype(np.float64) * np.clip(ramp, 0.0, 1.0)).astype(np.float32)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += np.asarray(p[:2], dtype=np.float64)
        affected = k1[:, :, 0] > 0

    img = img.transform((t_size, t_size), PIL.Image.Transform.QUAD, tuple((quad + 0.5).flatten()),
                        PIL.Image.Resampling.BILINEAR)
    if out_size < t_size:
        img = img.resize((out_size, out_size), PIL.Image.Resampling.LANCZOS)
    out = np.asarray(img, dtype=np.uint8).copy()
    if not return_info:
        return out

    # Output pixels that depend on the padding branch or sample outside the image.
    q = quad + 0.5
    uv = (np.arange(t_size, dtype=np.float64) + 0.5) / t_size
    u, v = np.meshgrid(uv, uv)  # u along columns (x), v along rows (y)
    bil = q[2] - q[1] - q[3] + q[0]
    sx = q[0, 0] + (q[3, 0] - q[0, 0]) * u + (q[1, 0] - q[0, 0]) * v + bil[0] * u * v
    sy = q[0, 1] + (q[3, 1] - q[0, 1]) * u + (q[1, 1] - q[0, 1]) * v + bil[1] * u * v
    if affected is None:
        # no padding: only samples outside the (cropped) image are "padded"
        w_img, h_img = _size_before_transform(frame, shrink, crop)
        outside = (sx < 0) | (sx >= w_img) | (sy < 0) | (sy >= h_img)
        touched = outside
    else:
        h_img, w_img = affected.shape
        outside = (sx < 0) | (sx >= w_img) | (sy < 0) | (sy >= h_img)
        x0 = np.floor(sx - 0.5).astype(np.int64)
        y0 = np.floor(sy - 0.5).astype(np.int64)
        touched = outside.copy()
        for dy in (0, 1):
            for dx in (0, 1):
                xi = np.clip(x0 + dx, 0, w_img - 1)
                yi = np.clip(y0 + dy, 0, h_img - 1)
                touched |= affected[yi, xi]
    if out_size < t_size:
        # LANCZOS (radius 3 output pixels) spreads the influence; resample the map the same way.
        tm = PIL.Image.fromarray(touched.astype(np.float32), "F").resize((out_size, out_size),
                                                                         PIL.Image.Resampling.LANCZOS)
        touched = np.abs(np.asarray(tm)) > 0
    info = {"shrink": shrink, "crop": crop, "pad": used_pad, "padded": touched}
    return out, info


def _size_before_transform(frame: np.ndarray, shrink: int, crop) -> tuple[int, int]:
    """(width, height) of the image the recipe warps when no padding is applied."""
    h, w = frame.shape[:2]
    if shrink > 1:
        w, h = int(np.rint(float(w) / shrink)), int(np.rint(float(h) / shrink))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        w, h = crop[2] - crop[0], crop[3] - crop[1]
    return w, h


# ----------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------

def crop_to_frame_matrix(quad, size: int) -> np.ndarray:
    """3x3 affine map from crop index coordinates to frame index coordinates.

    For crop pixel (i, j) (column, row) of an S x S crop, the frame point is
    ``ctr + e_x ((i + 0.5)/S - 0.5) + e_y ((j + 0.5)/S - 0.5)`` with ctr the mean of the 4 corners,
    e_x = ((q3 - q0) + (q2 - q1))/2 and e_y = ((q1 - q0) + (q2 - q3))/2. For a parallelogram quad
    (every FFHQ quad, and any linear smoothing of FFHQ quads) this is exactly PIL's QUAD map with
    corners quad + 0.5, i.e. the recipe's pixel-centre convention; for a general quad it is the
    least-squares affine fit of the 4 corners.

    Args:
        quad: (..., 4, 2) float, frame index coordinates. size: S, crop side in pixels.

    Returns:
        (..., 3, 3) float64.
    """
    q = np.asarray(quad, dtype=np.float64)
    if q.shape[-2:] != (4, 2):
        raise ValueError(f"quad must have shape (..., 4, 2); got {q.shape}")
    s = float(size)
    ex = 0.5 * ((q[..., 3, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 1, :]))
    ey = 0.5 * ((q[..., 1, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 3, :]))
    ctr = q.mean(axis=-2)
    m = np.zeros(q.shape[:-2] + (3, 3), dtype=np.float64)
    m[..., :2, 0] = ex / s
    m[..., :2, 1] = ey / s
    m[..., :2, 2] = ctr + (ex + ey) * (0.5 / s - 0.5)
    m[..., 2, 2] = 1.0
    return m


def crop_matrix(quad, size: int) -> np.ndarray:
    """3x3 affine map from frame index coordinates to crop index coordinates (inverse of
    :func:`crop_to_frame_matrix`). For a square quad this is a similarity (rotation, uniform scale
    S/qsize, translation) and equals STIT's inverse coefficients up to the half-pixel shifts:
    ``crop_idx + 0.5 = P(frame_idx + 0.5)`` with P from :func:`inverse_coefficients`.

    Args:
        quad: (..., 4, 2); size: S. Returns (..., 3, 3) float64.

    Raises:
        ValueError: degenerate (zero-area) quad.
    """
    fwd = crop_to_frame_matrix(quad, size)
    det = fwd[..., 0, 0] * fwd[..., 1, 1] - fwd[..., 0, 1] * fwd[..., 1, 0]
    if np.any(det == 0) or not np.all(np.isfinite(det)):
        raise ValueError("degenerate quad (zero area)")
    inv = np.zeros_like(fwd)
    inv[..., 0, 0] = fwd[..., 1, 1] / det
    inv[..., 0, 1] = -fwd[..., 0, 1] / det
    inv[..., 1, 0] = -fwd[..., 1, 0] / det
    inv[..., 1, 1] = fwd[..., 0, 0] / det
    t = fwd[..., :2, 2]
    inv[..., 0, 2] = -(inv[..., 0, 0] * t[..., 0] + inv[..., 0, 1] * t[..., 1])
    inv[..., 1, 2] = -(inv[..., 1, 0] * t[..., 0] + inv[..., 1, 1] * t[..., 1])
    inv[..., 2, 2] = 1.0
    return inv


def inverse_coefficients(quad, size: int = 1024) -> np.ndarray:
    """STIT / Feature-Style "paste back" coefficients for PIL's PERSPECTIVE transform.

    Solves (a..h) so that the continuous frame points p_i = quad_i + 0.5 map to the aligned-crop
    corners P_i = (0,0), (0,S), (S,S), (S,0) under
    P_x = (a p_x + b p_y + c)/(g p_x + h p_y + 1), P_y = (d p_x + e p_y + f)/(g p_x + h p_y + 1),
    through the normal equations (A^T A)^-1 A^T b as the reference does (STIT
    ``calc_alignment_coefficients``, FS ``find_coeffs``).
    Use: ``aligned.transform(frame_size, PIL.Image.PERSPECTIVE, coeffs, PIL.Image.BILINEAR)``.

    Args:
        quad: (..., 4, 2) frame index coordinates (for FS's crop-relative form pass
            ``quad - crop_origin``). size: S, side of the aligned image (STIT/FS: 1024).

    Returns:
        (..., 8) float64 coefficients (a, b, c, d, e, f, g, h).
    """
    q = np.asarray(quad, dtype=np.float64)
    if q.shape[-2:] != (4, 2):
        raise ValueError(f"quad must have shape (..., 4, 2); got {q.shape}")
    p = q + 0.5
    s = float(size)
    target = np.array([[0.0, 0.0], [0.0, s], [s, s], [s, 0.0]])
    a = np.zeros(q.shape[:-2] + (8, 8), dtype=np.float64)
    px, py = p[..., 0], p[..., 1]
    for i in range(4):
        tx, ty = target[i]
        r = 2 * i
        a[..., r, 0] = px[..., i]
        a[..., r, 1] = py[..., i]
        a[..., r, 2] = 1.0
        a[..., r, 6] = -tx * px[..., i]
        a[..., r, 7] = -tx * py[..., i]
        a[..., r + 1, 3] = px[..., i]
        a[..., r + 1, 4] = py[..., i]
        a[..., r + 1, 5] = 1.0
        a[..., r + 1, 6] = -ty * px[..., i]
        a[..., r + 1, 7] = -ty * py[..., i]
    b = target.reshape(8)
    at = np.swapaxes(a, -1, -2)
    return (np.linalg.inv(at @ a) @ at) @ b


def apply_perspective(coeffs, points) -> np.ndarray:
    """Map points (..., 2) with PERSPECTIVE coefficients (8,) (see :func:`inverse_coefficients`)."""
    c = np.asarray(coeffs, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    den = c[6] * p[..., 0] + c[7] * p[..., 1] + 1.0
    return np.stack([(c[0] * p[..., 0] + c[1] * p[..., 1] + c[2]) / den,
                     (c[3] * p[..., 0] + c[4] * p[..., 1] + c[5]) / den], axis=-1)


# ----------------------------------------------------------------------------------------------
# Fast warp (video path)
# ----------------------------------------------------------------------------------------------

def reflect101_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map integer indices into [0, n) by reflection without repeating the edge sample
    (numpy ``np.pad(mode="reflect")`` = ``cv2.BORDER_REFLECT_101``: ... c b | a b c d | c b ...),
    repeated as often as needed."""
    idx = np.asarray(idx, dtype=np.int64)
    if n <= 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    i = np.abs(idx) % period
    return np.where(i >= n, period - i, i)


def _gather_reflect(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """frame[y0:y1, x0:x1] with reflect-101 padding where the box leaves the frame."""
    h, w = frame.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return frame[y0:y1, x0:x1]
    ys = reflect101_index(np.arange(y0, y1), h)
    xs = reflect101_index(np.arange(x0, x1), w)
    ylo, yhi, xlo, xhi = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    sub = frame[ylo:yhi, xlo:xhi]
    return sub.take(ys - ylo, axis=0).take(xs - xlo, axis=1)


def _aa_sigma(scale: float) -> float:
    return AA_SIGMA_FACTOR * math.sqrt(scale * scale - 1.0) if scale > 1.0 else 0.0


def _gaussian_blur(img: np.ndarray, sigma: float) -> tuple[np.ndarray, int]:
    import cv2

    if sigma <= 0:
        return img, 0
    rad = max(1, int(math.ceil(3.0 * sigma)))
    k = 2 * rad + 1
    return cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101), rad


def _align_one(frame: np.ndarray, quad: np.ndarray, size: int, antialias: bool) -> np.ndarray:
    import cv2

    fwd = crop_to_frame_matrix(quad, size)
    lin = fwd[:2, :2]
    det = abs(lin[0, 0] * lin[1, 1] - lin[0, 1] * lin[1, 0])
    if det == 0 or not math.isfinite(det):
        raise ValueError("degenerate quad (zero area)")
    scale = math.sqrt(det)  # frame pixels per crop pixel
    sigma = _aa_sigma(scale) if antialias else 0.0
    rad = max(1, int(math.ceil(3.0 * sigma))) if sigma > 0 else 0
    cc = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0], [-0.5, size - 0.5, 1.0], [size - 0.5, size - 0.5, 1.0]])
    pts = cc @ fwd[:2].T
    x0 = int(math.floor(pts[:, 0].min())) - rad - 2
    y0 = int(math.floor(pts[:, 1].min())) - rad - 2
    x1 = int(math.ceil(pts[:, 0].max())) + rad + 3
    y1 = int(math.ceil(pts[:, 1].max())) + rad + 3
    roi = _gather_reflect(frame, x0, y0, x1, y1).astype(np.float32)
    roi, _ = _gaussian_blur(roi, sigma)
    m = fwd[:2].copy()
    m[:, 2] -= (x0, y0)
    out = cv2.warpAffine(roi, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(size, size, *frame.shape[2:])


def align_crop(frames, quads, size: int, *, antialias: bool = True, dtype=np.uint8) -> np.ndarray:
    """Fast aligned crop(s) for video: one affine warp per frame with OpenCV.

    The map is :func:`crop_to_frame_matrix` (same pixel-centre convention as the FFHQ recipe: crop
    corners (0,0), (0,S), (S,S), (S,0) at frame points quad + 0.5), sampled bilinearly on a region
    of interest around the quad (cost independent of the frame size).

    Differences from the exact recipe (:func:`ffhq_crop`):

    * Anti-aliasing: when the face is larger than the crop (scale s = qsize/S > 1) the ROI is
      pre-blurred with a Gaussian of sigma = ``AA_SIGMA_FACTOR`` * sqrt(s^2 - 1) frame pixels (the
      pSp recipe with T = O has no anti-aliasing except its integer LANCZOS shrink for s >= 4; the
      official FFHQ recipe supersamples 4x). ``antialias=False`` gives plain bilinear sampling.
    * Outside the frame: reflect padding only (numpy ``"reflect"`` = ``cv2.BORDER_REFLECT_101``); the
      recipe's blur / median fill of the padding is not implemented, and there is no shrink/border
      logic.
    * Sampling: OpenCV bilinear with rounding to the nearest uint8 level (PIL truncates) and 1/32
      pixel sub-pixel positions (OpenCV's INTER_BITS); no bilinear term for non-parallelogram quads.

    Args:
        frames: (H, W, C) or (H, W) uint8/float image (RGB if 3 channels; any channel order is
            kept), or a batch (N, H, W, C).
        quads: (4, 2) frame index coordinates, or (N, 4, 2) for a batch.
        size: S, side of the aligned crop in pixels.
        antialias: Gaussian pre-blur when downscaling (default True).
        dtype: ``np.uint8`` (rounded, clipped to [0, 255]) or ``np.float32`` (unrounded, same range
            as the input).

    Returns:
        (S, S, C) / (S, S) or (N, S, S, C) crops of ``dtype``.

    Raises:
        ValueError: shape mismatch or degenerate quad.
    """
    frames = np.asarray(frames)
    q = np.asarray(quads, dtype=np.float64)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise ValueError(f"dtype must be uint8 or float32; got {dtype}")
    if q.shape == (4, 2):
        if frames.ndim not in (2, 3):
            raise ValueError(f"a single quad needs one frame (H, W[, C]); got {frames.shape}")
        batch = False
        frames_b, q_b = frames[None], q[None]
    elif q.ndim == 3 and q.shape[1:] == (4, 2):
        if frames.ndim != 4 or frames.shape[0] != q.shape[0]:
            raise ValueError(f"quads {q.shape} need frames (N, H, W, C) with the same N; got {frames.shape}")
        batch = True
        frames_b, q_b = frames, q
    else:
        raise ValueError(f"quads must be (4, 2) or (N, 4, 2); got {q.shape}")
    outs = []
    for f, qq in zip(frames_b, q_b):
        o = _align_one(f, qq, int(size), antialias)
        if dtype == np.uint8:
            o = np.clip(np.rint(o), 0, 255).astype(np.uint8)
        outs.append(o)
    return np.stack(outs) if batch else outs[0]


# ----------------------------------------------------------------------------------------------
# Inverse warp
# ----------------------------------------------------------------------------------------------

def _roi_box(quad: np.ndarray, size: int, frame_hw) -> tuple[int, int, int, int]:
    h, w = int(frame_hw[0]), int(frame_hw[1])
    fwd = crop_to_frame_matrix(quad, size)
    cc = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0], [-0.5, size - 0.5, 1.0], [size - 0.5, size - 0.5, 1.0]])
    pts = cc @ fwd[:2].T
    x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
    return x0, y0, max(x1, x0), max(y1, y0)


def unalign_roi(crop, quad, frame_hw, *, antialias: bool = True, border_mode: str = "replicate"):
    """Warp an aligned crop back into frame coordinates, on the bounding box of the quad only.

    Exact inverse of :func:`align_crop`'s transform: frame pixel (x, y) samples the crop at
    ``crop_matrix(quad, S) @ (x, y, 1)`` (bilinear). When the crop is larger than its footprint in
    the frame (S > qsize), it is first blurred with sigma = ``AA_SIGMA_FACTOR`` * sqrt((S/qsize)^2 - 1)
    crop pixels (anti-aliasing).

    Args:
        crop: (S, S, C) or (S, S) uint8/float aligned image (any value range; float32 output keeps it).
        quad: (4, 2) frame index coordinates used to make the crop.
        frame_hw: (H, W) of the frame.
        antialias: pre-blur when the crop is downscaled.
        border_mode: how crop colours continue beyond the crop edge (``"replicate"``, ``"reflect"``
            or ``"constant"`` = 0); the coverage tells where the crop actually applies.

    Returns:
        ``(warped, coverage, box)``: warped (h, w, C) or (h, w) float32 crop colours, coverage (h, w)
        float32 in [0, 1] (1 inside the crop square, 0 outside, bilinear 1-pixel ramp at its edge),
        box = (x0, y0, x1, y1) the region in the frame (``frame[y0:y1, x0:x1]``), clipped to the
        frame; h = y1 - y0, w = x1 - x0 (possibly 0 when the quad lies outside the frame).
    """
    import cv2

    crop = np.asarray(crop)
    if crop.ndim not in (2, 3) or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"crop must be square (S, S[, C]); got {crop.shape}")
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    size = crop.shape[0]
    x0, y0, x1, y1 = _roi_box(q, size, frame_hw)
    h, w = y1 - y0, x1 - x0
    extra = crop.shape[2:]
    if h == 0 or w == 0:
        return (np.zeros((h, w) + extra, np.float32), np.zeros((h, w), np.float32), (x0, y0, x1, y1))
    m = crop_matrix(q, size)
    m_roi = m[:2].copy()
    m_roi[:, 2] += m_roi[:, 0] * x0 + m_roi[:, 1] * y0  # roi index -> crop index
    src = crop.astype(np.float32)
    if antialias:
        scale = math.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))  # crop pixels per frame pixel
        src, _ = _gaussian_blur(src, _aa_sigma(scale))
    modes = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}
    if border_mode not in modes:
        raise ValueError(f"border_mode must be one of {tuple(modes)}; got {border_mode!r}")
    warped = cv2.warpAffine(src, m_roi, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=modes[border_mode], borderValue=0)
    warped = warped.reshape((h, w) + extra)
    # Coverage: bilinear sampling of an all-ones crop with zero border, evaluated analytically.
    xs = np.arange(w, dtype=np.float64)[None, :]
    ys = np.arange(h, dtype=np.float64)[:, None]
    u = m_roi[0, 0] * xs + m_roi[0, 1] * ys + m_roi[0, 2]
    v = m_roi[1, 0] * xs + m_roi[1, 1] * ys + m_roi[1, 2]
    cu = np.clip(np.minimum(u + 1.0, size - u), 0.0, 1.0)
    cv = np.clip(np.minimum(v + 1.0, size - v), 0.0, 1.0)
    coverage = (cu * cv).astype(np.float32)
    return warped, coverage, (x0, y0, x1, y1)


def unalign(crop, quad, frame_hw, *, antialias: bool = True, border_mode: str = "replicate"):
    """Warp an aligned crop back into a full frame (see :func:`unalign_roi`; only the quad's bounding
    box is computed, the rest is zero).

    Returns:
        ``(warped, coverage)``: (H, W, C) (or (H, W)) float32 crop colours in frame coordinates and
        (H, W) float32 coverage in [0, 1].
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    crop = np.asarray(crop)
    warped_roi, cov_roi, (x0, y0, x1, y1) = unalign_roi(crop, quad, (h, w), antialias=antialias,
                                                        border_mode=border_mode)
    warped = np.zeros((h, w) + crop.shape[2:], np.float32)
    coverage = np.zeros((h, w), np.float32)
    warped[y0:y1, x0:x1] = warped_roi
    coverage[y0:y1, x0:x1] = cov_roi
    return warped, coverage
