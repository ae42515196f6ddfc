"""ArcFace IResNet-50 (insightface ``arcface_torch`` ``backbone.pth``, r50).

The improved residual network of Duta et al. ("Improved Residual Networks for Image and Video
Recognition", ICPR 2020) as trained by insightface with the ArcFace loss (Deng et al., CVPR 2019).
The Feature-Style encoder (Yao et al., ECCV 2022) uses it twice:

* as the identity network of its training loss, ``iresnet50()`` loaded from ``backbone.pth``, with
  the multi-layer identity loss comparing the 5 outputs of ``forward(x, return_features=True)`` by
  cosine similarity;
* as the initial weights of its encoder backbone (stem + ``layer1..layer4``), which is why
  :class:`IBasicBlock` and :func:`make_iresnet_layer` are shared with
  :mod:`vidinv.models.fs_encoder`.

Layout (state_dict keys of the official ``backbone.pth``, 475 entries)::

    conv1 (3x3, 3->64, stride 1, no bias), bn1, prelu          stem, 112x112
    layer1..layer4: [3, 4, 14, 3] IBasicBlocks, 64/128/256/512 channels, each stage halves the size
                     (56, 28, 14, 7)
    bn2 (BatchNorm2d 512), dropout (p=0), fc (Linear 512*7*7 -> 512), features (BatchNorm1d 512)

An IBasicBlock is ``bn1 -> conv1 (3x3, s1) -> bn2 -> prelu -> conv2 (3x3, stride s) -> bn3``, plus
the identity, or ``downsample = conv1x1(stride s) + BatchNorm2d`` on the first block of each stage.
All BatchNorms use eps 1e-5. The embedding is the output of ``features`` and is **not**
L2-normalised.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from vidinv.io.checkpoints import CheckpointError, load_strict, read_checkpoint

__all__ = [
    "IBasicBlock",
    "IResNet",
    "iresnet50",
    "iresnet_stem",
    "make_iresnet_layer",
    "load_arcface",
    "ARCFACE_INPUT_SIZE",
]

#: Spatial size (pixels, square) of the aligned face crop ArcFace expects.
ARCFACE_INPUT_SIZE = 112

_BN_EPS = 1e-5


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """One improved-ResNet basic block (insightface ``IBasicBlock``, expansion 1).

    ``out = bn3(conv2(prelu(bn2(conv1(bn1(x)))))) + shortcut(x)``, where conv1 is 3x3 stride 1,
    conv2 is 3x3 with stride ``stride``, and the shortcut is the identity or ``downsample``
    (conv1x1 with stride ``stride`` + BatchNorm2d). There is no activation after the addition.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of conv2 (and of the downsample conv), 1 or 2.
        downsample: the shortcut module, required when ``stride != 1`` or ``inplanes != planes``.

    Shapes: (B, inplanes, H, W) -> (B, planes, ceil(H/stride), ceil(W/stride)), dtype of the input
    (which must equal the module's dtype).

    State_dict keys: ``bn1.*, conv1.weight, bn2.*, prelu.weight, conv2.weight, bn3.*`` and
    ``downsample.0.weight, downsample.1.*`` when present (the official names).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        if downsample is None and (stride != 1 or inplanes != planes):
            raise ValueError(f"IBasicBlock({inplanes}->{planes}, stride {stride}) needs a downsample shortcut")
        self.bn1 = nn.BatchNorm2d(inplanes, eps=_BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


def make_iresnet_layer(inplanes: int, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
    """One IResNet stage: ``blocks`` IBasicBlocks, the first with stride ``stride`` and a shortcut.

    The first block gets ``downsample = Sequential(conv1x1(inplanes->planes, stride), BatchNorm2d)``
    (always the case in IResNet-50, where every stage has stride 2). Keys ``<i>.<block keys>``.

    Returns:
        ``nn.Sequential`` mapping (B, inplanes, H, W) -> (B, planes, ceil(H/stride), ceil(W/stride)).
    """
    if blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {blocks}")
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes, eps=_BN_EPS),
        )
    layers = [IBasicBlock(inplanes, planes, stride, downsample)]
    layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def iresnet_stem(in_channels: int = 3, width: int = 64) -> list[nn.Module]:
    """The IResNet stem: ``[conv3x3(in_channels->width, stride 1, no bias), BatchNorm2d, PReLU]``.

    Returned as a list so that :class:`IResNet` can hold the three modules as ``conv1``, ``bn1``,
    ``prelu`` and the Feature-Style encoder as ``conv.0``, ``conv.1``, ``conv.2`` (both official layouts).
    """
    return [_conv3x3(in_channels, width), nn.BatchNorm2d(width, eps=_BN_EPS), nn.PReLU(width)]


class IResNet(nn.Module):
    """ArcFace IResNet (insightface ``arcface_torch`` backbones; default: IResNet-50).

    Args:
        layers: blocks per stage; ``(3, 4, 14, 3)`` is IResNet-50.
        num_features: embedding size (512 in ``backbone.pth``).
        dropout: dropout probability before ``fc`` (0 in the official r50; active only in train mode).

    Input: ``x`` (B, 3, 112, 112), an aligned face crop, RGB, float in [-1, 1]
    (``(uint8 / 255 - 0.5) / 0.5``), same dtype and device as the module.

    The insightface ``fp16`` (autocast) option is not reproduced: the computation runs in the module's
    dtype. Use :func:`load_arcface` to read ``backbone.pth``.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3), num_features: int = 512, dropout: float = 0.0):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"IResNet needs 4 stages, got layers={list(layers)}")
        self.conv1, self.bn1, self.prelu = iresnet_stem(3, 64)
        self.layer1 = make_iresnet_layer(64, 64, layers[0], stride=2)
        self.layer2 = make_iresnet_layer(64, 128, layers[1], stride=2)
        self.layer3 = make_iresnet_layer(128, 256, layers[2], stride=2)
        self.layer4 = make_iresnet_layer(256, 512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Compute the identity embedding.

        Args:
            x: (B, 3, 112, 112) float, RGB in [-1, 1].
            return_features: also return the multi-layer features of the Feature-Style identity loss.

        Returns:
            ``embedding`` (B, num_features), the output of the ``features`` BatchNorm1d, not
            L2-normalised, dtype of ``x``. With ``return_features=True``: ``(embedding, feats)`` where
            ``feats`` is the reference ``model(x, return_features=True)`` list of 5 tensors: the outputs
            of ``layer1`` (B,64,56,56), ``layer2`` (B,128,28,28), ``layer3`` (B,256,14,14), ``layer4``
            (B,512,7,7) (before ``bn2``), then the embedding itself (same tensor as ``embedding``).

        Raises:
            ValueError: ``x`` is not (B, 3, 112, 112).
        """
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE):
            raise ValueError(f"ArcFace IResNet expects (B, 3, {ARCFACE_INPUT_SIZE}, {ARCFACE_INPUT_SIZE}) RGB in "
                             f"[-1, 1], got {tuple(x.shape)}")
        feats = []
        h = self.prelu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            h = stage(h)
            feats.append(h)
        h = torch.flatten(self.bn2(h), 1)
        emb = self.features(self.fc(self.dropout(h)))
        if return_features:
            feats.append(emb)
            return emb, feats
        return emb


