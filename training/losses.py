"""Loss terms of Feature-Style encoder and pSp training.

Images are float RGB in [-1, 1] (B, 3, H, W), the range of the StyleGAN2 generator and of the aligned
faces after ``(v / 255 - 0.5) / 0.5``. The loss networks are frozen (eval mode, no parameter
gradients); gradients flow to the reconstructions only.

Feature-Style encoder (Yao et al., ECCV 2022, section 4; reference ``trainer.py``):

* :func:`mse_loss` on synthetic samples (eq. 2; ``nn.MSELoss`` on ``x_recon[:b]``);
* :func:`multiscale_lpips` (eq. 3): LPIPS at the image's scale and its 2x, 4x bilinear halvings
  (``LPIPS(..., multi_scale=True)``: ``sum_k lpips(downscale(x, k), downscale(y, k)).mean()``);
* :func:`feature_reconstruction_loss` (eq. 4): MSE between the encoder's feature code F and the
  generator feature ``G^K(w)``, the target detached;
* :class:`MultiLayerIdentityLoss` (eq. 6): ``sum_l (1 - cos(phi_l(x), phi_l(y)))`` over the five
  ArcFace outputs of ``forward(x, return_features=True)``, averaged over the batch;
* :class:`ParsingLoss` (eq. 7): the same with BiSeNet's three heads (``landmarkloss``).

pSp (Richardson et al., CVPR 2021; ``training/coach.py``, ``criteria/``): :func:`mse_loss`,
LPIPS (one scale), :class:`IRSEIdentityLoss` (``1 - <f(y_hat), f(y)>`` on unit IR-SE50 embeddings of
the 188x188 face crop) and :func:`w_norm_loss`.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import load_strict, read_checkpoint
from vidinv.models.bisenet import BiSeNet, to_bisenet_input
from vidinv.models.fs_encoder import downscale
from vidinv.models.iresnet import ARCFACE_INPUT_SIZE, IResNet
from vidinv.models.irse import IRSE50Backbone

__all__ = [
    "mse_loss",
    "feature_reconstruction_loss",
    "multiscale_lpips",
    "build_lpips",
    "LPIPS_MIN_SIZE",
    "MultiLayerIdentityLoss",
    "ParsingLoss",
    "IRSEIdentityLoss",
    "w_norm_loss",
    "cosine_distance_sum",
]

#: Smallest image side AlexNet-LPIPS accepts (its fifth layer needs a 1x1 map after two max-pools).
LPIPS_MIN_SIZE = 31


def mse_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element (``nn.MSELoss()``); a zero scalar when ``x`` is empty.

    Args:
        x, y: tensors of one shape (e.g. (B, 3, H, W) images in [-1, 1]).

    Returns:
        0-dim tensor.
    """
    if x.numel() == 0:
        return x.sum() * 0.0
    return F.mse_loss(x, y)


