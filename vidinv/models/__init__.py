"""The official networks, re-implemented in plain PyTorch with the official state_dict layouts.

Each module holds one network and its strict loader for the official file:

============================  ==========================================  =============================
module                        network                                      official file (loader)
============================  ==========================================  =============================
:mod:`.stylegan2`             StyleGAN2 generator, feature injection at K  ``psp_ffhq_encode.pt`` /
                                                                           ``stylegan2-ffhq-config-f.pt``
                                                                           (:func:`load_generator`)
:mod:`.fs_encoder`            Feature-Style encoder (Yao et al. 2022)      ``143_enc.pth`` (:func:`load_fs_encoder`)
:mod:`.psp`                   pSp GradualStyleEncoder + forward            ``psp_ffhq_encode.pt`` (:func:`load_psp`)
:mod:`.iresnet`               ArcFace IResNet-50                           ``backbone.pth`` (:func:`load_arcface`)
:mod:`.irse`                  IR-SE50 (pSp identity loss)                  ``model_ir_se50.pth`` (:func:`load_irse50`)
:mod:`.bisenet`               BiSeNet face parsing, 19 classes             ``79999_iter.pth`` (:func:`load_bisenet`)
:mod:`.ops`                   upfirdn2d, fused bias + leaky ReLU           --
============================  ==========================================  =============================
"""
from vidinv.models.bisenet import BiSeNet, load_bisenet
from vidinv.models.fs_encoder import FeatureStyleEncoder, load_fs_encoder
from vidinv.models.iresnet import IResNet, iresnet50, load_arcface
from vidinv.models.irse import IRSE50Backbone, load_irse50
from vidinv.models.psp import PSP, GradualStyleEncoder, load_psp, load_psp_encoder
from vidinv.models.stylegan2 import CoarseState, Generator, edit_image, load_generator

__all__ = [
    "BiSeNet", "load_bisenet", "FeatureStyleEncoder", "load_fs_encoder", "IResNet", "iresnet50",
    "load_arcface", "IRSE50Backbone", "load_irse50", "PSP", "GradualStyleEncoder", "load_psp",
    "load_psp_encoder", "CoarseState", "Generator", "edit_image", "load_generator",
]
