"""The pSp inverter (Richardson et al., CVPR 2021): W+ only, no feature code.

The encoder is pSp's GradualStyleEncoder of ``psp_ffhq_encode.pt`` (or of a pSp checkpoint trained with
vidinv's ``training/``), run through :meth:`vidinv.models.psp.PSP.encode` (``W+ = encoder(x) + latent_avg``
when the checkpoint was trained with ``start_from_latent_avg``) on faces aligned at
:data:`~vidinv.models.psp.PSP_INPUT_SIZE` (256).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vidinv.inverters.base import GENERATOR_FILE, Inverter
from vidinv.models.psp import PSP, PSP_INPUT_SIZE, load_psp_encoder

__all__ = ["PSPInverter"]


class PSPInverter(Inverter):
    """pSp GradualStyleEncoder + StyleGAN2 generator (see the module doc and :class:`Inverter`).

    Attributes:
        model: the :class:`vidinv.models.psp.PSP` network (the encoder, this generator as its decoder, the
            checkpoint's latent_avg) once the encoder is loaded.
    """

    kind = "psp"
    description = "pSp GradualStyleEncoder (Richardson et al., CVPR 2021): W+ only"
    feature_index = None
    default_feature_shape = None
    encoder_file = GENERATOR_FILE

    model: PSP | None = None

    def load_encoder(self, path: Path) -> None:
        """Load the encoder half of a pSp checkpoint (:func:`vidinv.models.psp.load_psp_encoder`) and its
        latent_avg.

        Raises:
            ValueError: its W+ rows do not fit the generator.
        """
        G = self.generator
        enc, avg = load_psp_encoder(path)
        if enc.n_styles != G.n_latent:
            raise ValueError(f"{path}: the pSp encoder gives {enc.n_styles} W+ rows; the generator in "
                             f"{self.generator_path} needs {G.n_latent}")
        self.model = PSP(enc, G, avg, start_from_latent_avg=avg is not None).to(self.runtime.torch_device).eval()
        self.encoder = self.model.encoder

    @property
    def align_size(self) -> int:
        """256: pSp's encoder input."""
        return PSP_INPUT_SIZE

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        if self.model is None:
            raise RuntimeError("this inverter was loaded without an encoder")
        return self.model.encode(x), None
