"""pSp task models as inverters: face super-resolution, frontalization, toonify, segmentation-to-face.

Source: Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation" (CVPR 2021),
section 4 (the image-to-image tasks) and the pSp face super-resolution paper; reference code
eladrich/pixel2style2pixel (``models/psp.py``, ``configs/transforms_config.py``). Each task is one pSp
checkpoint holding its own GradualStyleEncoder, its own StyleGAN2 decoder (the toonify file holds a toon
generator) and its ``latent_avg``; :func:`vidinv.models.psp.load_psp_task` reads the architecture from the
file's ``opts``. A task inverter is an :class:`~vidinv.inverters.base.Inverter` whose generator is that
decoder, so the whole ``vidinv edit`` machinery (tracking, latent smoothing, edits, inverse warp, blending,
streaming output) runs a task unchanged; what differs per task is the encoder input built from a face:

==============  ===============================  =================================================================
kind            file                             encoder input (:meth:`Inverter.crop` / :meth:`Inverter.encode`)
==============  ===============================  =================================================================
``psp-sr``      ``psp_celebs_super_resolution``  the aligned crop at the face's native size (quad side, pixels),
                                                 PIL-bilinear resized to 256 (pSp ``transforms.Resize((256, 256))``)
``psp-front``   ``psp_ffhq_frontalization``      the 256 aligned crop in [-1, 1] (as the pSp encoder)
``psp-toon``    ``psp_ffhq_toonify``             the 256 aligned crop in [-1, 1]
==============  ===============================  =================================================================

The segmentation-to-face task (``vidinv anonymize``) is :mod:`vidinv.inverters.segmentation`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from vidinv.device import Runtime
from vidinv.face import align
from vidinv.inverters.base import Inverter
from vidinv.inverters.psp import PSPInverter
from vidinv.models.psp import PSP_INPUT_SIZE, PspTaskOptions, load_psp_task

__all__ = ["PspTaskInverter", "SuperResolutionInverter", "FrontalizationInverter", "ToonifyInverter",
           "SR_MIN_CROP"]

#: Smallest native crop side (pixels) the super-resolution input is aligned at: below this the FFHQ
#: transform has too few pixels to resample (faces this small are not found by the detector anyway).
SR_MIN_CROP = 8


class PspTaskInverter(PSPInverter):
    """A pSp task checkpoint as an inverter (see the module doc): W+ only, generator = the file's decoder; the
    encoder runs as :class:`~vidinv.inverters.psp.PSPInverter`'s (256 input, ``PSP.encode``).

    Class attributes (besides :class:`Inverter`'s): ``task_file``, the registry name of the checkpoint
    (also :attr:`encoder_file` and :attr:`generator_file`); ``input_nc``, the encoder input channels the
    task expects (a file with other ``opts['input_nc']`` is refused).

    Attributes:
        model: the :class:`vidinv.models.psp.PSP` network of the file (encoder, decoder, latent_avg), on the
            runtime device, eval.
        task_options: the file's :class:`vidinv.models.psp.PspTaskOptions`.
    """

    task_file: ClassVar[str]
    input_nc: ClassVar[int] = 3
    feature_index = None
    default_feature_shape = None

    task_options: PspTaskOptions | None = None

    @classmethod
    def weight_names(cls, *, need_encoder: bool = True,
                     encoder_checkpoint: str | os.PathLike | None = None) -> list[str]:
        """``[task_file]``: the one file holds encoder, decoder and latent_avg (also without the encoder)."""
        return [cls.task_file]

    @classmethod
    def load(cls, paths: Mapping[str, Path], runtime: Runtime | None = None, *, need_encoder: bool = True,
             encoder_checkpoint: str | os.PathLike | None = None) -> Inverter:
        """Load the task checkpoint ``paths[task_file]`` (:func:`vidinv.models.psp.load_psp_task`, strict, from
        its ``opts``): its decoder is the generator, its latent_avg the average W+.

        Raises:
            ValueError: ``encoder_checkpoint`` given (task models are official files only); a file whose
                ``opts['input_nc']`` is not the task's.
            vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: a file of the wrong layout.
        """
        if encoder_checkpoint is not None:
            raise ValueError(f"the {cls.kind} task model is the official {cls.task_file}; --encoder-checkpoint does "
                             "not apply")
        runtime = runtime or Runtime()
        path = Path(paths[cls.task_file])
        net, options = load_psp_task(path)
        if options.input_nc != cls.input_nc:
            raise ValueError(f"{path}: opts['input_nc'] is {options.input_nc}; the {cls.kind} task reads "
                             f"{cls.input_nc}-channel inputs (is this the right file for {cls.task_file}?)")
        dev = runtime.torch_device
        net = net.to(dev).eval()
        G = net.decoder
        if net.latent_avg is not None:
            latent_avg = net.latent_avg.to(dev, torch.float32)
        else:  # pSp saves latent_avg only with start_from_latent_avg; the average is then estimated
            latent_avg = G.mean_latent(4096, generator=torch.Generator(device=dev).manual_seed(0))[0]
            latent_avg = latent_avg.unsqueeze(0).repeat(G.n_latent, 1)
        inv = cls(G, latent_avg, runtime, path)
        inv.model = net
        inv.task_options = options
        if need_encoder:
            inv.encoder = net.encoder
        return inv

    def load_encoder(self, path: Path) -> None:
        """Not used: :meth:`load` reads encoder and decoder from the one task file.

        Raises:
            ValueError: always (a task model's encoder cannot be swapped).
        """
        raise ValueError(f"the {self.kind} task model loads its encoder from {self.task_file} itself")


class SuperResolutionInverter(PspTaskInverter):
    """pSp face super-resolution (``psp_celebs_super_resolution.pt``): the encoder reads the face at its
    native resolution resized to 256 (see :meth:`crop`); the decoder renders it at 1024."""

    kind = "psp-sr"
    description = "pSp face super-resolution (psp_celebs_super_resolution.pt)"
    task_file = "psp_celebs_super_resolution.pt"
    encoder_file = task_file
    generator_file = task_file

    def crop(self, image: np.ndarray, quad: np.ndarray) -> np.ndarray:
        """The super-resolution input of one face: the FFHQ-aligned crop at its native size ``n`` (the mean
        side of ``quad`` in pixels, rounded, at least :data:`SR_MIN_CROP`), resized to 256 x 256 with PIL's
        bilinear filter, as pSp's ``transforms.Resize((256, 256))`` does to a low-resolution face
        (``configs/transforms_config.py`` ``SuperResTransforms``).

        Args:
            image: (H, W, 3) uint8 RGB frame. quad: (4, 2) float crop quad (frame pixels).

        Returns:
            (256, 256, 3) uint8 RGB.
        """
        n = max(SR_MIN_CROP, int(round(float(np.mean(align.quad_size(quad))))))
        native = align.align_crop(image, quad, n)
        if n == PSP_INPUT_SIZE:
            return native
        return np.asarray(Image.fromarray(native).resize((PSP_INPUT_SIZE, PSP_INPUT_SIZE), Image.Resampling.BILINEAR))


class FrontalizationInverter(PspTaskInverter):
    """pSp face frontalization (``psp_ffhq_frontalization.pt``): 256 aligned crops in, frontal faces out."""

    kind = "psp-front"
    description = "pSp face frontalization (psp_ffhq_frontalization.pt)"
    task_file = "psp_ffhq_frontalization.pt"
    encoder_file = task_file
    generator_file = task_file


class ToonifyInverter(PspTaskInverter):
    """pSp toonify (``psp_ffhq_toonify.pt``): the FFHQ-trained encoder into the file's toon generator."""

    kind = "psp-toon"
    description = "pSp toonify (psp_ffhq_toonify.pt; toon StyleGAN2 generator)"
    task_file = "psp_ffhq_toonify.pt"
    encoder_file = task_file
    generator_file = task_file

