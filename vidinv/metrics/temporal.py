"""Identity over time (identity consistency, TL-ID, TG-ID) and temporal flicker.

Inputs are per-frame identity embeddings ``(N, D)`` (any identity network, see
:mod:`vidinv.metrics.identity`) with an optional validity mask ``(N,)`` bool: frames without a face
(``valid=False`` or rows of NaN) are left out of every mean and counted by the callers.

Definitions (``cos`` = cosine similarity, ``e_i`` = embedding of frame i):

* **Identity consistency** (Feature-Style encoder, Yao et al. ECCV 2022, eq. 9):
  ``IC = mean_{i != r} cos(e_i, e_r)`` with r the first valid frame ("frame 0"). We leave out the
  reference frame itself (its term is always 1); including it would give ``(1 + (n-1) IC) / n``.
  Computed on the source and on the output separately, so the difference shows what the edit did.
* **TL-ID / TG-ID** (Stitch it in Time, Tzaban et al. SIGGRAPH Asia 2022, sec. 5): temporally-local
  identity compares each pair of *adjacent* frames, temporally-global identity *all* pairs of frames;
  each is the mean pair similarity of the edited video divided by the same mean on the source video, so
  1 means "as consistent as the source" (values slightly above 1 are possible). A pair counts when both of
  its frames have a face in both videos.
* **Flicker** of the face region: mean absolute frame-to-frame change of the output's aligned face
  minus that of the source (:func:`frame_change`, :func:`flicker`); > 0 means the output changes more
  from frame to frame than the source (jitter, texture flicker), 0 means as stable as the source.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidinv.metrics.identity import cosine_similarity

__all__ = [
    "valid_rows",
    "similarity_to_reference",
    "identity_consistency",
    "adjacent_similarity",
    "pairwise_similarity",
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
    """``(N, N)`` float64 matrix of ``cos(e_i, e_j)``; NaN in rows/columns of invalid frames."""
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
    """Result of :func:`tl_id` / :func:`tg_id`.

    Attributes:
        value: output mean pair similarity / source mean pair similarity (NaN when no pair counts).
        output_mean: mean ``cos`` over the counted pairs of the output, in [-1, 1].
        source_mean: the same on the source.
        pairs: number of pairs counted.
    """

    value: float
    output_mean: float
    source_mean: float
    pairs: int

    def as_dict(self) -> dict:
        return {"value": self.value, "output_mean": self.output_mean, "source_mean": self.source_mean,
                "pairs": self.pairs}


def _ratio(out_vals: np.ndarray, src_vals: np.ndarray) -> TemporalIdentity:
    keep = np.isfinite(out_vals) & np.isfinite(src_vals)
    n = int(keep.sum())
    if n == 0:
        return TemporalIdentity(float("nan"), float("nan"), float("nan"), 0)
    mo, ms = float(out_vals[keep].mean()), float(src_vals[keep].mean())
    value = mo / ms if ms != 0 else float("nan")
    return TemporalIdentity(value, mo, ms, n)


def _align_lengths(out_e, src_e, out_valid, src_valid):
    eo, vo = valid_rows(out_e, out_valid)
    es, vs = valid_rows(src_e, src_valid)
    n = min(eo.shape[0], es.shape[0])
    return eo[:n], vo[:n], es[:n], vs[:n]


def tl_id(output_embeddings, source_embeddings, output_valid=None, source_valid=None) -> TemporalIdentity:
    """Temporally-local identity (STIT): adjacent-pair similarity of the output over that of the source.

    Args:
        output_embeddings, source_embeddings: ``(N, D)`` and ``(M, D)`` per-frame embeddings of the same
            identity network; frames are paired by index over the first ``min(N, M)`` frames.
        output_valid, source_valid: optional ``(N,)`` / ``(M,)`` bool masks of frames with a face.

    Returns:
        :class:`TemporalIdentity` over the adjacent pairs (i, i+1) valid in both videos.
    """
    eo, vo, es, vs = _align_lengths(output_embeddings, source_embeddings, output_valid, source_valid)
    both = vo & vs
    return _ratio(adjacent_similarity(eo, both), adjacent_similarity(es, both))


def tg_id(output_embeddings, source_embeddings, output_valid=None, source_valid=None) -> TemporalIdentity:
    """Temporally-global identity (STIT): all-pairs similarity of the output over that of the source.

    Arguments as :func:`tl_id`; pairs are all (i, j), i < j, valid in both videos.
    """
    eo, vo, es, vs = _align_lengths(output_embeddings, source_embeddings, output_valid, source_valid)
    both = vo & vs
    iu = np.triu_indices(eo.shape[0], k=1)
    return _ratio(pairwise_similarity(eo, both)[iu], pairwise_similarity(es, both)[iu])


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
