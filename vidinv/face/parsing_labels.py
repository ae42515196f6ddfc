"""Face-parsing label orders and the input of pSp's segmentation-to-face model.

Two 19-class label orders over the same CelebAMask-HQ part names are in use, and they are **not** the
same order:

* :data:`BISENET_CLASSES`: the order of zllrunning/face-parsing.PyTorch and its ``79999_iter.pth``
  (what :class:`vidinv.models.bisenet.BiSeNet` predicts; equal to
  :data:`vidinv.models.bisenet.CLASS_NAMES`). Source: face-parsing.PyTorch ``prepropess_data.py``, which
  builds its training label maps from the CelebAMask-HQ part masks with
  ``atts = ['skin', 'l_brow', 'r_brow', 'l_eye', 'r_eye', 'eye_g', 'l_ear', 'r_ear', 'ear_r', 'nose',
  'mouth', 'u_lip', 'l_lip', 'neck', 'neck_l', 'cloth', 'hair', 'hat']``, label = position + 1
  (``enumerate(atts, 1)``), background 0; later parts overwrite earlier ones.
* :data:`CELEBAMASK_HQ_CLASSES`: the order of the official CelebAMask-HQ label maps
  (switchablenorms/CelebAMask-HQ ``face_parsing/Data_preprocessing/g_mask.py``: ``label_list = ['skin',
  'nose', 'eye_g', 'l_eye', 'r_eye', 'l_brow', 'r_brow', 'l_ear', 'r_ear', 'mouth', 'u_lip', 'l_lip',
  'hair', 'hat', 'ear_r', 'neck_l', 'neck', 'cloth']``, label = ``idx + 1``, background 0; the same table
  is in that repository's ``face_parsing/README.md``, "Mask labels are defined as following").
  pSp's ``psp_celebs_seg_to_face.pt`` was trained on these: the pSp README says the model is "trained
  with the CelebAMask-HQ dataset", and in eladrich/pixel2style2pixel issue #243 (a user who had built
  masks with face-parsing.PyTorch's ``prepropess_data.py`` got wrong hair) the pSp author answered that
  the attribute order differs: "Our data was taken from the official CelebA-Mask dataset
  (https://github.com/switchablenorms/CelebAMask-HQ ...". So BiSeNet labels must be remapped by class
  name (:data:`BISENET_TO_CELEBAMASK_HQ`, :func:`bisenet_to_celebamask_hq`) before pSp sees them.

Where parts overlap, the two preprocessing scripts give priority to different parts (the last one
written wins: e.g. hair over neck and cloth in face-parsing.PyTorch, neck and cloth over hair in
CelebAMask-HQ), so BiSeNet's predictions follow a slightly different overlap rule than pSp's training
maps; no relabelling can change that.

pSp's segmentation input (:func:`to_psp_segmentation_input`) follows eladrich/pixel2style2pixel:

1. ``datasets/inference_dataset.py`` ``InferenceDataset.__getitem__`` (and ``images_dataset.py``) open
   the label PNG and, since ``label_nc != 0``, ``convert('L')``: an 8-bit single-channel PIL image whose
   pixel values are the class indices;
2. ``configs/transforms_config.py`` ``SegToImageTransforms`` ``transform_inference`` (= ``transform_source``):
   ``transforms.Resize((256, 256))``, torchvision's default interpolation, ``PIL.Image.BILINEAR``
   (torchvision 0.4.2 in ``environment/psp_env.yaml``), applied to that label image: class indices are
   interpolated as numbers (with PIL's antialiasing support when shrinking) and rounded, so pixels on a
   boundary between two classes may get an unrelated index in between. The model was trained on such
   maps (CelebAMask-HQ masks are 512x512), so this is reproduced, not "fixed";
3. ``datasets/augmentations.py`` ``ToOneHot(label_nc)`` with ``label_nc = 19``: ``np.array(img)``, then a
   ``(256, 256, 19)`` integer array with 1 at ``[i, j, label[i, j]]`` and 0 elsewhere;
4. ``transforms.ToTensor()``: a non-uint8 array is only transposed to ``(19, 256, 256)``, not divided by
   255, so the values stay exactly 0 and 1; no ``Normalize``. ``scripts/inference.py`` then calls
   ``.float()`` on the batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = [
    "N_CLASSES",
    "BISENET_CLASSES",
    "CELEBAMASK_HQ_CLASSES",
    "BISENET_TO_CELEBAMASK_HQ",
    "CELEBAMASK_HQ_TO_BISENET",
    "PSP_SEG_SIZE",
    "bisenet_to_celebamask_hq",
    "to_psp_segmentation_input",
    "class_names",
]

#: Number of classes of both orders (background + 18 parts); pSp's ``--label_nc`` / ``--input_nc``.
N_CLASSES = 19

#: Side of pSp's segmentation input (``SegToImageTransforms``: ``Resize((256, 256))``).
PSP_SEG_SIZE = 256

#: Class names by label index in face-parsing.PyTorch / ``79999_iter.pth`` order (``prepropess_data.py``).
BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

#: Class names by label index in the official CelebAMask-HQ order (``g_mask.py``), the order of the label
#: maps pSp's segmentation-to-face model was trained on.
CELEBAMASK_HQ_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)

#: ``BISENET_TO_CELEBAMASK_HQ[b]`` is the CelebAMask-HQ index of BiSeNet class ``b`` (matched by name).
BISENET_TO_CELEBAMASK_HQ: tuple[int, ...] = tuple(CELEBAMASK_HQ_CLASSES.index(n) for n in BISENET_CLASSES)

#: The inverse permutation: ``CELEBAMASK_HQ_TO_BISENET[c]`` is the BiSeNet index of CelebAMask-HQ class ``c``.
CELEBAMASK_HQ_TO_BISENET: tuple[int, ...] = tuple(BISENET_CLASSES.index(n) for n in CELEBAMASK_HQ_CLASSES)

_ORDERS = ("bisenet", "celebamask_hq")


def _as_int_array(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    a = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= N_CLASSES):
        raise ValueError(f"labels must lie in [0, {N_CLASSES}), got values in [{int(a.min())}, {int(a.max())}]")
    return a


def bisenet_to_celebamask_hq(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Relabel a face-parsing.PyTorch (BiSeNet) label map into the CelebAMask-HQ order.

    Args:
        labels: integer label map of any shape (e.g. ``(B, H, W)`` int64 from
            :meth:`vidinv.models.bisenet.BiSeNet.parse`), values in [0, 19) indexing :data:`BISENET_CLASSES`.

    Returns:
        Same type (numpy array or torch tensor, same device), shape and dtype, values indexing
        :data:`CELEBAMASK_HQ_CLASSES` (``BISENET_TO_CELEBAMASK_HQ[labels]``).

    Raises:
        ValueError: a non-integer dtype or a value outside [0, 19).
    """
    a = _as_int_array(labels)
    lut = np.asarray(BISENET_TO_CELEBAMASK_HQ, dtype=a.dtype)
    out = lut[a]
    if isinstance(labels, torch.Tensor):
        return torch.from_numpy(out).to(labels.device)
    return out


