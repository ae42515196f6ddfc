"""Metrics of identity preservation, reconstruction quality and temporal stability.

* :mod:`~vidinv.metrics.identity` — identity embeddings (dlib ResNet, ArcFace IResNet-50) behind one
  interface, each with its own face alignment; cosine identity similarity.
* :mod:`~vidinv.metrics.image` — MSE, PSNR, SSIM (optionally inside a mask) and LPIPS.
* :mod:`~vidinv.metrics.temporal` — identity consistency (Feature-Style eq. 9), TL-ID / TG-ID (STIT),
  face-region flicker.

:mod:`vidinv.report` runs them over videos and writes report.json / plots / report.html.
"""
from vidinv.metrics.identity import (
    EMBEDDERS,
    ArcFaceEmbedder,
    DlibEmbedder,
    EmbedderUnavailable,
    IdentityEmbedder,
    cosine_similarity,
    get_embedder,
    select_embedders,
)
from vidinv.metrics.image import LPIPSMetric, LPIPSUnavailable, mse, psnr, psnr_from_mse, ssim, ssim_map
from vidinv.metrics.temporal import (
    TemporalIdentity,
    adjacent_similarity,
    flicker,
    frame_change,
    identity_consistency,
    pairwise_similarity,
    similarity_to_reference,
    tg_id,
    tl_id,
)

__all__ = [
    "EMBEDDERS", "ArcFaceEmbedder", "DlibEmbedder", "EmbedderUnavailable", "IdentityEmbedder",
    "cosine_similarity", "get_embedder", "select_embedders",
    "LPIPSMetric", "LPIPSUnavailable", "mse", "psnr", "psnr_from_mse", "ssim", "ssim_map",
    "TemporalIdentity", "adjacent_similarity", "flicker", "frame_change", "identity_consistency",
    "pairwise_similarity", "similarity_to_reference", "tg_id", "tl_id",
]
