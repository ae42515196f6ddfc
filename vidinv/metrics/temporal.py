"""Identity over time (identity consistency, TL-ID, TG-ID) and temporal flicker.

Inputs are per-frame identity embeddings ``(N, D)`` (any identity network, see
:mod:`vidinv.metrics.identity`) with an optional validity mask ``(N,)`` bool: frames without a face
(``valid=False`` or rows of NaN) are left out of every mean and counted by the callers.

Definitions (``cos`` = cosine similarity, ``e_i`` = embedding of frame i):

* **Identity consistency** (Feature-Style encoder, Yao et al. ECCV 2022, eq. 9):
  ``IC = mean_{i != r} cos(e_i, e_r)`` with r the first valid frame ("frame 0"). We leave out the
  reference frame itself (its term is always 1); including it would give ``(1 + (n-1) IC) / n``.
  Computed on the source and on the output separately, so the difference shows what the edit did.
* **TL-ID / TG-ID** (Stitch it in Time, Tzaban et al. SIGGRAPH Asia 2022, sec. 5, as its evaluation code
  computes them): from the L2-normalised embeddings ``E`` of the source and of the edited video, the
  similarity matrices ``S_src = E_src E_src^T`` and ``S_edit = E_edit E_edit^T`` and the per-pair ratio
  ``R = S_edit / S_src`` (elementwise);

  - ``TL-ID = mean of R[i, i+1]`` over the adjacent pairs (temporally local),
  - ``TG-ID = mean of R[i, j]`` over all ordered pairs ``i != j`` (temporally global; ``S`` is symmetric,
    so this equals the mean over ``i < j``).

  This is a *mean of ratios*: 1 means "as consistent as the source", values slightly above 1 are
  possible. A pair counts only when both of its frames have a face in both videos; pairs whose source
  similarity is exactly 0 have no ratio and are counted apart (``undefined_pairs``). The *ratio of means*
  ``mean(S_edit) / mean(S_src)`` over the same pairs is also returned (``ratio_of_means``) for comparison;
  it is **not** STIT's TL-ID / TG-ID and differs from it whenever the source similarities vary (head
  turns, blinks). The numbers depend on the identity network and its face crops: STIT used insightface
  on full frames, so values computed with another network or alignment are not the paper's numbers.
* **Flicker** of the face region: mean absolute frame-to-frame change of the output's aligned face
  minus that of the source (:func:`frame_change`, :func:`flicker`); > 0 means the output changes more
  from frame to frame than the source (jitter, texture flicker), 0 means as stable as the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidinv.metrics.identity import cosine_similarity

__all__ = [
    "valid_rows",
    "similarity_to_reference",
    "identity_consistency",
    "adjacent_similarity",
    "pairwise_similarity",
    "ratio_matrix",
    "TemporalIdentity",
    "tl_id",
    "tg_id",
    "frame_change",
    "flicker",
]


def valid_rows(embeddings, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """``(E, mask)``: embeddings as ``(N, D)`` float64 and ``(N,)`` bool (given mask AND finite rows).

    Raises:
        ValueError: embeddings not 2-D or mask of the wrong length.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, D); got {e.shape}")
    ok = np.all(np.isfinite(e), axis=1)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != (e.shape[0],):
            raise ValueError(f"valid must be ({e.shape[0]},); got {v.shape}")
        ok &= v
    return e, ok


def similarity_to_reference(embeddings, valid=None) -> tuple[np.ndarray, int | None]:
    """Per-frame ``cos(e_i, e_r)`` with r the first valid frame.

    Returns:
        ``(sims, r)``: ``(N,)`` float64 (NaN at invalid frames; 1 at r) and the reference index
        (``None`` when no frame is valid, then all NaN).
    """
    e, ok = valid_rows(embeddings, valid)
    sims = np.full(e.shape[0], np.nan)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return sims, None
    r = int(idx[0])
    sims[idx] = cosine_similarity(e[idx], e[r][None, :])
    return sims, r


def identity_consistency(embeddings, valid=None) -> float:
    """Identity consistency, Feature-Style eq. 9: mean over valid frames i != r of ``cos(e_i, e_r)``.

    Args:
        embeddings: ``(N, D)`` per-frame identity embeddings (NaN rows = no face).
        valid: optional ``(N,)`` bool, frames with a face.

    Returns:
        IC in [-1, 1] (1 for a constant embedding sequence); NaN when fewer than 2 frames are valid.
    """
    sims, r = similarity_to_reference(embeddings, valid)
    if r is None:
        return float("nan")
    rest = np.delete(sims, r)
    rest = rest[np.isfinite(rest)]
    return float(rest.mean()) if rest.size else float("nan")