def to_psp_segmentation_input(labels: np.ndarray | torch.Tensor, order: str = "bisenet", *,
                              size: int = PSP_SEG_SIZE) -> torch.Tensor:
    """pSp's segmentation-to-face encoder input, built as pSp's ``SegToImageTransforms`` builds it.

    Per label map: (relabel to the CelebAMask-HQ order when ``order="bisenet"``), 8-bit PIL ``"L"``
    image of the class indices, ``PIL.Image.resize((size, size), Image.BILINEAR)`` (torchvision
    ``Resize((256, 256))`` on a PIL image), one-hot over 19 classes (pSp ``ToOneHot``), channels first
    (``ToTensor`` without scaling), float32. See the module docstring for the source lines. For the
    resize to match training, give the label map at 512x512, the size of the CelebAMask-HQ masks (e.g.
    ``BiSeNet.parse(images, size=512)`` of the aligned crop); a map already at ``size`` is not resampled.

    Args:
        labels: ``(H, W)`` or ``(B, H, W)`` integer label maps (numpy or torch, any device), values in
            [0, 19).
        order: the label order of ``labels``: ``"bisenet"`` (face-parsing.PyTorch, :data:`BISENET_CLASSES`;
            default) or ``"celebamask_hq"`` (:data:`CELEBAMASK_HQ_CLASSES`, used as is).
        size: output side (pSp: 256).

    Returns:
        ``(B, 19, size, size)`` float32 CPU tensor of exact 0.0 / 1.0, one 1 per pixel; channel ``c`` is
        CelebAMask-HQ class ``c``. No normalisation. (``B`` = 1 for a single ``(H, W)`` map.)

    Raises:
        ValueError: unknown ``order``, ``labels`` not 2-D / 3-D, a non-integer dtype, a value outside
            [0, 19), or ``size`` < 1.
    """
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {_ORDERS}, got {order!r}")
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    a = _as_int_array(labels)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"labels must be (H, W) or (B, H, W), got shape {tuple(np.shape(labels))}")
    if order == "bisenet":
        a = np.asarray(BISENET_TO_CELEBAMASK_HQ, dtype=np.uint8)[a]
    eye = np.eye(N_CLASSES, dtype=np.float32)
    out = np.empty((a.shape[0], N_CLASSES, int(size), int(size)), dtype=np.float32)
    for i, m in enumerate(a.astype(np.uint8)):
        small = np.asarray(Image.fromarray(m).resize((int(size), int(size)), Image.Resampling.BILINEAR))
        out[i] = eye[small].transpose(2, 0, 1)
    return torch.from_numpy(out)


def class_names(order: str) -> Sequence[str]:
    """The class-name tuple of ``order`` (``"bisenet"`` or ``"celebamask_hq"``).

    Raises:
        ValueError: unknown order.
    """
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {_ORDERS}, got {order!r}")
    return BISENET_CLASSES if order == "bisenet" else CELEBAMASK_HQ_CLASSES
