"""pSp segmentation-to-face as an inverter (``psp-seg``): a face rebuilt from its parsing map alone.

Source: Richardson et al., "Encoding in Style" (CVPR 2021), section 4.3 (conditional image synthesis from
segmentation maps, CelebAMask-HQ); checkpoint ``psp_celebs_seg_to_face.pt`` (``opts``: ``input_nc`` =
``label_nc`` = 19). The encoder never sees the face's pixels: each aligned face (FFHQ alignment at 512, the
size of CelebAMask-HQ's masks) is parsed by BiSeNet (face-parsing.PyTorch, ``79999_iter.pth``), the label
map is turned into pSp's encoder input by :func:`vidinv.face.parsing_labels.to_psp_segmentation_input`
(relabelled to CelebAMask-HQ's class order, PIL bilinear resize to 256, one-hot over 19 classes, as pSp's
``SegToImageTransforms``) and encoded. The generated face keeps the layout of the parts (pose, expression,
hair outline) and takes everything else from the model and the injected style: ``vidinv anonymize``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from vidinv.device import Runtime
from vidinv.face import align
from vidinv.face.parsing_labels import N_CLASSES, to_psp_segmentation_input
from vidinv.inverters.base import Inverter
from vidinv.inverters.tasks import PspTaskInverter
from vidinv.models.bisenet import BiSeNet, load_bisenet

__all__ = ["SegmentationInverter", "PARSER_FILE", "PARSE_SIZE"]

#: Registry name of the BiSeNet face parser.
PARSER_FILE = "79999_iter.pth"
#: Side of the aligned crop parsed (CelebAMask-HQ masks are 512 x 512).
PARSE_SIZE = 512


class SegmentationInverter(PspTaskInverter):
    """pSp segmentation-to-face with BiSeNet parsing in front (see the module doc).

    Attributes:
        parser: the BiSeNet face parser (eval, on the runtime device).
    """

    kind = "psp-seg"
    description = "pSp segmentation-to-face (psp_celebs_seg_to_face.pt) from BiSeNet parsing"
    task_file = "psp_celebs_seg_to_face.pt"
    encoder_file = task_file
    generator_file = task_file
    input_nc = N_CLASSES

    parser: BiSeNet | None = None

    @classmethod
    def weight_names(cls, *, need_encoder: bool = True,
                     encoder_checkpoint: str | os.PathLike | None = None) -> list[str]:
        """``[task_file, 79999_iter.pth]`` (the parser only when the encoder runs)."""
        return [cls.task_file, PARSER_FILE] if need_encoder else [cls.task_file]

    @classmethod
    def load(cls, paths: Mapping[str, Path], runtime: Runtime | None = None, *, need_encoder: bool = True,
             encoder_checkpoint: str | os.PathLike | None = None) -> Inverter:
        """The task model (:meth:`PspTaskInverter.load`) and, with ``need_encoder``, the face parser
        (:func:`vidinv.models.bisenet.load_bisenet`, strict)."""
        inv = super().load(paths, runtime, need_encoder=need_encoder, encoder_checkpoint=encoder_checkpoint)
        assert isinstance(inv, SegmentationInverter)
        if need_encoder:
            inv.parser = load_bisenet(paths[PARSER_FILE], device=inv.runtime.torch_device)
        return inv

    @property
    def align_size(self) -> int:
        """512: the crop is parsed at CelebAMask-HQ's mask size (the encoder then reads 256)."""
        return PARSE_SIZE

    def crop(self, image: np.ndarray, quad: np.ndarray) -> np.ndarray:
        """The 512 FFHQ-aligned crop (what BiSeNet parses). Returns (512, 512, 3) uint8 RGB."""
        return align.align_crop(image, quad, PARSE_SIZE)

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> tuple[torch.Tensor, None]:
        """Parse aligned crops and encode their label maps.

        Args:
            crops: (B, 512, 512, 3) uint8 RGB aligned faces.

        Returns:
            ``(w, None)``: w (B, n_latent, 512) float32 W+ (latent_avg included) on the device.

        Raises:
            RuntimeError: loaded without the encoder / parser.
        """
        if self.model is None or self.parser is None or self.encoder is None:
            raise RuntimeError("this inverter was loaded without its encoder and face parser")
        dev = self.runtime.torch_device
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(dev).permute(0, 3, 1, 2)
        labels = self.parser.parse(x, size=PARSE_SIZE)
        seg = to_psp_segmentation_input(labels).to(dev)
        with self.runtime.autocast():
            w = self.model.encode(seg)
        return w.float(), None

    def segmentation(self, crops: np.ndarray) -> np.ndarray:
        """The CelebAMask-HQ label maps the encoder reads, for inspection: (B, 256, 256) int64 class indices
        (argmax of :func:`~vidinv.face.parsing_labels.to_psp_segmentation_input`).

        Raises:
            RuntimeError: loaded without the parser.
        """
        if self.parser is None:
            raise RuntimeError("this inverter was loaded without its face parser")
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.runtime.torch_device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            seg = to_psp_segmentation_input(self.parser.parse(x, size=PARSE_SIZE))
        return seg.argmax(1).numpy()
