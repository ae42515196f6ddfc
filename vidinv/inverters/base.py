"""The :class:`Inverter` interface: what a job needs from an encoder and its generator.

An inverter maps aligned face crops to codes of a StyleGAN2 generator and renders codes back:

* :meth:`Inverter.crop`: a frame and a face's quad -> the encoder's input crop (the FFHQ-aligned crop at
  :attr:`Inverter.align_size`, unless a task reads another view of the face).
* :meth:`Inverter.encode`: crops (B, S, S, 3) uint8 RGB, ``S =`` :attr:`Inverter.align_size` ->
  ``(w, F)``: W+ codes (B, n_latent, 512) float32 (latent_avg included) and, for encoders that have
  one, the feature code F (B, C, H, W) that replaces the generator's activation at layer
  :attr:`Inverter.feature_index` (K), float32 holding :data:`F_STORAGE_DTYPE` values; else None.
* :meth:`Inverter.synthesize`: ``G(w)`` or ``G(w, F injected at K)``.
* :meth:`Inverter.edit`: a built latent edit applied with the edit rule, :func:`vidinv.edit.apply_edit`
  (Feature-Style eq. 1 when F is present).

Implementations (:mod:`vidinv.inverters.fs`, :mod:`vidinv.inverters.psp`) say which weight files they
need (:meth:`Inverter.weight_names`) and how their encoder is loaded; the generator and its
``latent_avg`` come from :attr:`Inverter.generator_file` (``psp_ffhq_encode.pt``, :data:`GENERATOR_FILE`,
for the inversion encoders; the task file itself for pSp's task models, :mod:`vidinv.inverters.tasks`).
They are built by kind through the registry, :func:`vidinv.inverters.build_inverter`.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vidinv.device import Runtime
from vidinv.edit.frame import apply_edit
from vidinv.face import align
from vidinv.models.stylegan2 import Generator, load_generator

log = logging.getLogger(__name__)

__all__ = ["Inverter", "GENERATOR_FILE", "LATENT_AVG_SAMPLES", "F_STORAGE_DTYPE", "load_generator_and_average"]

#: Registry name of the generator file (pSp's FFHQ encoder checkpoint holds the StyleGAN2 decoder and latent_avg).
GENERATOR_FILE = "psp_ffhq_encode.pt"
#: Number of random z whose mapped w are averaged when the generator file has no latent_avg.
LATENT_AVG_SAMPLES = 4096
#: The feature code F is rounded to float16 in every path: the precision the inversion export stores it
#: in (:mod:`vidinv.io.inversion`), so that ``vidinv edit --from-inversion`` reproduces a direct run bit for
#: bit. Relative rounding error <= 2**-11, far below one uint8 level of the output.
F_STORAGE_DTYPE = torch.float16


def load_generator_and_average(path: str | os.PathLike, device: torch.device) -> tuple[Generator, torch.Tensor]:
    """The StyleGAN2 generator of ``path`` (eval, on ``device``, float32) and its latent_avg (n_latent, 512)
    float32 on ``device``.

    When the file has no ``latent_avg``, the average is estimated as the mean of the mapping network's w
    over :data:`LATENT_AVG_SAMPLES` random z (seed 0), and a WARNING says so.

    Raises:
        vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: the file has the wrong layout.
    """
    G, latent_avg = load_generator(path, device=device)
    if latent_avg is None:
        log.warning("%s has no latent_avg; estimating the average latent from %d random z (mean of the mapping "
                    "network's w, seed 0). Codes and edits are relative to this estimate, not to the average the "
                    "encoder was trained with.", path, LATENT_AVG_SAMPLES)
        latent_avg = G.mean_latent(LATENT_AVG_SAMPLES, generator=torch.Generator(device=device).manual_seed(0))[0]
    latent_avg = latent_avg.to(device, torch.float32)
    if latent_avg.ndim == 1:
        latent_avg = latent_avg.unsqueeze(0).repeat(G.n_latent, 1)
    return G, latent_avg


class Inverter(ABC):
    """An encoder and the generator it inverts into (see the module doc).

    Class attributes (what a kind is, without loading anything):
        kind: the registry key (``vidinv edit --encoder KIND``, the export's ``encoder.kind``).
        description: one line for listings.
        feature_index: K, the generator layer whose activation F replaces, or None (no feature code).
        default_feature_shape: (C, H, W) of F with the official 1024 generator, or None.
        encoder_file: registry name of the official encoder weights.
        generator_file: registry name of the file the generator (and latent_avg) is read from.

    Attributes:
        generator: the StyleGAN2 :class:`~vidinv.models.stylegan2.Generator` (eval, on the runtime device,
            float32).
        latent_avg: (n_latent, 512) float32 average W+ of the generator, on the device.
        runtime: the :class:`~vidinv.device.Runtime` (device, precision).
        encoder: the encoder module, or None when loaded without it (``--from-inversion``).
        generator_path: the file the generator was read from.
    """

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    feature_index: ClassVar[int | None] = None
    default_feature_shape: ClassVar[tuple[int, int, int] | None] = None
    encoder_file: ClassVar[str]
    generator_file: ClassVar[str] = GENERATOR_FILE

    def __init__(self, generator: Generator, latent_avg: torch.Tensor, runtime: Runtime,
                 generator_path: str | os.PathLike = GENERATOR_FILE):
        self.generator = generator
        self.latent_avg = latent_avg
        self.runtime = runtime
        self.generator_path = Path(generator_path)
        self.encoder: torch.nn.Module | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def weight_names(cls, *, need_encoder: bool = True,
                     encoder_checkpoint: str | os.PathLike | None = None) -> list[str]:
        """Registry names of the model files this kind needs: the official encoder file (unless the
        encoder is not needed, ``--from-inversion``, or is the user's own ``encoder_checkpoint``) and the
        generator file, without duplicates."""
        names = [cls.encoder_file] if need_encoder and encoder_checkpoint is None else []
        return list(dict.fromkeys([*names, cls.generator_file]))

    @classmethod
    def load(cls, paths: Mapping[str, Path], runtime: Runtime | None = None, *, need_encoder: bool = True,
             encoder_checkpoint: str | os.PathLike | None = None) -> Inverter:
        """Load the generator (and latent_avg) from ``paths[generator_file]`` and, with ``need_encoder``,
        the encoder from ``encoder_checkpoint`` or ``paths[encoder_file]``.

        Args:
            paths: ``{registry name: path}`` (see :func:`vidinv.pipeline.runtime.resolve_weights`).
            runtime: device and precision (default :class:`~vidinv.device.Runtime`).
            need_encoder: load the encoder.
            encoder_checkpoint: the user's own encoder file (trained with vidinv's ``training/``); the
                generator still comes from :data:`GENERATOR_FILE` and the encoder must fit it.

        Raises:
            vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: a file has the wrong layout.
            ValueError: the encoder's codes do not fit the generator.
        """
        runtime = runtime or Runtime()
        G, latent_avg = load_generator_and_average(paths[cls.generator_file], runtime.torch_device)
        inv = cls(G, latent_avg, runtime, paths[cls.generator_file])
        if need_encoder:
            inv.load_encoder(Path(encoder_checkpoint) if encoder_checkpoint is not None else paths[cls.encoder_file])
        return inv

    @abstractmethod
    def load_encoder(self, path: Path) -> None:
        """Load the encoder from ``path`` onto the runtime device (eval) and check that it fits the generator.

        Raises:
            ValueError: W+ rows (or F's shape) that do not fit the generator.
        """

    # ------------------------------------------------------------------ geometry
    @property
    @abstractmethod
    def align_size(self) -> int:
        """Side (pixels) of the aligned crop :meth:`encode` takes."""

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of F for this generator, or None without a feature code."""
        if self.feature_index is None:
            return None
        c, h, w = self.generator.feature_shape(self.feature_index)
        return int(c), int(h), int(w)

    def crop(self, image: np.ndarray, quad: np.ndarray) -> np.ndarray:
        """The encoder's input crop of one face: the FFHQ-aligned crop (:func:`vidinv.face.align.align_crop`)
        at :attr:`align_size`. A task whose encoder reads another view of the face (pSp super-resolution: the
        face at its native resolution, resized) overrides this.

        Args:
            image: (H, W, 3) uint8 RGB frame. quad: (4, 2) float crop quad (frame pixels).

        Returns:
            (S, S, 3) uint8 RGB, S = :attr:`align_size`.
        """
        return align.align_crop(image, quad, self.align_size)

    # ------------------------------------------------------------------ codes
    @abstractmethod
    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, 3, S, S) float in [-1, 1] on the device (under the runtime's autocast) -> (w, F or None)."""

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Invert aligned crops.

        Args:
            crops: (B, S, S, 3) uint8 RGB aligned faces, S = :attr:`align_size`.

        Returns:
            ``(w, F)``: w (B, n_latent, 512) float32 W+ codes (latent_avg included) and F (B, C, H, W)
            float32 feature codes rounded to :data:`F_STORAGE_DTYPE` (None without a feature code), on
            the device.

        Raises:
            RuntimeError: the inverter was loaded without its encoder.
        """
        if self.encoder is None:
            raise RuntimeError("this inverter was loaded without an encoder")
        dev = self.runtime.torch_device
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(dev).permute(0, 3, 1, 2).float()
        x = x / 127.5 - 1.0
        with self.runtime.autocast():
            w, F = self._encode(x)
        return w.float(), (F.to(F_STORAGE_DTYPE).float() if F is not None else None)

    def synthesize(self, w: torch.Tensor, F: torch.Tensor | None = None, *, noise: Any = "const") -> torch.Tensor:
        """Render codes: ``G(w)``, or ``G(w, F injected at K)`` when F is given.

        Args:
            w: W+ (B, n_latent, 512). F: (B, C, H, W) feature codes or None.
            noise: as :meth:`vidinv.models.stylegan2.Generator.synthesis`.

        Returns:
            image (B, 3, size, size) in the generator's dtype, about [-1, 1] RGB.

        Raises:
            ValueError: F given to an inverter without a feature code.
        """
        if F is None:
            return self.generator.synthesis(w, noise=noise)
        if self.feature_index is None:
            raise ValueError(f"the {self.kind} inverter has no feature code; F must be None")
        return self.generator.synthesis(w, noise=noise, feature=F, k=self.feature_index)

    def edit(self, w: torch.Tensor, F: torch.Tensor | None, edit: Any, *, noise: Any = "const") -> torch.Tensor:
        """Render edited codes with the edit rule (:func:`vidinv.edit.apply_edit`: ``w' = w + Δw``; with F,
        ``F' = F + G^K(w') - G^K(w)`` and ``G(w', F')``; without, ``G(w')``).

        Args:
            w: W+ (B, n_latent, 512). F: (B, C, H, W) or None. edit: a built edit
                (:class:`vidinv.edit.LatentEdit`, a Direction or Δw).
            noise: as :meth:`vidinv.models.stylegan2.Generator.synthesis`.

        Returns:
            image (B, 3, size, size) in the generator's dtype, about [-1, 1] RGB.
        """
        return apply_edit(self.generator, w, F, edit, self.feature_index, noise=noise)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, encoder={'loaded' if self.encoder is not None else None})"
