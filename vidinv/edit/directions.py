"""Latent editing directions: loading, shape checks, strength conventions, ``w' = w + Δw``.

A :class:`Direction` holds one direction ``d`` in W+ and the rule that turns a *strength* ``s``
into a latent offset ``Δw = s · scale · d`` (added to every frame's W+ code ``w``):

==========  ==================================================================================
convention  Δw for strength s
==========  ==================================================================================
``fs``      ``15 · s · d`` with ``d`` as stored: the Feature-Style encoder's rule (Yao et al.,
            ECCV 2022, ``video_processing.py``: ``w + 15·alpha·boundary.reshape(18, 512)``).
            Its boundaries are unit norm, so ``||Δw||_F = 15·|s|``.
``unit``    ``15 · s · d / ||d||_F``: the direction rescaled so that strength 1 moves the W+ code
            (18 x 512, a row-broadcast direction counted on all 18 rows) by the same L2 distance
            as ``fs`` strength 1: ``||Δw||_F = 15·|s|``, i.e. ``15/√18 = 3.54`` per style row
            when every row is edited. vidinv's named STIT, InterFaceGAN and GANSpace directions
            use it, so that ``--strength 1`` is comparable across sources (see
            :mod:`vidinv.edit.attributes` for the table and the reasons).
``raw``     ``s · d`` as stored: the native convention of STIT (``w + factor·d``), e4e
            InterFaceGAN (``w + factor·d``) and SeFa (``w + distance·d`` on its layers).
==========  ==================================================================================

Shapes. A direction is stored as ``vector`` (R, D) float64 on the CPU with ``R = 1`` (one W
vector, broadcast to every style row, e.g. InterFaceGAN's (1, 512)) or ``R = n_latent`` (one
vector per style row: STIT's (18, 512), the Feature-Style (1, 9216) boundaries reshaped to (18, 512)
as their scripts do). Files accepted for a user's own direction (``--direction FILE``):
(512,), (1, 512), (18, 512), (1, 18, 512), (1, 9216), (9216,) as ``.npy`` (no pickle) or ``.pt``
(one tensor, read with ``torch.load(weights_only=True)``).

Layers. ``layers`` restricts an edit to some style rows of W+ (row ``i`` feeds styled conv layer
``i + 1`` and, for odd ``i``, a ToRGB; rows 0-7 reach up to 32x32 = coarse and middle styles,
8-17 the fine ones). It is given as a string of inclusive ranges ``"0-7"``, ``"4"``,
``"0-3,8,10-12"``, or as any iterable of ints such as ``range(0, 8)`` (Python's exclusive end).
Rows outside the selection get Δw = 0; the others keep their value (no rescaling), so a restricted
edit is a part of the full one.

Cost. Δw is computed once per direction and strength (float64 on the CPU, then cast to the
dtype/device of ``w`` and cached), not per frame; applying it is one broadcast add.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CONVENTIONS",
    "FS_SCALE",
    "N_LATENT",
    "STYLE_DIM",
    "USER_SHAPES",
    "accepted_shapes",
    "format_layers",
    "Direction",
    "DirectionError",
    "DirectionShapeError",
    "LatentEdit",
    "EditTerm",
    "as_delta",
    "check_strength",
    "load_direction_file",
    "parse_layers",
    "read_array",
    "to_rows",
]

#: W+ rows and latent size of the FFHQ 1024 generator, the space every shipped direction lives in.
N_LATENT = 18
STYLE_DIM = 512
#: Feature-Style's step: ``w' = w + 15·alpha·d`` (``video_processing.py``; ``linear_interpolate(-15, 15)``).
FS_SCALE = 15.0
#: What strength 1 means under each convention (one line each; also shown by ``vidinv directions list``).
CONVENTIONS: dict[str, str] = {
    "fs": "w' = w + 15*s*d (Feature-Style scripts; unit-norm boundaries: |dw|_F = 15*s)",
    "unit": "w' = w + 15*s*d/|d|_F (vidinv scale: |dw|_F = 15*s over the 18x512 W+ code, 3.54*s per row)",
    "raw": "w' = w + s*d (native STIT / e4e InterFaceGAN factor, SeFa distance)",
}


def accepted_shapes(n_latent: int = N_LATENT, style_dim: int = STYLE_DIM) -> list[tuple[int, ...]]:
    """Array shapes accepted for a direction file: (D,), (1, D), (L, D), (1, L, D), (1, L*D), (L*D,)."""
    d, l_ = style_dim, n_latent
    return [(d,), (1, d), (l_, d), (1, l_, d), (1, l_ * d), (l_ * d,)]


#: The accepted shapes for FFHQ 1024: (512,), (1, 512), (18, 512), (1, 18, 512), (1, 9216), (9216,).
USER_SHAPES: list[tuple[int, ...]] = accepted_shapes()


class DirectionError(ValueError):
    """A direction file or specification cannot be used (unreadable file, unknown name, bad layers)."""


def check_strength(value: Any, what: str = "strength") -> float:
    """A strength as a finite Python float.

    Args:
        value: a number (int, float, numpy or 0-d torch scalar, or text such as ``"0.5"``).
        what: how to name it in the message (``"--strength"``, ``"strength of stit:age"``).

    Returns:
        ``float(value)``.

    Raises:
        DirectionError: not a number, or NaN / +-inf (e.g. ``--strength nan``, ``smile=1e400``): a
            non-finite strength makes every edited code NaN and every face a black patch.
    """
    try:
        s = float(value)
    except (TypeError, ValueError) as exc:
        raise DirectionError(f"{what} {value!r} is not a number") from exc
    if not math.isfinite(s):
        raise DirectionError(f"{what} {value!r} is not a finite number (got {s}); give a value such as 1 or -0.5")
    return s


class DirectionShapeError(DirectionError):
    """A direction array has a shape none of the accepted layouts has.

    Attributes:
        source: the file (or description) of the array.
        shape: the shape found.
        accepted: the accepted shapes.
    """

    def __init__(self, source: str, shape: tuple[int, ...], accepted: Sequence[tuple[int, ...]]):
        self.source = source
        self.shape = tuple(shape)
        self.accepted = list(accepted)
        acc = ", ".join(str(tuple(a)) for a in accepted)
        super().__init__(f"{source}: unsupported direction shape {self.shape}; accepted shapes: {acc} "
                         "(one W vector for every style row, one vector per style row, or a flattened W+ "
                         "boundary)")


# ------------------------------------------------------------------------------------------ helpers

def parse_layers(layers: str | int | Iterable[int] | None, n_latent: int = N_LATENT) -> tuple[int, ...] | None:
    """Turn a style-row selection into a sorted tuple of row indices (None = every row).

    Args:
        layers: None (all rows); an int; a string of comma-separated inclusive ranges and single
            rows (``"0-7"``, ``"4"``, ``"0-3,8,10-12"``; ``"all"`` = every row); or an iterable of
            ints (``range(0, 8)`` = rows 0..7).
        n_latent: number of W+ rows (18 at 1024).

    Returns:
        Sorted, de-duplicated row indices in ``[0, n_latent)``, or None for every row.

    Raises:
        DirectionError: a malformed string, a reversed range, an empty selection or a row outside
            ``[0, n_latent)``.
    """
    if layers is None:
        return None
    rows: list[int] = []
    if isinstance(layers, str):
        text = layers.strip().lower()
        if text in ("", "all", "*"):
            return None
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
            if not m:
                raise DirectionError(f"bad layer selection {layers!r}: {part!r} is not a row or an inclusive "
                                     "range like '0-7' (write rows as '0-3,8,10-12')")
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            if b < a:
                raise DirectionError(f"bad layer selection {layers!r}: range {part!r} is reversed")
            rows.extend(range(a, b + 1))
    elif isinstance(layers, (int, np.integer)):
        rows = [int(layers)]
    else:
        try:
            rows = [int(i) for i in layers]
        except (TypeError, ValueError) as exc:
            raise DirectionError(f"bad layer selection {layers!r}: expected a string like '0-7', an int or "
                                 "an iterable of ints") from exc
    if not rows:
        raise DirectionError(f"empty layer selection {layers!r}")
    bad = sorted({r for r in rows if not 0 <= r < n_latent})
    if bad:
        raise DirectionError(f"layer selection {layers!r}: row(s) {bad} outside 0..{n_latent - 1} "
                             f"(W+ has {n_latent} style rows)")
    return tuple(sorted(set(rows)))


def format_layers(rows: Sequence[int] | None) -> str:
    """Inverse of :func:`parse_layers` for display: ``(0, 1, 2, 3, 8)`` -> ``"0-3,8"``; None -> ``"all"``."""
    if rows is None:
        return "all"
    out, rows = [], sorted(rows)
    start = prev = rows[0]
    for r in rows[1:] + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if r is not None:
            start = prev = r
    return ",".join(out)


def read_array(path: str | os.PathLike) -> Any:
    """Read a direction file: ``.npy`` with ``np.load(allow_pickle=False)``, ``.pt``/``.pth`` with
    :func:`vidinv.io.checkpoints.read_checkpoint` (``torch.load(weights_only=True)``, onto the CPU).

    Returns:
        A numpy array (``.npy``), or whatever the ``.pt`` file holds (a tensor, or a dict of tensors
        for GANSpace's ``ganspace_ffhq_pca.pt``).

    Raises:
        DirectionError: missing, empty or unreadable file, or an unknown suffix.
    """
    from vidinv.io.checkpoints import CheckpointError, read_checkpoint

    p = Path(path)
    if not p.is_file():
        raise DirectionError(f"{p}: no such direction file")
    if p.stat().st_size == 0:
        raise DirectionError(f"{p}: the direction file is empty (an interrupted download?)")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise DirectionError(f"{p}: cannot read as a plain .npy array ({exc}); object/pickled arrays are "
                                 "not accepted") from exc
        except (OSError, EOFError) as exc:
            raise DirectionError(f"{p}: cannot read as .npy ({type(exc).__name__}: {exc}); the file is "
                                 "probably truncated") from exc
    if suffix in (".pt", ".pth"):
        try:
            return read_checkpoint(p)
        except CheckpointError as exc:
            raise DirectionError(str(exc)) from exc
    raise DirectionError(f"{p}: unknown direction file type {suffix!r}; use .npy or .pt")


def to_rows(array: Any, source: str, n_latent: int = N_LATENT, style_dim: int = STYLE_DIM) -> torch.Tensor:
    """Bring a direction array to (1, D) or (n_latent, D) float64 CPU.

    Accepts the shapes of :func:`accepted_shapes`: (D,) and (1, D) -> (1, D) (one W vector for every row);
    (L, D), (1, L, D), (1, L*D), (L*D,) -> (L, D) (row-major, as ``reshape(18, 512)`` in the
    Feature-Style scripts).

    Raises:
        DirectionShapeError: any other shape (the message names ``source``, the shape and the
            accepted shapes).
        DirectionError: not an array/tensor, or non-finite values.
    """
    if isinstance(array, torch.Tensor):
        t = array.detach().to("cpu", torch.float64)
    elif isinstance(array, np.ndarray) and array.dtype.kind in "fiu":
        t = torch.from_numpy(np.asarray(array, dtype=np.float64))
    else:
        kind = type(array).__name__
        extra = f" with keys {list(array)[:6]}" if isinstance(array, dict) else ""
        raise DirectionError(f"{source}: a direction file must hold one numeric array, found a {kind}{extra}")
    shape = tuple(t.shape)
    d, l_ = style_dim, n_latent
    if shape in ((d,), (1, d)):
        out = t.reshape(1, d)
    elif shape in ((l_, d), (1, l_, d), (1, l_ * d), (l_ * d,)):
        out = t.reshape(l_, d)
    else:
        raise DirectionShapeError(source, shape, accepted_shapes(n_latent, style_dim))
    if not torch.isfinite(out).all():
        raise DirectionError(f"{source}: the direction holds NaN or infinite values")
    return out.contiguous()


# ---------------------------------------------------------------------------------------- Direction

@dataclass(frozen=True, eq=False)
class Direction:
    """One editing direction with its strength convention.

    ``Δw = strength · scale · vector`` (broadcast over the W+ rows when ``vector`` has one row),
    restricted to ``layers`` when given; ``apply(w, s) = w + Δw``.

    Attributes:
        name: what it is called (``"fs:smile"``, ``"stit:age"``, ``"file:dirs/sefa_00.npy"``).
        vector: (1, D) or (n_latent, D) float64 CPU tensor, the direction as stored (reshaped, and
            multiplied by ``sign`` for registry entries).
        convention: ``"fs"``, ``"unit"`` or ``"raw"`` (see the module doc).
        scale: the factor the convention gives (15 for ``fs``; ``15 / ||vector||_F`` over all
            ``n_latent`` rows for ``unit``; 1 for ``raw``).
        n_latent: W+ rows of the codes it applies to (18 at 1024).
        source: ``"fs"``, ``"stit"``, ``"e4e"``, ``"ganspace"``, ``"sefa"`` or ``"file"``.
        path: the file it was read from, or None.
        description: one line for listings.
    """

    name: str
    vector: torch.Tensor
    convention: str
    scale: float
    n_latent: int = N_LATENT
    source: str = "file"
    path: Path | None = None
    description: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -------------------------------------------------------------- construction
    @classmethod
    def from_array(cls, array: Any, convention: str, *, name: str = "direction", n_latent: int = N_LATENT,
                   style_dim: int = STYLE_DIM, source: str = "file", path: str | os.PathLike | None = None,
                   description: str = "", sign: float = 1.0) -> Direction:
        """Build a direction from an array (numpy or torch) of one of the :func:`accepted_shapes`.

        Args:
            array: the direction values.
            convention: ``"fs"``, ``"unit"`` or ``"raw"`` (see the module doc). Required: the same
                array means very different edits under different conventions.
            name, source, path, description: stored as attributes.
            n_latent, style_dim: W+ layout (18, 512 for FFHQ 1024).
            sign: +1 or -1, multiplies the stored vector (to align a file's sign with a name).

        Raises:
            DirectionShapeError: unsupported shape (names ``path`` or ``name``).
            DirectionError: unknown convention, a zero direction under ``unit``, non-finite values.
        """
        if convention not in CONVENTIONS:
            raise DirectionError(f"{name}: unknown direction convention {convention!r}; choose one of "
                                 f"{', '.join(CONVENTIONS)}")
        vec = to_rows(array, str(path) if path is not None else name, n_latent, style_dim) * float(sign)
        if convention == "fs":
            scale = FS_SCALE
        elif convention == "raw":
            scale = 1.0
        else:
            norm = float(vec.norm()) * (math.sqrt(n_latent) if vec.shape[0] == 1 else 1.0)
            if norm == 0.0:
                raise DirectionError(f"{name}: the direction is zero and cannot be normalised (convention 'unit')")
            scale = FS_SCALE / norm
        return cls(name=name, vector=vec, convention=convention, scale=scale, n_latent=int(n_latent),
                   source=source, path=Path(path) if path is not None else None, description=description)

    # -------------------------------------------------------------- properties
    @property
    def style_dim(self) -> int:
        """Latent size D (512)."""
        return int(self.vector.shape[1])

    @property
    def per_row(self) -> bool:
        """True when the direction has one vector per style row (else one W vector for every row)."""
        return self.vector.shape[0] != 1

    def native_factor(self, strength: float = 1.0) -> float:
        """The factor ``f`` of ``w + f·d`` (d as stored in the file) that equals ``strength`` here:
        ``strength · scale`` (``15·s`` for ``fs``; ``s`` for ``raw``)."""
        return float(strength) * self.scale

    # -------------------------------------------------------------- Δw
    def delta64(self, strength: float = 1.0, layers: str | Iterable[int] | None = None) -> torch.Tensor:
        """Δw in float64 on the CPU: (n_latent, D) = ``strength · scale · vector`` on ``layers``.

        Raises:
            DirectionError: a non-finite strength, or one so large that Δw overflows float64.
        """
        rows = parse_layers(layers, self.n_latent)
        s = check_strength(strength, f"strength of {self.name}")
        d = (s * self.scale) * self.vector.expand(self.n_latent, -1)
        if not torch.isfinite(d).all():
            raise DirectionError(f"strength {s:g} of {self.name} overflows: the offset is not finite")
        if rows is not None:
            mask = torch.zeros(self.n_latent, 1, dtype=torch.float64)
            mask[list(rows)] = 1.0
            d = d * mask
        return d.contiguous()

    def delta(self, strength: float = 1.0, layers: str | Iterable[int] | None = None, *,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Δw (n_latent, D) in ``dtype`` on ``device``, computed once per (strength, layers, device, dtype).

        Args:
            strength: s of the convention (float).
            layers: style rows to edit (see :func:`parse_layers`); None = all.
            device, dtype: of the result (default CPU float32).

        Returns:
            (n_latent, D) tensor; do not modify it in place (it is cached).
        """
        rows = parse_layers(layers, self.n_latent)
        key = (float(strength), rows, str(torch.device(device) if device is not None else "cpu"), dtype)
        hit = self._cache.get(key)
        if hit is None:
            hit = self.delta64(strength, rows).to(device=device, dtype=dtype)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def apply(self, w: torch.Tensor, strength: float | torch.Tensor = 1.0,
              layers: str | Iterable[int] | None = None) -> torch.Tensor:
        """Edit W+ codes: ``w + Δw``.

        Args:
            w: (B, n_latent, D) or (n_latent, D) float W+ codes (latent_avg included, as the encoder
                returns them).
            strength: a float, or a (B,) tensor for one strength per code (a ramp over frames).
            layers: style rows to edit (see :func:`parse_layers`); None = all rows.

        Returns:
            The edited codes, same shape, dtype and device as ``w`` (a new tensor).

        Raises:
            ValueError: ``w`` does not end in (n_latent, D), or a strength tensor of the wrong size.
            DirectionError: non-finite strength(s).
        """
        _check_w(w, self.n_latent, self.style_dim, self.name)
        if isinstance(strength, torch.Tensor) and strength.ndim > 0:
            if not torch.isfinite(strength).all():
                raise DirectionError(f"{self.name}: the strength tensor holds NaN or infinite values")
            s = strength.to(device=w.device, dtype=w.dtype).reshape(-1)
            if w.ndim != 3 or s.shape[0] != w.shape[0]:
                raise ValueError(f"{self.name}: a strength tensor needs one value per code: got {tuple(s.shape)} "
                                 f"for w of shape {tuple(w.shape)}")
            return w + s.view(-1, 1, 1) * self.delta(1.0, layers, device=w.device, dtype=w.dtype)
        return w + self.delta(float(strength), layers, device=w.device, dtype=w.dtype)

    __call__ = apply

    def stats(self, strength: float = 1.0, layers: str | Iterable[int] | None = None) -> dict[str, float]:
        """Size of Δw at ``strength``: ``frobenius`` (L2 over the whole W+ code), ``row_rms`` (RMS of the
        per-row L2 norms over all rows), ``row_mean`` (mean per-row L2 over the edited rows),
        ``row_max`` and ``rows`` (number of edited rows)."""
        d = self.delta64(strength, layers)
        r = d.norm(dim=1)
        edited = r[r > 0]
        return {"frobenius": float(d.norm()), "row_rms": float(r.square().mean().sqrt()),
                "row_mean": float(edited.mean()) if edited.numel() else 0.0,
                "row_max": float(r.max()), "rows": int(edited.numel())}

    def __repr__(self) -> str:
        shape = tuple(self.vector.shape)
        return (f"Direction({self.name!r}, shape={shape}, convention={self.convention!r}, "
                f"scale={self.scale:.4g}, source={self.source!r})")


def _check_w(w: torch.Tensor, n_latent: int, style_dim: int, name: str) -> None:
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"{name}: w must be a torch tensor, got {type(w).__name__}")
    if w.ndim not in (2, 3) or tuple(w.shape[-2:]) != (n_latent, style_dim):
        raise ValueError(f"{name}: expected W+ codes of shape (B, {n_latent}, {style_dim}) or "
                         f"({n_latent}, {style_dim}), got {tuple(w.shape)}")
    if not w.is_floating_point():
        raise ValueError(f"{name}: w must be a float tensor, got {w.dtype}")


def load_direction_file(path: str | os.PathLike, convention: str, *, name: str | None = None,
                        n_latent: int = N_LATENT, style_dim: int = STYLE_DIM, sign: float = 1.0) -> Direction:
    """Load a user's own direction file (``--direction FILE``) with an explicit convention.

    Args:
        path: ``.npy`` or ``.pt`` holding one array of shape (512,), (1, 512), (18, 512),
            (1, 18, 512), (1, 9216) or (9216,) (any float dtype; kept in float64).
        convention: ``"fs"`` (``w + 15·s·d``), ``"unit"`` (``||Δw||_F = 15·s``) or ``"raw"``
            (``w + s·d``); see the module doc.
        name: display name (default ``"file:<path>"``).
        n_latent, style_dim: W+ layout (18, 512).
        sign: +1 or -1.

    Returns:
        A :class:`Direction` with ``source="file"``.

    Raises:
        DirectionError: unreadable/missing file, several arrays in it, non-finite values, unknown
            convention.
        DirectionShapeError: unsupported shape; the message names the file, the shape found and the
            accepted shapes.
    """
    arr = read_array(path)
    return Direction.from_array(arr, convention, name=name or f"file:{path}", n_latent=n_latent,
                                style_dim=style_dim, source="file", path=path, sign=sign,
                                description=f"user direction {Path(path).name} ({convention})")


# ----------------------------------------------------------------------------------- several at once

@dataclass(frozen=True)
class EditTerm:
    """One direction at one strength on some rows (a part of a :class:`LatentEdit`).

    Raises:
        DirectionError: a non-finite strength.
    """

    direction: Direction
    strength: float = 1.0
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # refuse NaN / inf here, so that no LatentEdit can hold one (see check_strength)
        object.__setattr__(self, "strength", check_strength(self.strength, f"strength of {self.direction.name}"))

    def describe(self) -> str:
        """``"fs:smile x1 (rows all)"``-style text."""
        return f"{self.direction.name} x{self.strength:g} (rows {format_layers(self.layers)})"


class LatentEdit:
    """Several directions applied together: ``w' = w + Σ_i Δw_i`` (the sum of their offsets).

    Δw of the sum is computed once per device/dtype and cached, so applying the edit to every frame
    of a video is one broadcast add per frame.

    Args:
        terms: :class:`EditTerm` s, or ``(direction, strength)`` / ``(direction, strength, layers)``
            tuples, or bare :class:`Direction` s (strength 1).

    Raises:
        DirectionError: directions of different W+ layouts, bad layers, a non-finite strength, or a
            sum of offsets that overflows (not finite).
    """

    def __init__(self, terms: Iterable[EditTerm | Direction | tuple] = ()):
        out: list[EditTerm] = []
        for t in terms:
            if isinstance(t, EditTerm):
                term = t
            elif isinstance(t, Direction):
                term = EditTerm(t)
            else:
                d, *rest = t
                s = float(rest[0]) if rest else 1.0
                lay = rest[1] if len(rest) > 1 else None
                term = EditTerm(d, s, parse_layers(lay, d.n_latent))
            if term.layers is not None:
                term = EditTerm(term.direction, float(term.strength), parse_layers(term.layers,
                                                                                   term.direction.n_latent))
            out.append(term)
        layouts = {(t.direction.n_latent, t.direction.style_dim) for t in out}
        if len(layouts) > 1:
            raise DirectionError(f"cannot combine directions of different W+ layouts: {sorted(layouts)}")
        self.terms: tuple[EditTerm, ...] = tuple(out)
        self._cache: dict = {}
        if self.terms and not torch.isfinite(self.delta64()).all():
            raise DirectionError(f"the edit {self.describe()} overflows: the summed offset is not finite")

    @property
    def n_latent(self) -> int:
        """W+ rows of the codes the edit applies to (18 when empty)."""
        return self.terms[0].direction.n_latent if self.terms else N_LATENT

    @property
    def style_dim(self) -> int:
        """Latent size D (512 when empty)."""
        return self.terms[0].direction.style_dim if self.terms else STYLE_DIM

    @property
    def is_identity(self) -> bool:
        """True when the edit adds nothing (no terms, or every strength 0)."""
        return all(t.strength == 0.0 for t in self.terms)

    def delta64(self) -> torch.Tensor:
        """Σ Δw_i, (n_latent, D) float64 CPU."""
        total = torch.zeros(self.n_latent, self.style_dim, dtype=torch.float64)
        for t in self.terms:
            total += t.direction.delta64(t.strength, t.layers)
        return total

    def delta(self, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Σ Δw_i, (n_latent, D), cached per device/dtype (do not modify it in place)."""
        key = (str(torch.device(device) if device is not None else "cpu"), dtype)
        hit = self._cache.get(key)
        if hit is None:
            if len(self.terms) == 1:  # same rounding as the direction alone
                t = self.terms[0]
                hit = t.direction.delta64(t.strength, t.layers).to(device=device, dtype=dtype)
            else:
                hit = self.delta64().to(device=device, dtype=dtype)
            self._cache[key] = hit
        return hit

    def apply(self, w: torch.Tensor) -> torch.Tensor:
        """``w + Σ Δw_i`` for W+ codes (B, n_latent, D) or (n_latent, D); same dtype/device as ``w``."""
        _check_w(w, self.n_latent, self.style_dim, "edit")
        return w + self.delta(device=w.device, dtype=w.dtype)

    __call__ = apply

    def describe(self) -> str:
        """One line: ``"fs:smile x1 (rows all) + stit:age x-0.5 (rows 0-7)"`` (``"identity"`` if empty)."""
        return " + ".join(t.describe() for t in self.terms) if self.terms else "identity"

    def __repr__(self) -> str:
        return f"LatentEdit({self.describe()})"


def as_delta(edit: LatentEdit | Direction | torch.Tensor | np.ndarray, *, device=None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Δw of an edit given as a :class:`LatentEdit`, a :class:`Direction` (strength 1) or an array
    (n_latent, D) / (B, n_latent, D); returned in ``dtype`` on ``device``."""
    if isinstance(edit, LatentEdit):
        return edit.delta(device=device, dtype=dtype)
    if isinstance(edit, Direction):
        return edit.delta(1.0, device=device, dtype=dtype)
    return torch.as_tensor(edit).to(device=device, dtype=dtype)