def adjacent_similarity(embeddings, valid=None) -> np.ndarray:
    """``(N-1,)`` float64 ``cos(e_i, e_{i+1})``; NaN where either frame is invalid."""
    e, ok = valid_rows(embeddings, valid)
    n = e.shape[0]
    out = np.full(max(n - 1, 0), np.nan)
    if n < 2:
        return out
    both = ok[:-1] & ok[1:]
    if both.any():
        out[both] = cosine_similarity(e[:-1][both], e[1:][both])
    return out


def pairwise_similarity(embeddings, valid=None) -> np.ndarray:
    """``(N, N)`` float64 matrix of ``cos(e_i, e_j)``, i.e. ``S = E E^T`` of the L2-normalised embeddings
    (STIT's similarity matrix); NaN in rows/columns of invalid frames."""
    e, ok = valid_rows(embeddings, valid)
    n = e.shape[0]
    out = np.full((n, n), np.nan)
    idx = np.flatnonzero(ok)
    if idx.size:
        u = e[idx] / np.maximum(np.linalg.norm(e[idx], axis=1, keepdims=True), 1e-12)
        out[np.ix_(idx, idx)] = np.clip(u @ u.T, -1.0, 1.0)
    return out


@dataclass
class TemporalIdentity:
    """Result of :func:`tl_id` / :func:`tg_id` (Stitch it in Time's definition, see the module docstring).

    Attributes:
        value: TL-ID / TG-ID = mean over the counted pairs of ``S_edit[i, j] / S_src[i, j]`` (mean of
            ratios; NaN when no pair counts).
        pairs: number of pairs counted (adjacent pairs ``(i, i+1)`` for TL-ID; ordered pairs ``(i, j)``,
            ``i != j``, for TG-ID, so each unordered pair counts twice).
        output_mean: mean ``S_edit`` over the counted pairs, in [-1, 1].
        source_mean: mean ``S_src`` over the counted pairs.
        ratio_of_means: ``output_mean / source_mean`` -- *not* STIT's metric (kept for comparison with
            earlier vidinv reports); NaN when ``source_mean`` is 0 or no pair counts.
        skipped_frames: positions (0-based, among the compared frames) of frames left out because one of
            the two videos has no face (no embedding) there.
        undefined_pairs: pairs with faces in all four frames but ``S_src == 0`` (no ratio; not counted).
    """

    value: float
    pairs: int
    output_mean: float
    source_mean: float
    ratio_of_means: float
    skipped_frames: list[int] = field(default_factory=list)
    undefined_pairs: int = 0

    def as_dict(self) -> dict:
        """All attributes as a JSON-ready dict (floats may be NaN)."""
        return {"value": self.value, "pairs": self.pairs, "output_mean": self.output_mean,
                "source_mean": self.source_mean, "ratio_of_means": self.ratio_of_means,
                "skipped_frames": list(self.skipped_frames), "undefined_pairs": self.undefined_pairs}