def iresnet50(dropout: float = 0.0, num_features: int = 512) -> IResNet:
    """IResNet-50 (stages ``[3, 4, 14, 3]``), the architecture of ArcFace ``backbone.pth`` (r50)."""
    return IResNet((3, 4, 14, 3), num_features=num_features, dropout=dropout)


def load_arcface(path: str | os.PathLike, device: torch.device | str | None = None) -> IResNet:
    """Read the official ArcFace ``backbone.pth`` (insightface r50) into an :func:`iresnet50`.

    The file is a plain state_dict with the 475 keys ``conv1.weight``, ``bn1.*``, ``prelu.weight``,
    ``layer1.0.bn1.weight`` ... ``fc.weight`` (512, 25088), ``features.*``. It is read with
    :func:`vidinv.io.checkpoints.read_checkpoint` (``weights_only=True``) and loaded strictly.

    Args:
        path: the ``.pth`` file.
        device: where to put the model (default: CPU).

    Returns:
        The network in ``eval()`` mode (BatchNorm uses the stored running statistics), float32.

    Raises:
        CheckpointError: unreadable file, or not a plain state_dict.
        CheckpointMismatchError: keys or shapes differ from IResNet-50 (names the file and keys).
    """
    sd = read_checkpoint(path)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a plain ArcFace IResNet-50 state_dict, got a {type(sd).__name__}")
    model = load_strict(iresnet50(), sd, path, "ArcFace IResNet-50")
    return model.to(device).eval() if device is not None else model.eval()
