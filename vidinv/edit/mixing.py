"""Style mixing (pSp's multi-modal synthesis): replace or blend chosen W+ rows with an injected style.

Source: Richardson et al., "Encoding in Style" (CVPR 2021), section 4 (multi-modal synthesis by style
mixing); reference code eladrich/pixel2style2pixel ``models/psp.py`` ``pSp.forward`` (the ``latent_mask`` /
``inject_latent`` / ``alpha`` branch) and ``scripts/style_mixing.py`` (``--latent_mask``,
``--mix_alpha``; ``inject`` is the W+ of a random z through the mapping network,
``net(z, input_code=True, return_latents=True)``).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["mix_styles", "parse_rows"]


def mix_styles(codes: torch.Tensor, inject: torch.Tensor, rows: Iterable[int],
               alpha: float | None = 1.0) -> torch.Tensor:
    """Blend the W+ rows ``rows`` of ``codes`` towards ``inject`` (pSp ``pSp.forward`` with ``latent_mask``).

    For each i in ``rows``: ``out[:, i] = alpha * inject[:, i] + (1 - alpha) * codes[:, i]``; other rows
    are ``codes`` unchanged. ``alpha=1`` (or None, pSp's ``alpha=None``) replaces the rows by ``inject``'s.
    ``codes`` is the W+ fed to the decoder (after ``latent_avg`` is added, as in pSp).

    Args:
        codes: (B, n_styles, D) float W+ codes.
        inject: (B, n_styles, D) or (1, n_styles, D) (broadcast over the batch) injected W+, same dtype/device.
        rows: style indices in ``[0, n_styles)`` (pSp's ``latent_mask``, e.g. 8..17 for the fine styles).
        alpha: mixing weight in [0, 1], or None for 1.

    Returns:
        A new (B, n_styles, D) tensor; the inputs are not modified.

    Raises:
        ValueError: shapes that do not match, a row out of range, alpha outside [0, 1].
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must be (B, n_styles, D), got shape {tuple(codes.shape)}")
    if inject.ndim != 3 or inject.shape[1:] != codes.shape[1:] or inject.shape[0] not in (1, codes.shape[0]):
        raise ValueError(f"inject has shape {tuple(inject.shape)}; expected (B, {codes.shape[1]}, {codes.shape[2]}) "
                         f"with B = 1 or {codes.shape[0]}")
    a = 1.0 if alpha is None else float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    idx = sorted({int(i) for i in rows})
    n = codes.shape[1]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"style rows {bad} out of range [0, {n})")
    out = codes.clone()
    if idx:
        sel = torch.tensor(idx, device=codes.device, dtype=torch.long)
        inj = inject.index_select(1, sel).to(codes.dtype).expand(codes.shape[0], -1, -1)
        out[:, sel] = inj if a == 1.0 else a * inj + (1.0 - a) * codes.index_select(1, sel)
    return out


def parse_rows(spec: str, n_styles: int = 18) -> list[int]:
    """Parse a row list such as ``"8-17"``, ``"0,2,4"`` or ``"1-3,9"`` into sorted unique style indices.

    Ranges are inclusive (``"8-17"`` is pSp's fine styles 8..17, as ``--latent_mask=8,9,...,17``).

    Raises:
        ValueError: an empty or malformed item, a reversed range, an index outside ``[0, n_styles)``.
    """
    rows: set[int] = set()
    for item in spec.split(","):
        item = item.strip()
        lo_s, sep, hi_s = item.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"bad style row item {item!r} in {spec!r} (use e.g. 8-17 or 0,2,4)") from None
        if hi < lo:
            raise ValueError(f"reversed style row range {item!r} in {spec!r}")
        if lo < 0 or hi >= n_styles:
            raise ValueError(f"style rows {item!r} out of range [0, {n_styles - 1}]")
        rows.update(range(lo, hi + 1))
    return sorted(rows)