def feature_reconstruction_loss(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature-Style eq. 4: MSE between the encoder's feature code F and ``G^K(w)`` (target detached).

    Args:
        feature: F (B, C, H, W) from the encoder (gradients flow into it).
        target: ``G^K(w)`` (B, C, H, W), the generator's activation at layer K for the predicted w;
            detached here (reference ``fea_recon[k].detach()``).

    Returns:
        0-dim tensor, ``mean((F - G^K(w))^2)``.
    """
    return F.mse_loss(feature, target.detach())


def build_lpips(alexnet_path: str | os.PathLike | None = None, *, random_backbone: bool = False,
                device: torch.device | str | None = None) -> nn.Module:
    """LPIPS v0.1 with the AlexNet trunk, frozen (the loss of both reference trainers).

    The linear calibration layers ship with the ``lpips`` package (``weights/v0.1/alex.pth``). The trunk
    is torchvision's AlexNet: its ImageNet weights are read from ``alexnet_path``
    (``alexnet-owt-7be5be79.pth``, a torchvision state_dict with keys ``features.N.*``) without any
    download; with ``random_backbone`` the trunk stays randomly initialised (``pnet_rand=True``), for
    tests only.

    Returns:
        ``lpips.LPIPS`` module in eval mode without parameter gradients; call ``net(x, y)`` with images
        in [-1, 1] → (B, 1, 1, 1) distances.

    Raises:
        ValueError: neither a path nor ``random_backbone``.
        vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: the file is not an AlexNet state_dict.
    """
    import lpips  # imported here: it prints and imports torchvision models

    if alexnet_path is None and not random_backbone:
        raise ValueError("build_lpips needs the AlexNet trunk weights (alexnet_path) or random_backbone=True")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if alexnet_path is not None:
        from torchvision.models import alexnet

        tv = alexnet(weights=None)
        sd = read_checkpoint(alexnet_path)
        load_strict(tv, sd, alexnet_path, "torchvision AlexNet")
        for sl in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
            for name, module in sl.named_children():
                module.load_state_dict(tv.features[int(name)].state_dict())
    net.eval().requires_grad_(False)
    if device is not None:
        net.to(device)
    return net


def multiscale_lpips(lpips_net: nn.Module, x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Feature-Style eq. 3: ``sum_{k < scales} mean_b LPIPS(downscale(x, k), downscale(y, k))``.

    ``downscale(·, k)`` is ``k`` bilinear halvings (:func:`vidinv.models.fs_encoder.downscale`, the
    reference ``utils.functions.downscale``). ``scales=1`` is plain LPIPS (pSp).

    Args:
        lpips_net: from :func:`build_lpips`.
        x, y: (B, 3, H, W) images in [-1, 1]; H / 2**(scales-1) must be >= :data:`LPIPS_MIN_SIZE`.
        scales: number of scales (3 in the Feature-Style config).

    Returns:
        0-dim tensor.

    Raises:
        ValueError: the smallest scale is too small for AlexNet-LPIPS.
    """
    smallest = min(x.shape[-2:]) // 2 ** (scales - 1)
    if smallest < LPIPS_MIN_SIZE:
        raise ValueError(f"multi-scale LPIPS with {scales} scales on {tuple(x.shape[-2:])} images reaches "
                         f"{smallest} px, below AlexNet-LPIPS's minimum of {LPIPS_MIN_SIZE} px; use fewer "
                         "scales (loss.lpips_scales) or larger images")
    total = x.new_zeros(())
    for k in range(scales):
        total = total + lpips_net(downscale(x, k), downscale(y, k)).mean()
    return total


def cosine_distance_sum(feats_x: list[torch.Tensor], feats_y: list[torch.Tensor]) -> torch.Tensor:
    """``mean_b sum_l (1 - cos(flatten(x_l[b]), flatten(y_l[b])))`` (``nn.CosineSimilarity(dim=1, eps=1e-6)``).

    The multi-layer distance of the Feature-Style identity and parsing losses.

    Args:
        feats_x, feats_y: lists of (B, ...) tensors, pairwise of equal shapes.

    Returns:
        0-dim tensor.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(feats_x) != len(feats_y):
        raise ValueError(f"feature lists differ in length: {len(feats_x)} vs {len(feats_y)}")
    per_sample: torch.Tensor | None = None
    for a, b in zip(feats_x, feats_y):
        d = 1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-6)
        per_sample = d if per_sample is None else per_sample + d
    if per_sample is None:
        raise ValueError("no feature maps to compare")
    return per_sample.mean()


class MultiLayerIdentityLoss(nn.Module):
    """Feature-Style multi-layer identity loss (eq. 6; ``trainer.py`` ``IDloss`` with multi_layer_idloss).

    Both images are resized to 112x112 (``F.interpolate(x, (112, 112))``, mode ``resize_mode``: the
    reference uses the default, nearest) and fed to ArcFace IResNet-50 with ``return_features=True``;
    the five outputs (layer1..layer4 maps and the embedding) are compared by cosine distance.

    Args:
        arcface: :class:`vidinv.models.iresnet.IResNet` (e.g. from ``load_arcface``); frozen here.
        resize_mode: ``"nearest"`` (reference), ``"bilinear"`` or ``"area"``.
    """

    def __init__(self, arcface: IResNet, resize_mode: str = "nearest"):
        super().__init__()
        self.net = arcface.eval().requires_grad_(False)
        self.resize_mode = resize_mode

    def train(self, mode: bool = True) -> MultiLayerIdentityLoss:
        super().train(mode)
        self.net.eval()  # BatchNorm always uses the stored statistics
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ArcFace feature tensors of images x (B, 3, H, W) in [-1, 1]."""
        size = (ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE)
        if tuple(x.shape[-2:]) != size:
            kw = {"align_corners": False} if self.resize_mode == "bilinear" else {}
            x = F.interpolate(x, size, mode=self.resize_mode, **kw)
        _, feats = self.net(x, return_features=True)
        return feats

    def forward(self, x: torch.Tensor, target_feats: list[torch.Tensor]) -> torch.Tensor:
        """Loss of reconstructions ``x`` against the target's :meth:`features` (computed once per step)."""
        return cosine_distance_sum(self.features(x), target_feats)


class ParsingLoss(nn.Module):
    """Feature-Style multi-layer face-parsing loss (eq. 7; ``trainer.py`` ``landmarkloss``).

    Images go through :func:`vidinv.models.bisenet.to_bisenet_input` (the reference
    ``stylegan_to_classifier(x, out_size=(512, 512))``) and BiSeNet; its three heads' logits are compared by
    cosine distance.

    Args:
        bisenet: :class:`vidinv.models.bisenet.BiSeNet` (e.g. ``load_bisenet``); frozen here.
        size: BiSeNet input side (512 in the reference).
    """

    def __init__(self, bisenet: BiSeNet, size: int = 512):
        super().__init__()
        self.net = bisenet.eval().requires_grad_(False)
        self.size = int(size)

    def train(self, mode: bool = True) -> ParsingLoss:
        super().train(mode)
        self.net.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """BiSeNet's three logit maps (B, 19, size, size) of images x (B, 3, H, W) in [-1, 1]."""
        return list(self.net(to_bisenet_input(x, self.size)))

    def forward(self, x: torch.Tensor, target_feats: list[torch.Tensor]) -> torch.Tensor:
        """Loss of reconstructions ``x`` against the target's :meth:`features`."""
        return cosine_distance_sum(self.features(x), target_feats)


class IRSEIdentityLoss(nn.Module):
    """pSp identity loss (``criteria/id_loss.py``): ``mean_b (1 - <f(y_hat_b), f(y_b)>)``.

    ``f`` is :meth:`vidinv.models.irse.IRSE50Backbone.identity_embedding`: crop rows 35..222, columns
    32..219 of the 256x256 face, adaptive-average-pool to 112, IR-SE50, L2-normalise. The target
    embedding is detached.

    Args:
        irse50: :class:`vidinv.models.irse.IRSE50Backbone` (``load_irse50``); frozen here.
    """

    def __init__(self, irse50: IRSE50Backbone):
        super().__init__()
        self.net = irse50.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> IRSEIdentityLoss:
        super().train(mode)
        self.net.eval()
        return self

    def embedding(self, x256: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, 512) of 256x256 faces in [-1, 1]."""
        return self.net.identity_embedding(x256)

    def forward(self, y_hat: torch.Tensor, y_emb: torch.Tensor) -> torch.Tensor:
        """Loss of reconstructions ``y_hat`` (B, 3, 256, 256) against target embeddings (B, 512)."""
        e = self.embedding(y_hat)
        return (1 - (e * y_emb.detach()).sum(dim=1)).mean()


def w_norm_loss(w: torch.Tensor, latent_avg: torch.Tensor | None) -> torch.Tensor:
    """pSp W-norm regulariser (``criteria/w_norm.py``): ``sum_b ||w_b - latent_avg||_2 / B``.

    The norm is over the whole (n_styles, 512) code of each sample (``latent.norm(2, dim=(1, 2))``).

    Args:
        w: W+ codes (B, n_styles, 512).
        latent_avg: (n_styles, 512) or (512,) subtracted first (``start_from_latent_avg``), or None.

    Returns:
        0-dim tensor.
    """
    if latent_avg is not None:
        w = w - latent_avg.to(w)
    return torch.linalg.vector_norm(w, ord=2, dim=(1, 2)).sum() / w.shape[0]
