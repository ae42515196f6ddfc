"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, CVPR 2021).

A style row w_r of W+ reaches the generator only through the affine "modulation" layers
``y = A_l w + b`` of the layers that read it (each styled conv's ``conv.modulation`` and, optionally,
the ToRGBs'). Moving w by ``n`` changes the styles by ``A n``; SeFa takes as editing directions the
unit vectors that change the styles most:

    ``n* = argmax_{|n|=1} Σ_l |A_l n|²``  ->  the top eigenvectors of ``AᵀA`` (paper eq. 5-6),

where ``A`` stacks the modulation weights of the chosen layers. As in the official implementation
(genforce/sefa ``factorize_weight``), every row of ``A`` (the weights of one style channel, a
512-vector) is first scaled to unit L2 norm, so each channel counts the same whatever its learned
scale (the equalized-lr factor ``1/√512`` is uniform and disappears with it).

Layer choice (``rows``: W+ rows, as everywhere in :mod:`vidinv.edit`): by default every row read by
a styled conv, i.e. rows 0..num_layers-1 (0..16 at 1024) with ``conv1.conv.modulation`` (row 0)
and ``convs.{r-1}.conv.modulation`` (row r); this is the set rosinality's / e4e's SeFa code uses.
``include_torgb=True`` adds the ToRGB modulations of the selected rows (``to_rgb1`` reads row 1,
``to_rgbs.{i}`` row 2i+3; the last row, 17 at 1024, is read by ``to_rgbs.7`` only), as the official
code does for its last layer. Sub-ranges give layer-specific semantics: e.g. rows 0-3 (pose,
face shape), 4-7 (expression, hair), 8-17 (colour, lighting).

Output: ``SefaResult.directions`` (N, D) float32 on the CPU, unit L2 norm, mutually orthogonal,
sorted by eigenvalue (descending), each with a deterministic sign (largest-magnitude entry positive;
the sign of an eigenvector is arbitrary). An edit with direction i and distance t is
``w[:, rows] += t · n_i`` (SeFa's ``temp_code[:, layers, :] += boundary * distance``).

As a ``--direction`` file: :meth:`SefaResult.save` writes ``sefa_<i>.npy`` of shape (n_latent, D)
float32 = n_i on the selected rows and 0 elsewhere, so the file carries its layer choice. Load it
with convention ``raw`` (strength = SeFa distance: each selected row moves by ``strength``; the e4e
examples use distances up to 15) or ``unit`` (vidinv's scale: ``|Δw|_F = 15·strength`` spread over
the selected rows), see :mod:`vidinv.edit.directions`.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidinv.edit.directions import Direction, DirectionError, format_layers, parse_layers
from vidinv.io.outputs import atomic_write, atomic_write_text

__all__ = ["SefaResult", "sefa", "style_layers", "modulation_weights"]

_CONVS = re.compile(r"^convs\.(\d+)\.conv\.modulation\.weight$")
_RGBS = re.compile(r"^to_rgbs\.(\d+)\.conv\.modulation\.weight$")


def _state_dict(G: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(G, nn.Module):
        return G.state_dict()
    if isinstance(G, Mapping):
        return G
    raise TypeError(f"expected a StyleGAN2 Generator or its state_dict, got {type(G).__name__}")


def style_layers(
    G: nn.Module | Mapping[str, torch.Tensor],
) -> tuple[int, int, dict[int, list[str]], dict[int, list[str]]]:
    """Which modulation layers read which W+ row.

    Args:
        G: a :class:`vidinv.models.stylegan2.Generator` or a generator state_dict with the official key
            names (``conv1.conv.modulation.weight``, ``convs.{i}.conv.modulation.weight``,
            ``to_rgb1...``, ``to_rgbs.{i}...``).

    Returns:
        ``(num_layers, n_latent, conv_rows, rgb_rows)``: ``conv_rows[r]`` / ``rgb_rows[r]`` list the
        modulation weight keys of the styled convs / ToRGBs that read row r.

    Raises:
        KeyError: no ``conv1.conv.modulation.weight`` (not a StyleGAN2 generator state_dict).
    """
    sd = _state_dict(G)
    if "conv1.conv.modulation.weight" not in sd:
        raise KeyError("not a StyleGAN2 generator state_dict: no 'conv1.conv.modulation.weight' "
                       f"(first keys: {list(sd)[:6]})")
    convs = sorted(int(m.group(1)) for k in sd if (m := _CONVS.match(k)))
    rgbs = sorted(int(m.group(1)) for k in sd if (m := _RGBS.match(k)))
    num_layers = len(convs) + 1
    n_latent = num_layers + 1
    conv_rows: dict[int, list[str]] = {0: ["conv1.conv.modulation.weight"]}
    for i in convs:
        conv_rows[i + 1] = [f"convs.{i}.conv.modulation.weight"]
    rgb_rows: dict[int, list[str]] = {}
    if "to_rgb1.conv.modulation.weight" in sd:
        rgb_rows[1] = ["to_rgb1.conv.modulation.weight"]
    for i in rgbs:
        rgb_rows[2 * i + 3] = [f"to_rgbs.{i}.conv.modulation.weight"]
    return num_layers, n_latent, conv_rows, rgb_rows


def modulation_weights(G: nn.Module | Mapping[str, torch.Tensor], rows: Sequence[int] | str | None = None,
                       include_torgb: bool = False) -> tuple[torch.Tensor, tuple[int, ...], list[str], int]:
    """Stack the modulation weights SeFa factorizes.

    Args:
        G: generator or its state_dict.
        rows: W+ rows (see :func:`vidinv.edit.directions.parse_layers`); None = every row read by a
            styled conv (plus, with ``include_torgb``, every row read by a ToRGB).
        include_torgb: also use the ToRGB modulations of the rows.

    Returns:
        ``(A, rows, keys, n_latent)``: A (M, D) float64 CPU with one row per style channel (not yet
        normalised), the rows used, the state_dict keys stacked (in order) and n_latent.

    Raises:
        DirectionError: a selected row that no chosen layer reads (e.g. the last row without
            ``include_torgb``), or bad row syntax.
    """
    sd = _state_dict(G)
    num_layers, n_latent, conv_rows, rgb_rows = style_layers(sd)
    sel = parse_layers(rows, n_latent)
    if sel is None:
        sel = tuple(range(n_latent)) if include_torgb else tuple(range(num_layers))
    keys: list[str] = []
    for r in sel:
        ks = list(conv_rows.get(r, [])) + (list(rgb_rows.get(r, [])) if include_torgb else [])
        if not ks:
            hint = " (it is read by a ToRGB only: add include_torgb / --torgb)" if r in rgb_rows else ""
            raise DirectionError(f"W+ row {r} is read by no styled conv layer{hint}")
        keys.extend(ks)
    A = torch.cat([sd[k].detach().to("cpu", torch.float64).reshape(-1, sd[k].shape[-1]) for k in keys], 0)
    return A, tuple(sel), keys, n_latent


@dataclass
class SefaResult:
    """SeFa directions of one generator and layer choice.

    Attributes:
        directions: (N, D) float32 CPU, unit norm, orthogonal, by decreasing eigenvalue.
        eigenvalues: (N,) float64, decreasing (eigenvalues of AᵀA with row-normalised A).
        rows: the W+ rows the directions were computed for (and are applied to).
        modules: the modulation weight keys stacked in A.
        n_latent: W+ rows of the generator (18 at 1024).
        source: where the generator came from (a file name), for the metadata.
    """

    directions: torch.Tensor
    eigenvalues: torch.Tensor
    rows: tuple[int, ...]
    modules: list[str]
    n_latent: int
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of directions N."""
        return int(self.directions.shape[0])

    def to_wplus(self, i: int) -> torch.Tensor:
        """Direction i as a W+ direction (n_latent, D) float32: n_i on :attr:`rows`, 0 elsewhere."""
        out = torch.zeros(self.n_latent, self.directions.shape[1], dtype=torch.float32)
        out[list(self.rows)] = self.directions[i]
        return out

    def direction(self, i: int, convention: str = "raw") -> Direction:
        """Direction i as a :class:`~vidinv.edit.directions.Direction` (``raw``: strength = SeFa distance)."""
        return Direction.from_array(self.to_wplus(i), convention, name=f"sefa:{i}", n_latent=self.n_latent,
                                    style_dim=int(self.directions.shape[1]), source="sefa",
                                    description=f"SeFa direction {i} (eigenvalue {float(self.eigenvalues[i]):.4g}, "
                                                f"rows {format_layers(self.rows)})")

    def save(self, out_dir: str | os.PathLike, prefix: str = "sefa") -> list[Path]:
        """Write ``<prefix>_<i>.npy`` ((n_latent, D) float32, see :meth:`to_wplus`) for every direction and
        ``<prefix>.json`` (eigenvalues, rows, modules, source, how to use the files).

        Files are written to a temporary name and renamed, so a crash leaves no half-written file.

        Returns:
            The .npy paths, in order.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        width = max(2, len(str(len(self) - 1)))
        paths = []
        for i in range(len(self)):
            p = out / f"{prefix}_{i:0{width}d}.npy"
            with atomic_write(p) as f:
                np.save(f, self.to_wplus(i).numpy())
            paths.append(p)
        meta = {
            "method": "SeFa (Shen & Zhou, CVPR 2021): top eigenvectors of A^T A, A = row-normalised modulation weights",
            "source": self.source, "rows": list(self.rows), "rows_text": format_layers(self.rows),
            "modules": self.modules, "n_latent": self.n_latent, "style_dim": int(self.directions.shape[1]),
            "eigenvalues": [float(v) for v in self.eigenvalues],
            "files": [p.name for p in paths],
            "file_shape": [self.n_latent, int(self.directions.shape[1])],
            "usage": "vidinv edit --direction FILE with convention raw (strength = SeFa distance per selected "
                     "row) or unit (|dw| = 15*strength over W+)",
            **self.meta,
        }
        atomic_write_text(out / f"{prefix}.json", json.dumps(meta, indent=2) + "\n")
        return paths


def sefa(G: nn.Module | Mapping[str, torch.Tensor], top: int | None = None, rows: Sequence[int] | str | None = None,
         include_torgb: bool = False, source: str = "") -> SefaResult:
    """Closed-form factorization (SeFa) of a StyleGAN2 generator's style layers.

    Args:
        G: a :class:`vidinv.models.stylegan2.Generator` (any device/dtype) or its state_dict.
        top: number of directions N (default: all D).
        rows: W+ rows whose modulation layers are factorized (see the module doc); None = rows
            0..num_layers-1 (all styled convs).
        include_torgb: also stack the ToRGB modulations of those rows.
        source: description of the generator (stored in the result).

    Returns:
        :class:`SefaResult` with ``directions`` (N, D) float32 unit vectors sorted by decreasing
        eigenvalue of ``AᵀA`` (float64 ``torch.linalg.eigh``).

    Raises:
        DirectionError: bad rows; ValueError: ``top`` outside 1..D.
    """
    A, sel, keys, n_latent = modulation_weights(G, rows, include_torgb)
    D = A.shape[1]
    if top is None:
        top = D
    if not 1 <= int(top) <= D:
        raise ValueError(f"top must be in 1..{D}, got {top}")
    norms = A.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise DirectionError("a modulation weight row is zero; cannot normalise (is the generator initialised?)")
    A = A / norms
    evals, evecs = torch.linalg.eigh(A.T @ A)  # ascending
    order = torch.argsort(evals, descending=True)[: int(top)]
    vecs = evecs[:, order].T.contiguous()  # (N, D)
    idx = vecs.abs().argmax(dim=1)
    signs = torch.sign(vecs[torch.arange(vecs.shape[0]), idx])
    vecs = vecs * signs[:, None]
    return SefaResult(directions=vecs.to(torch.float32), eigenvalues=evals[order].clone(), rows=sel,
                      modules=keys, n_latent=n_latent, source=source,
                      meta={"include_torgb": bool(include_torgb)})