def ratio_matrix(output_embeddings, source_embeddings, output_valid=None, source_valid=None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """STIT's per-pair ratio ``R = S_edit / S_src`` over the common frames.

    Args:
        output_embeddings, source_embeddings: ``(N, D)`` and ``(M, D)`` embeddings of the same identity
            network (any length; they are L2-normalised here); frames are paired by index over the first
            ``n = min(N, M)``.
        output_valid, source_valid: optional ``(N,)`` / ``(M,)`` bool masks of frames with a face (rows of
            NaN count as invalid too).

    Returns:
        ``(R, S_edit, S_src, both)``: three ``(n, n)`` float64 matrices and the ``(n,)`` bool mask of frames
        with a face in both videos. ``S_edit`` and ``S_src`` are NaN in rows/columns of frames not in
        ``both``; ``R`` is NaN there and where ``S_src == 0``.
    """
    eo, vo, es, vs = _align_lengths(output_embeddings, source_embeddings, output_valid, source_valid)
    both = vo & vs
    s_edit = pairwise_similarity(eo, both)
    s_src = pairwise_similarity(es, both)
    r = np.full_like(s_src, np.nan)
    ok = np.isfinite(s_edit) & np.isfinite(s_src) & (s_src != 0)
    r[ok] = s_edit[ok] / s_src[ok]
    return r, s_edit, s_src, both


def _temporal(output_embeddings, source_embeddings, output_valid, source_valid, pair_mask) -> TemporalIdentity:
    r, s_edit, s_src, both = ratio_matrix(output_embeddings, source_embeddings, output_valid, source_valid)
    n = both.shape[0]
    pm = pair_mask(n) & both[:, None] & both[None, :]
    counted = pm & np.isfinite(r)
    k = int(counted.sum())
    undefined = int((pm & ~np.isfinite(r)).sum())
    skipped = [int(i) for i in np.flatnonzero(~both)]
    nan = float("nan")
    if k == 0:
        return TemporalIdentity(nan, 0, nan, nan, nan, skipped, undefined)
    mo, ms = float(s_edit[counted].mean()), float(s_src[counted].mean())
    rom = mo / ms if ms != 0 else nan
    return TemporalIdentity(float(r[counted].mean()), k, mo, ms, rom, skipped, undefined)


def _adjacent_pairs(n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=bool)
    if n > 1:
        i = np.arange(n - 1)
        m[i, i + 1] = True
    return m


def _ordered_pairs(n: int) -> np.ndarray:
    return ~np.eye(n, dtype=bool)


def _align_lengths(out_e, src_e, out_valid, src_valid):
    eo, vo = valid_rows(out_e, out_valid)
    es, vs = valid_rows(src_e, src_valid)
    n = min(eo.shape[0], es.shape[0])
    return eo[:n], vo[:n], es[:n], vs[:n]


def tl_id(output_embeddings, source_embeddings, output_valid=None, source_valid=None) -> TemporalIdentity:
    """Temporally-local identity (STIT): mean over adjacent pairs ``(i, i+1)`` of ``S_edit / S_src``.

    Args:
        output_embeddings, source_embeddings: ``(N, D)`` and ``(M, D)`` per-frame embeddings of the same
            identity network; frames are paired by index over the first ``min(N, M)`` frames.
        output_valid, source_valid: optional ``(N,)`` / ``(M,)`` bool masks of frames with a face.

    Returns:
        :class:`TemporalIdentity` over the adjacent pairs whose two frames have a face in both videos.

    Raises:
        ValueError: embeddings not 2-D or a mask of the wrong length.
    """
    return _temporal(output_embeddings, source_embeddings, output_valid, source_valid, _adjacent_pairs)


def tg_id(output_embeddings, source_embeddings, output_valid=None, source_valid=None) -> TemporalIdentity:
    """Temporally-global identity (STIT): mean over all ordered pairs ``i != j`` of ``S_edit / S_src``.

    Arguments, return value and errors as :func:`tl_id`; ``pairs`` counts ordered pairs (each unordered
    pair twice), the mean equals the mean over ``i < j`` because ``S`` is symmetric.
    """
    return _temporal(output_embeddings, source_embeddings, output_valid, source_valid, _ordered_pairs)


def frame_change(previous, current, mask=None) -> float:
    """Mean absolute change between two consecutive aligned face crops.

    Args:
        previous, current: ``(H, W, C)`` images of the same face region (same crop geometry), uint8
            [0, 255] or float in [0, 255].
        mask: optional ``(H, W)`` bool, pixels of the face region to average over.

    Returns:
        Mean |current - previous| in 8-bit levels (0..255) over the mask's pixels and all channels;
        NaN when the mask is empty.
    """
    a = np.asarray(previous, dtype=np.float64)
    b = np.asarray(current, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"crop shapes differ: {a.shape} vs {b.shape}")
    d = np.abs(b - a)
    if d.ndim == 3:
        d = d.mean(axis=2)
    if mask is None:
        return float(d.mean())
    m = np.asarray(mask, dtype=bool)
    if m.shape != d.shape:
        raise ValueError(f"mask must be {d.shape}; got {m.shape}")
    return float(d[m].mean()) if m.any() else float("nan")


def flicker(output_changes, source_changes) -> dict:
    """Temporal flicker of the face region: mean frame-to-frame change of the output minus the source's.

    Args:
        output_changes, source_changes: per-frame-pair changes from :func:`frame_change` (8-bit levels),
            same length, NaN where not computed; only pairs finite in both count.

    Returns:
        ``{"value", "output_mean", "source_mean", "pairs"}``: value = output_mean - source_mean in 8-bit
        levels (NaN when no pair counts).
    """
    o = np.asarray(output_changes, dtype=np.float64)
    s = np.asarray(source_changes, dtype=np.float64)
    if o.shape != s.shape:
        raise ValueError(f"change arrays differ in length: {o.shape} vs {s.shape}")
    keep = np.isfinite(o) & np.isfinite(s)
    if not keep.any():
        nan = float("nan")
        return {"value": nan, "output_mean": nan, "source_mean": nan, "pairs": 0}
    mo, ms = float(o[keep].mean()), float(s[keep].mean())
    return {"value": mo - ms, "output_mean": mo, "source_mean": ms, "pairs": int(keep.sum())}
