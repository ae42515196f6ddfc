"""The Feature-Style inverter (Yao, Newson, Gousseau, Hellier, ECCV 2022): W+ and a feature code F at layer K.

The encoder (:class:`vidinv.models.fs_encoder.FeatureStyleEncoder`, official ``143_enc.pth``) reads the
face aligned at the generator's size (1024) and downscales it twice to its 256 input, as the reference
``Trainer.encode`` does; it predicts W+ as an offset from ``latent_avg`` and F (512, 16, 16), which
replaces the generator's activation at K = :data:`~vidinv.models.fs_encoder.FS_FEATURE_LAYER`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vidinv.inverters.base import Inverter
from vidinv.models.fs_encoder import FS_FEATURE_LAYER, FeatureStyleEncoder, load_fs_encoder

__all__ = ["FeatureStyleInverter", "FS_ENCODER_FILE"]

#: Registry name of the official Feature-Style encoder weights.
FS_ENCODER_FILE = "143_enc.pth"


class FeatureStyleInverter(Inverter):
    """Feature-Style encoder + StyleGAN2 generator (see the module doc and :class:`Inverter`)."""

    kind = "fs"
    description = "Feature-Style encoder (Yao et al., ECCV 2022): W+ and a feature code F at layer K = 5"
    feature_index = FS_FEATURE_LAYER
    default_feature_shape = (512, 16, 16)  # F of the official encoder and 1024 generator at K = 5
    encoder_file = FS_ENCODER_FILE
    fs_encoder: FeatureStyleEncoder | None = None

    def load_encoder(self, path: Path) -> None:
        """Load a Feature-Style encoder (:func:`vidinv.models.load_fs_encoder`: ``143_enc.pth`` or an export of
        vidinv's ``training/``).

        Raises:
            ValueError: its W+ rows or F shape do not fit the generator.
        """
        G = self.generator
        enc = load_fs_encoder(path, device=self.runtime.torch_device)
        want = tuple(G.feature_shape(self.feature_index))
        if enc.n_styles != G.n_latent or (enc.content_channels, 16, 16) != want:
            raise ValueError(f"{path}: the encoder gives {enc.n_styles} W+ rows and F with {enc.content_channels} "
                             f"channels; the generator in {self.generator_path} needs {G.n_latent} rows and F of "
                             f"shape {want}")
        self.encoder = self.fs_encoder = enc

    @property
    def align_size(self) -> int:
        """The generator size (1024): :meth:`FeatureStyleEncoder.encode` halves it twice, as the reference does."""
        return int(self.generator.size)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fs_encoder is None:
            raise RuntimeError("this inverter was loaded without an encoder")
        return self.fs_encoder.encode(x, self.latent_avg)
