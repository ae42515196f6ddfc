"""Editing one inverted frame (w, F) with the Feature-Style rule (Yao et al., ECCV 2022, eq. 1).

The encoder gives each aligned face a W+ code w (B, 18, 512) and a feature code F (B, 512, 16, 16)
that replaces the generator's activation after layer K = 5. A latent edit ``w' = w + Δw`` must move
F along, which eq. 1 does with the generator's own activations:

    ``F' = F + G^K(w') - G^K(w)``,   image = G(w', F' injected at K)

:func:`edit_frame` builds w' from an edit (:class:`~vidinv.edit.directions.LatentEdit`,
:class:`~vidinv.edit.directions.Direction` or a Δw tensor) and runs the generator's fast path,
:func:`vidinv.models.stylegan2.edit_image` (one coarse pass on w, one coarse + fine pass on w';
``num_layers + K`` styled conv layers instead of three full syntheses).
"""
from __future__ import annotations

import numpy as np
import torch

from vidinv.edit.directions import Direction, LatentEdit, as_delta

__all__ = ["edit_frame", "edited_latent"]


def edited_latent(w: torch.Tensor, edit: "LatentEdit | Direction | torch.Tensor | np.ndarray") -> torch.Tensor:
    """``w' = w + Δw`` for W+ codes w (B, n_latent, D) and an edit (Δw (n_latent, D) or (B, n_latent, D),
    a :class:`Direction` at strength 1, or a :class:`LatentEdit`); Δw follows w's dtype and device."""
    if isinstance(edit, LatentEdit):
        return edit.apply(w)
    d = as_delta(edit, device=w.device, dtype=w.dtype)
    if d.shape[-2:] != w.shape[-2:]:
        raise ValueError(f"Δw of shape {tuple(d.shape)} does not fit W+ codes of shape {tuple(w.shape)}")
    return w + d


@torch.no_grad()
def edit_frame(G, w: torch.Tensor, F: torch.Tensor, edit: "LatentEdit | Direction | torch.Tensor | np.ndarray",
               k: int = 5, *, noise="const", feature_scale: float = 1.0, return_all: bool = False):
    """Edit inverted frames with eq. 1 through the generator's coarse/fine path.

    Args:
        G: :class:`vidinv.models.stylegan2.Generator` (its device/dtype are used).
        w: W+ codes (B, n_latent, D) of the frames (encoder output, latent_avg included).
        F: feature codes (B, C, H, W) at index k ((B, 512, 16, 16) for k = 5), float (a float16 F
            read from an inversion file is cast to the generator's dtype).
        edit: the latent edit: a :class:`LatentEdit` (sum of directions, Δw cached), a
            :class:`Direction` (strength 1), or Δw as (n_latent, D) / (B, n_latent, D).
        k: feature index K (5 for the Feature-Style encoder).
        noise: as in :meth:`Generator.synthesis` (``"const"``: the same noise in every frame).
        feature_scale: injection weight (1 = replace).
        return_all: also return w' and F'.

    Returns:
        image (B, 3, size, size) in the generator's dtype, about [-1, 1] RGB with real weights; with
        ``return_all`` the tuple ``(image, w_edit, F_edit)``.
    """
    from vidinv.models.stylegan2 import edit_image

    ref = next(G.parameters())
    w = torch.as_tensor(w).to(device=ref.device, dtype=ref.dtype)
    w_edit = edited_latent(w, edit)
    image, f_edit = edit_image(G, w, F, w_edit, k, noise=noise, feature_scale=feature_scale, return_feature=True)
    return (image, w_edit, f_edit) if return_all else image
