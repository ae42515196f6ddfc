"""A tiny model bundle in the official file layouts, for end-to-end tests of ``vidinv edit`` / ``invert``.

:func:`write_tiny_bundle` writes into ``HOME/weights/`` (the registry's cache layout, so that
``VIDINV_HOME=HOME`` makes :func:`vidinv.weights.resolve` and the real loaders find them). The networks
are small, so every file carries a vidinv record (``vidinv_config``, :func:`vidinv.io.checkpoints.vidinv_record`)
declaring its architecture, exactly as vidinv's training export writes it (the files are built by
:func:`training.export.psp_checkpoint` / :func:`training.export.fs_encoder_checkpoint`, only saved under the
registry names and with the :data:`TINY_LICENCE` label); official files, which have no record, are held to
the official architectures instead.

* ``psp_ffhq_encode.pt``: the pSp layout ``{"state_dict": {"decoder.<key>": ..., "encoder.<key>": ...},
  "latent_avg": (18, 512), "opts": {..., "vidinv_config": record}}`` holding a StyleGAN2 generator at 1024
  with ``style_dim`` 512, ``n_mlp`` 2 and every layer capped at ``max_channels`` (8) channels. Its W+ has
  the official 18 rows of 512, so every shipped direction (``fs:``, ``stit:``, ``e4e:``, ``ganspace:``)
  applies unchanged. Its ``encoder.*`` entries are a small pSp GradualStyleEncoder
  (:data:`TINY_PSP_ENCODER`: one IR-SE unit per stage of widths 16/24/32/48, map2style convs 16 wide,
  18 styles of 512), which :func:`vidinv.models.psp.load_psp_encoder` builds from the record, so
  ``--encoder psp`` runs end to end.
* ``143_enc.pth``: ``{"state_dict": <the official key layout>, "vidinv_config": record}``, a Feature-Style
  encoder with one block per stage, stage widths 8 and F channels 8 (= the generator's channels at 16x16).
* pSp's task files (only with ``tasks=True``): ``psp_celebs_super_resolution.pt``,
  ``psp_ffhq_frontalization.pt``, ``psp_ffhq_toonify.pt``, ``psp_celebs_seg_to_face.pt``,
  ``psp_celebs_sketch_to_face.pt`` in pSp's layout with the ``opts`` the official files record
  (:data:`TASKS`: ``input_nc``, ``label_nc``, ``dataset_type``, ``resize_factors``), each a tiny pSp
  (:func:`task_checkpoint`); the toonify file's decoder is another tiny generator (seed 7), as the
  official file holds a toon generator, not the FFHQ one. The segmentation-to-face file's decoder is
  :func:`face_drawing_generator`: whatever the code, it draws one fixed real face (of another person:
  ``../shared/images/ffhq_00020.jpg`` in grey), so that an end-to-end ``vidinv anonymize`` test can check
  that the output still holds a face dlib detects, with another identity.
* ``79999_iter.pth`` (only with ``parser=True``): a BiSeNet of ``base_width`` 8 (:func:`tiny_bisenet`)
  with a record, whose main head labels every pixel ``skin``: the parsing blend mask is then the whole
  aligned square, visibly different from the landmark hull, so a test can tell which path ran.

Weights are deterministic (``torch.manual_seed``); the generator's images are not faces, which is
fine for the pipeline (geometry, masks, timing and file handling do not depend on what is drawn).
``directions=True`` copies ``../shared/directions`` into ``HOME/directions/`` (small files).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

TINY_MAX_CHANNELS = 8
TINY_BISENET_WIDTH = 8
#: Licence label of the bundle's files (their records say what they are).
TINY_LICENCE = "vidinv test bundle: random weights written by tests/tiny_bundle.py; no terms attached"
TINY_ENCODER = {"widths": (8, 8, 8, 8), "depths": (1, 1, 1, 1), "stem_width": 8, "content_channels": 8}
# Adjacent stage widths differ so that the stage ends can be read back from the file's shapes; SE gates need >= 16.
TINY_PSP_ENCODER = {"widths": (16, 24, 32, 48), "blocks": (1, 1, 1, 1), "style_dim": 512, "head_width": 16}


def tiny_generator(seed: int = 0, size: int = 1024):
    """Generator(size (1024), 512, n_mlp=2, channel_multiplier=1, max_channels=8), deterministic weights."""
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(seed)
    G = Generator(size, 512, 2, channel_multiplier=1, max_channels=TINY_MAX_CHANNELS)
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


def tiny_bisenet(seed: int = 4):
    """A :class:`~vidinv.models.bisenet.BiSeNet` of ``base_width`` :data:`TINY_BISENET_WIDTH`, eval mode, random
    weights except the main head: its ConvBNReLU outputs 1 everywhere (BN weight 0, bias 1) and its 1x1
    classifier maps that to a logit of 4c for ``skin`` (class 1) and 0 for every other class, so
    ``parse`` labels every pixel ``skin`` whatever the input."""
    from vidinv.models.bisenet import CLASS_INDEX, BiSeNet

    torch.manual_seed(seed)
    net = BiSeNet(19, TINY_BISENET_WIDTH)
    head = net.conv_out
    with torch.no_grad():
        head.conv.bn.weight.zero_()
        head.conv.bn.bias.fill_(1.0)
        head.conv_out.weight.zero_()
        head.conv_out.weight[CLASS_INDEX["skin"]] = 1.0
    return net.eval()


#: (file name, input_nc, label_nc, dataset_type, resize_factors) as the official pSp task files record them.
TASKS = [
    ("psp_celebs_super_resolution.pt", 3, 0, "celebs_super_resolution", "1,2,4,8,16,32"),
    ("psp_ffhq_frontalization.pt", 3, 0, "ffhq_frontalize", None),
    ("psp_ffhq_toonify.pt", 3, 0, "ffhq_encode", None),
    ("psp_celebs_seg_to_face.pt", 19, 19, "celebs_seg_to_face", None),
    ("psp_celebs_sketch_to_face.pt", 1, 1, "celebs_sketch_to_face", None),
]
#: Seed of the toon generator inside the tiny ``psp_ffhq_toonify.pt``.
TOON_GENERATOR_SEED = 7
#: The face :func:`face_drawing_generator` draws in the tiny segmentation-to-face file (an aligned FFHQ photo).
DRAWN_FACE = Path(__file__).resolve().parents[1].parent / "shared" / "images" / "ffhq_00020.jpg"


def face_drawing_generator(gray, seed: int = 8):
    """A tiny generator (:func:`tiny_generator` layout) whose image is ``2 * gray - 1`` in R, G and B for every
    W+ code, with the constant noise: a hand-set test network, not a trained one.

    How: every ToRGB but the last has zero weights and bias (the RGB skip is 0); the last styled conv has
    zero conv weights and bias, noise weight 1 and its constant noise buffer set to ``gray``, so its
    activation is ``sqrt(2) * gray`` in every channel (leaky ReLU of a value >= 0); the last ToRGB has a
    constant modulation of 1 (zero weight, bias 1), weight ``2 / sqrt(2) * sqrt(C)`` from channel 0 to each
    of R, G, B (cancelling the 1/sqrt(C) equalised-lr scale) and bias -1.

    Args:
        gray: (size, size) float array in [0, 1] (size 1024).
    """
    import math

    G = tiny_generator(seed)
    with torch.no_grad():
        for rgb in [G.to_rgb1, *G.to_rgbs[:-1]]:
            rgb.conv.weight.zero_()
            rgb.bias.zero_()
        last = G.convs[-1]
        last.conv.weight.zero_()
        last.activate.bias.zero_()
        last.noise.weight.fill_(1.0)
        buf = getattr(G.noises, f"noise_{G.num_layers - 1}")
        buf.copy_(torch.as_tensor(gray, dtype=buf.dtype).view_as(buf))
        out = G.to_rgbs[-1]
        out.conv.modulation.weight.zero_()
        out.conv.modulation.bias.fill_(1.0)
        out.conv.weight.zero_()
        c = out.conv.in_channel
        out.conv.weight[0, :, 0, 0, 0] = 2.0 / math.sqrt(2.0) * math.sqrt(c)
        out.bias.fill_(-1.0)
    return G.eval()


def drawn_face_gray():
    """The grey image (1024, 1024) float32 in [0, 1] of :data:`DRAWN_FACE` (ITU-R 601 luma, PIL ``"L"``)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(DRAWN_FACE).convert("L").resize((1024, 1024)), np.float32) / 255.0


