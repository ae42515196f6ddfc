"""A tiny model bundle in the official file formats, for end-to-end tests of ``vidinv edit`` / ``invert``.

:func:`write_tiny_bundle` writes into ``HOME/weights/`` (the registry's cache layout, so that
``VIDINV_HOME=HOME`` makes :func:`vidinv.weights.resolve` and the real loaders find them):

* ``psp_ffhq_encode.pt``: the pSp layout ``{"state_dict": {"decoder.<key>": ...}, "latent_avg": (18, 512),
  "opts": {...}}`` holding a StyleGAN2 generator at 1024 with ``style_dim`` 512, ``n_mlp`` 2 and every
  layer capped at ``max_channels`` (8) channels. Its W+ has the official 18 rows of 512, so every
  shipped direction (``fs:``, ``stit:``, ``e4e:``, ``ganspace:``) applies unchanged. Its ``encoder.*``
  entries are a small pSp GradualStyleEncoder (:data:`TINY_PSP_ENCODER`: one IR-SE unit per stage of
  widths 16/24/32/48, map2style convs 16 wide, 18 styles of 512), which
  :func:`vidinv.models.psp.load_psp_encoder` reads (sizes inferred from the shapes), so ``--encoder psp``
  runs end to end.
* ``143_enc.pth``: a Feature-Style encoder state_dict in the official key layout with one block per
  stage, stage widths 8 and F channels 8 (= the generator's channels at 16x16).

Weights are deterministic (``torch.manual_seed``); the generator's images are not faces, which is
fine for the pipeline (geometry, masks, timing and file handling do not depend on what is drawn).
``directions=True`` copies ``../shared/directions`` into ``HOME/directions/`` (small files).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

TINY_MAX_CHANNELS = 8
TINY_ENCODER = {"widths": (8, 8, 8, 8), "depths": (1, 1, 1, 1), "stem_width": 8, "content_channels": 8}
# Adjacent stage widths differ so that the stage ends can be read back from the file's shapes; SE gates need >= 16.
TINY_PSP_ENCODER = {"widths": (16, 24, 32, 48), "blocks": (1, 1, 1, 1), "style_dim": 512, "head_width": 16}


def tiny_generator(seed: int = 0):
    """Generator(1024, 512, n_mlp=2, channel_multiplier=1, max_channels=8), deterministic weights."""
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(seed)
    G = Generator(1024, 512, 2, channel_multiplier=1, max_channels=TINY_MAX_CHANNELS)
    with torch.no_grad():  # modest ToRGB weights keep the images in about [-1, 1]
        for name, p in G.named_parameters():
            if "to_rgb" in name and name.endswith("conv.weight"):
                p.mul_(0.3)
    return G.eval()


def tiny_fs_encoder(seed: int = 1):
    """A :class:`~vidinv.models.fs_encoder.FeatureStyleEncoder` with :data:`TINY_ENCODER` sizes, small
    random head weights (W+ offsets of about +-0.5)."""
    from vidinv.models.fs_encoder import FeatureStyleEncoder

    torch.manual_seed(seed)
    enc = FeatureStyleEncoder(18, 2, **TINY_ENCODER)
    with torch.no_grad():
        for head in enc.styles:
            head.weight.mul_(0.5)
    return enc.eval()


def tiny_psp_encoder(n_styles: int = 18, seed: int = 3):
    """A :class:`~vidinv.models.psp.GradualStyleEncoder` with :data:`TINY_PSP_ENCODER` sizes, default
    initialisation (W+ offsets of a few hundredths around latent_avg), eval mode."""
    from vidinv.models.psp import GradualStyleEncoder

    torch.manual_seed(seed)
    return GradualStyleEncoder(n_styles=n_styles, **TINY_PSP_ENCODER).eval()


def write_tiny_bundle(home: str | Path, directions: bool = True) -> dict[str, Path]:
    """Write the tiny bundle into ``home`` (a VIDINV_HOME); return ``{registry name: path}``."""
    home = Path(home)
    wdir = home / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    G = tiny_generator()
    with torch.no_grad():
        latent_avg = G.mean_latent(256, generator=torch.Generator().manual_seed(2))[0]
    sd = {f"decoder.{k}": v.clone() for k, v in G.state_dict().items()}
    sd.update({f"encoder.{k}": v.clone() for k, v in tiny_psp_encoder(G.n_latent).state_dict().items()})
    psp = {"state_dict": sd, "latent_avg": latent_avg.repeat(18, 1).clone(),
           "opts": {"output_size": 1024, "encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True,
                    "input_nc": 3, "learn_in_w": False}}
    out = {"psp_ffhq_encode.pt": wdir / "psp_ffhq_encode.pt", "143_enc.pth": wdir / "143_enc.pth"}
    torch.save(psp, out["psp_ffhq_encode.pt"])
    torch.save(tiny_fs_encoder().state_dict(), out["143_enc.pth"])
    if directions:
        src = Path(__file__).resolve().parents[1].parent / "shared" / "directions"
        if src.is_dir():
            shutil.copytree(src, home / "directions", dirs_exist_ok=True)
    return out
