"""The edit rule: a built latent edit applied to inverted frames (Feature-Style, Yao et al., ECCV 2022, eq. 1).

The encoder gives each aligned face a W+ code w (B, 18, 512) and, for the Feature-Style encoder, a
feature code F (B, 512, 16, 16) that replaces the generator's activation after layer K
(:data:`vidinv.models.fs_encoder.FS_FEATURE_LAYER`, 5). A latent edit ``w' = w + Δw`` (Δw = Σ s·scale·d
over the edit's directions, on their style rows) must move F along, which eq. 1 does with the generator's
own activations:

    ``F' = F + G^K(w') - G^K(w)``,   image = G(w', F' injected at K)

:func:`apply_edit` is the one function that does this, for the ``vidinv edit`` render stage and for
library users: it builds w' from the edit (:func:`edited_latent`) and runs the generator's fast path,
:func:`vidinv.models.stylegan2.edit_image` (one coarse pass on w, one coarse + fine pass on w';
``num_layers + K`` styled conv layers instead of three full syntheses). A frame without a feature code
(pSp) is rendered as ``G(w')``.
"""
from __future__ import annotations

import numpy as np
import torch

from vidinv.edit.directions import Direction, LatentEdit, as_delta
from vidinv.models import stylegan2
from vidinv.models.fs_encoder import FS_FEATURE_LAYER

__all__ = ["apply_edit", "edited_latent"]


def edited_latent(w: torch.Tensor, edit: LatentEdit | Direction | torch.Tensor | np.ndarray) -> torch.Tensor:
    """``w' = w + Δw`` for W+ codes w (B, n_latent, D) and an edit (Δw (n_latent, D) or (B, n_latent, D),
    a :class:`Direction` at strength 1, or a :class:`LatentEdit`); Δw follows w's dtype and device.

    Raises:
        ValueError: Δw does not fit w's shape.
    """
    if isinstance(edit, LatentEdit):
        return edit.apply(w)
    d = as_delta(edit, device=w.device, dtype=w.dtype)
    if d.shape[-2:] != w.shape[-2:]:
        raise ValueError(f"Δw of shape {tuple(d.shape)} does not fit W+ codes of shape {tuple(w.shape)}")
    return w + d


@torch.no_grad()
def apply_edit(G, w: torch.Tensor, F: torch.Tensor | None, edit: LatentEdit | Direction | torch.Tensor | np.ndarray,
               k: int | None = FS_FEATURE_LAYER, *, noise="const", feature_scale: float = 1.0,
               return_all: bool = False):
    """Apply a built edit to inverted frames: eq. 1 through the generator's coarse/fine path.

    Args:
        G: :class:`vidinv.models.stylegan2.Generator` (its device/dtype are used).
        w: W+ codes (B, n_latent, D) of the frames (encoder output, latent_avg included).
        F: feature codes (B, C, H, W) at index k ((B, 512, 16, 16) for K = 5), float (a float16 F read
            from an inversion file is cast to the generator's dtype); None for an encoder without one
            (pSp): the image is then ``G(w')`` with the generator's noise.
        edit: the latent edit: a :class:`LatentEdit` (sum of directions, Δw cached), a
            :class:`Direction` (strength 1), or Δw as (n_latent, D) / (B, n_latent, D).
        k: feature index K (:data:`~vidinv.models.fs_encoder.FS_FEATURE_LAYER` for the Feature-Style
            encoder); unused without F (None is then accepted).
        noise: as in :meth:`Generator.synthesis` (``"const"``: the same noise in every frame; ``"random"``:
            with F, one draw shared by the passes of eq. 1).
        feature_scale: injection weight (1 = replace); unused without F.
        return_all: also return w' and F' (None without F).

    Returns:
        image (B, 3, size, size) in the generator's dtype, about [-1, 1] RGB with real weights; with
        ``return_all`` the tuple ``(image, w_edit, F_edit)``.

    Raises:
        ValueError: codes or Δw whose shapes do not fit the generator / each other; F without k.
    """
    ref = next(G.parameters())
    w = torch.as_tensor(w).to(device=ref.device, dtype=ref.dtype)
    w_edit = edited_latent(w, edit)
    if F is None:
        image, f_edit = G.synthesis(w_edit, noise=noise), None
    else:
        if k is None:
            raise ValueError("a feature code F needs the generator layer it replaces: pass k")
        out = stylegan2.edit_image(G, w, F, w_edit, k, noise=noise, feature_scale=feature_scale,
                                   return_feature=return_all)
        image, f_edit = out if return_all else (out, None)
    return (image, w_edit, f_edit) if return_all else image