def task_checkpoint(G, input_nc: int, label_nc: int, dataset_type: str, resize_factors: str | None, name: str,
                    seed: int = 5) -> dict:
    """A tiny pSp task checkpoint in the official layout (encoder of :data:`TINY_PSP_ENCODER` sizes reading
    ``input_nc`` channels, decoder ``G``, latent_avg of G) whose ``opts`` carry the task's options."""
    from vidinv.models.psp import GradualStyleEncoder
    from vidinv.training.export import psp_checkpoint

    torch.manual_seed(seed)
    enc = GradualStyleEncoder(n_styles=G.n_latent, input_nc=input_nc, **TINY_PSP_ENCODER).eval()
    with torch.no_grad():
        latent_avg = G.mean_latent(64, generator=torch.Generator().manual_seed(2))[0]
    ck = psp_checkpoint(enc, G, latent_avg.repeat(G.n_latent, 1), name, licence=TINY_LICENCE)
    ck["opts"].update(label_nc=label_nc, dataset_type=dataset_type)
    ck["opts"].pop("resize_factors", None)
    if resize_factors is not None:
        ck["opts"]["resize_factors"] = resize_factors
    return ck


def write_tiny_bundle(home: str | Path, directions: bool = True, parser: bool = False,
                      tasks: bool = False) -> dict[str, Path]:
    """Write the tiny bundle into ``home`` (a VIDINV_HOME); return ``{registry name: path}``.

    ``parser=True`` also writes the tiny face parser ``79999_iter.pth`` (:func:`tiny_bisenet`), so that
    ``--mask auto`` / ``parsing`` take the face-parsing path; ``tasks=True`` the pSp task files
    (:data:`TASKS`, :func:`task_checkpoint`).
    """
    from vidinv.io.checkpoints import vidinv_record
    from vidinv.training.export import fs_encoder_checkpoint, psp_checkpoint

    home = Path(home)
    wdir = home / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    G = tiny_generator()
    with torch.no_grad():
        latent_avg = G.mean_latent(256, generator=torch.Generator().manual_seed(2))[0]
    out = {"psp_ffhq_encode.pt": wdir / "psp_ffhq_encode.pt", "143_enc.pth": wdir / "143_enc.pth"}
    torch.save(psp_checkpoint(tiny_psp_encoder(G.n_latent), G, latent_avg.repeat(G.n_latent, 1), "psp_ffhq_encode.pt",
                              licence=TINY_LICENCE), out["psp_ffhq_encode.pt"])
    torch.save(fs_encoder_checkpoint(tiny_fs_encoder(), "143_enc.pth", licence=TINY_LICENCE), out["143_enc.pth"])
    if parser:
        net = tiny_bisenet()
        out["79999_iter.pth"] = wdir / "79999_iter.pth"
        torch.save({"state_dict": {k: v.clone() for k, v in net.state_dict().items()},
                    "vidinv_config": vidinv_record("bisenet", net.architecture(), licence=TINY_LICENCE,
                                                   name="79999_iter.pth")}, out["79999_iter.pth"])
    if tasks:
        decoders = {"psp_ffhq_toonify.pt": tiny_generator(TOON_GENERATOR_SEED),
                    "psp_celebs_seg_to_face.pt": face_drawing_generator(drawn_face_gray())}
        for i, (name, input_nc, label_nc, dataset_type, factors) in enumerate(TASKS):
            out[name] = wdir / name
            dec = decoders.get(name, G)
            torch.save(task_checkpoint(dec, input_nc, label_nc, dataset_type, factors, name, seed=10 + i), out[name])
    if directions:
        src = Path(__file__).resolve().parents[1].parent / "shared" / "directions"
        if src.is_dir():
            shutil.copytree(src, home / "directions", dirs_exist_ok=True)
    return out
