"""The table of every file vidinv can use: official weights, latent directions and external models.

Each :class:`WeightFile` says what the file is, what needs it, its (approximate) size, its licence,
where it officially comes from, its sha256 where known and which loader checks its structure.

Three kinds of file:

* ``"weights"``: network checkpoints (PyTorch pickles), fetched into ``$VIDINV_HOME/weights/<name>``
  and structure-checked by a strict loader from :mod:`vidinv.models` (``check``, a dotted
  ``"module:function"`` name imported lazily; the function takes the path and raises
  :class:`vidinv.io.checkpoints.CheckpointError` when the file does not have the official layout).
* ``"direction"``: latent editing directions (``.npy`` / ``.pt``), fetched into
  ``$VIDINV_HOME/directions/<subdir>/<file>`` and checked by sha256 (every hash is known).
* ``"external"``: files other packages own and download into their own caches (torchvision's LPIPS
  backbones and face-alignment's FAN in ``torch.hub.get_dir()/checkpoints``, dlib's models inside the
  ``face_recognition_models`` package). vidinv only reports whether they are present.

Sizes marked approximate were computed from the official state_dict key shapes (float32) plus the
container's overhead; they are good to a few percent. The Google Drive ids and file names are those of
the papers' READMEs and download scripts (Feature-Style encoder ``download_models.sh``, pSp and e4e
READMEs); direction URLs are raw files of the public GitHub repositories.

Licences: every entry carries a short ``licence`` label (the LICENCE column of ``vidinv weights
list``), a longer ``licence_note`` quoting or summarising the source's own licence file, and a
``terms`` category (:data:`TERMS`) from which :attr:`WeightFile.restricted` follows; the restricted-use
count of ``vidinv weights list`` is computed from it. vidinv's own code is MIT (the repository's
``LICENSE``); none of the files below is covered by it.

Registry access: :func:`get`, :func:`all_files`, :func:`names`, :func:`files_for`, :data:`USES`;
:func:`register` / :func:`unregister` / :func:`registered` add entries (tests, plug-ins).
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "WeightFile",
    "UnknownWeightError",
    "USES",
    "TERMS",
    "RESTRICTED_TERMS",
    "GDRIVE_VIEW",
    "GDRIVE_DOWNLOAD",
    "get",
    "all_files",
    "names",
    "files_for",
    "register",
    "unregister",
    "registered",
    "load_checker",
    "expand_names",
    "format_size",
]

Kind = Literal["weights", "direction", "external"]
Terms = Literal["permissive", "non-commercial", "research-only", "check-terms", "unknown"]
Checker = str | Callable[..., object] | None

#: Browser URL of a Google Drive file (what a person opens to download it by hand).
GDRIVE_VIEW = "https://drive.google.com/file/d/{id}/view"
#: Direct-download URL of a Google Drive file (large files need gdown's confirm-token handling).
GDRIVE_DOWNLOAD = "https://drive.google.com/uc?export=download&id={id}"

#: What ``vidinv weights fetch --for USE`` accepts, and what each use means.
USES: dict[str, str] = {
    "edit": "vidinv edit with the default Feature-Style encoder (encoder, decoder, blend mask, directions)",
    "edit-psp": "vidinv edit --encoder psp (pSp FFHQ encoder)",
    "align": "face detection and FFHQ alignment (dlib 68-point landmarks)",
    "align-fan": "face alignment with face-alignment's FAN landmarks (optional extra `fan`)",
    "eval": "identity similarity / reconstruction metrics (ArcFace, IR-SE50, LPIPS)",
    "train": "training the Feature-Style encoder (StyleGAN2, ArcFace ID loss, LPIPS)",
    "train-psp": "training pSp-style encoders (IR-SE50 ID loss)",
    "restore": "pSp face super-resolution model (CelebA-HQ, x1..x32 down-sampling)",
    "frontalize": "pSp face frontalization model (FFHQ)",
    "toonify": "pSp toonify model (FFHQ encoder, toon StyleGAN2 generator)",
    "anonymize": "pSp segmentation-to-face model (CelebAMask-HQ, 19 labels) for face anonymization",
    "sketch": "pSp sketch-to-face model (CelebA-HQ, 1-channel sketches)",
}


#: The ``terms`` categories of :class:`WeightFile` and what each means.
TERMS: dict[str, str] = {
    "permissive": "the source's licence allows commercial use (MIT, BSD, public domain)",
    "non-commercial": "the licence, or the stated terms of the data the file derives from, excludes commercial use",
    "research-only": "the licence allows research use only",
    "check-terms": "the file's own licence is permissive, but its training data or the weights' terms are "
                   "stated elsewhere: read the note and the source",
    "unknown": "no licence information recorded",
}
#: ``terms`` values that restrict use (counted by ``vidinv weights list``).
RESTRICTED_TERMS: frozenset[str] = frozenset({"non-commercial", "research-only"})


class UnknownWeightError(KeyError):
    """A name that is not in the registry. The message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WeightFile:
    """One file vidinv can use.

    Attributes:
        name: registry key and the name used on the command line. Weights use their official file
            name (``"143_enc.pth"``); directions ``"<subdir>/<file>"`` (``"stit_w/age.npy"``).
        kind: ``"weights"``, ``"direction"`` or ``"external"``.
        description: what the file holds (network, layout).
        needed_by: what in vidinv needs it, in words.
        uses: tags of :data:`USES` (``vidinv weights fetch --for USE``).
        size: size in bytes; approximate unless ``size_exact``; None when unknown.
        size_exact: True when ``size`` is the exact byte count of the official file.
        licence: short licence / terms of use (a column of ``vidinv weights list``).
        licence_note: longer note (who grants it, dataset terms), from the source's own licence file.
        terms: category of the terms of use, a key of :data:`TERMS`; :attr:`restricted` follows from it.
        licence_file: name of the licence file shipped with the source (for directions, the
            ``LICENSE-*`` files of the test data), or None.
        licence_url: where that licence text is published, or None.
        url: official plain download URL (GitHub raw file, torchvision, ...), or None.
        gdrive_id: Google Drive file id of the official file, or None.
        sha256: full sha256 (hex) of the official file where known, else None.
        sha256_prefix: leading hex digits of the sha256 encoded in the file name by torch.hub's
            convention (``name-<prefix>.ext``), for external files; None otherwise.
        check: structure check, a ``"module:function"`` name (or a callable) taking the path and
            raising :class:`vidinv.io.checkpoints.CheckpointError` on mismatch; None for none.
        subdir: folder under ``$VIDINV_HOME`` the file is fetched into (``"weights"``,
            ``"directions/stit_w"``); unused for external files.
        filename: file name on disk (defaults to the last part of ``name``).
        locator: for external files, where their owner keeps them: ``"torch_hub"`` (torch.hub's
            ``checkpoints`` folder) or ``"face_recognition_models"`` (its ``models`` folder).
        hint: for external files, how they get installed (shown when they are missing).
    """

    name: str
    kind: Kind
    description: str
    needed_by: str
    uses: tuple[str, ...]
    size: int | None
    size_exact: bool
    licence: str
    licence_note: str = ""
    terms: Terms = "unknown"
    licence_file: str | None = None
    licence_url: str | None = None
    url: str | None = None
    gdrive_id: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    check: Checker = None
    subdir: str = "weights"
    filename: str = ""
    locator: str | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("weights", "direction", "external"):
            raise ValueError(f"{self.name}: kind must be weights, direction or external, not {self.kind!r}")
        if not self.filename:
            object.__setattr__(self, "filename", self.name.rsplit("/", 1)[-1])
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())
            if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
                raise ValueError(f"{self.name}: sha256 must be 64 hex digits")
        if self.terms not in TERMS:
            raise ValueError(f"{self.name}: terms must be one of {sorted(TERMS)}, not {self.terms!r}")
        unknown = [u for u in self.uses if u not in USES]
        if unknown:
            raise ValueError(f"{self.name}: unknown use tag(s) {unknown}; known: {sorted(USES)}")

    @property
    def restricted(self) -> bool:
        """True when the terms restrict use (``terms`` is ``"non-commercial"`` or ``"research-only"``)."""
        return self.terms in RESTRICTED_TERMS

    @property
    def fetchable(self) -> bool:
        """True when vidinv downloads this file itself (weights and directions)."""
        return self.kind != "external" and (self.url is not None or self.gdrive_id is not None)

    @property
    def rel_path(self) -> str:
        """Path under ``$VIDINV_HOME`` (POSIX form), e.g. ``"weights/143_enc.pth"``; also the path
        under a mirror base URL (``$VIDINV_MIRROR``)."""
        return f"{self.subdir.strip('/')}/{self.filename}"

    @property
    def source_url(self) -> str | None:
        """The official source a person should open: the Google Drive browser page for Drive files,
        else the plain URL."""
        if self.gdrive_id:
            return GDRIVE_VIEW.format(id=self.gdrive_id)
        return self.url

    @property
    def size_text(self) -> str:
        """Human-readable size, with ``~`` and "approx." where the size is not exact."""
        if self.size is None:
            return "unknown"
        s = format_size(self.size)
        return s if self.size_exact else f"~{s}"


def format_size(n: int) -> str:
    """Bytes as a short decimal string (``"53.3 MB"``, ``"1.20 GB"``, ``"2.8 kB"``)."""
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            v = n / scale
            if unit == "GB" and v < 10:
                return f"{v:.2f} {unit}"
            return f"{v:.0f} {unit}" if v >= 100 else f"{v:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# Licence texts (short form for the table; notes for `vidinv weights list --long`). Every statement comes
# from the source's own licence file or README, named in the note; where only the source can tell, the
# note says "see <url>".

_FS_REPO = "https://github.com/InterDigitalInc/FeatureStyleEncoder"
_PSP_REPO = "https://github.com/eladrich/pixel2style2pixel"
_STYLEGAN2_LICENCE = "https://nvlabs.github.io/stylegan2/license.html"
_FFHQ_REPO = "https://github.com/NVlabs/ffhq-dataset"

_NC_FFHQ = "non-commercial (NVIDIA SCL-NC; FFHQ CC BY-NC-SA 4.0)"
_NC_DECODER_NOTE = ("The StyleGAN2 decoder inside is the FFHQ StyleGAN2 that pSp's README points to (rosinality's "
                    "conversion of NVIDIA's stylegan2-ffhq-config-f, see stylegan2-ffhq-config-f.pt). NVIDIA's "
                    "StyleGAN2 is made available under the Nvidia Source Code License-NC, whose use limitation says "
                    "the Work and any derivative works thereof only may be used non-commercially, "
                    "\"non-commercially\" meaning for research or evaluation purposes only "
                    f"({_STYLEGAN2_LICENCE}).")
_NC_FFHQ_NOTE = _NC_DECODER_NOTE + (" The pSp README says the model is trained with the FFHQ dataset, which NVIDIA "
                                    f"makes available under CC BY-NC-SA 4.0 ({_FFHQ_REPO}). pSp's own code is MIT.")
_CELEBAHQ_NOTE = (" The pSp README says this model is trained with the CelebA-HQ dataset, collected from CelebA "
                  "(for CelebA's terms see https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html). pSp's own code is MIT.")
_FS_LICENCE = "InterDigital evaluation licence: fundamental research only"
_FS_NOTE = ("InterDigital's Limited Software Evaluation License of the FeatureStyleEncoder repository, which "
            "distributes this file: (1) use only for fundamental research (the \"Authorized Purpose\"), "
            "excluding any commercial use; (2) commercial use includes any use in a product offered, free or for "
            "a price, to any third party, any use to provide a service to a third party, any fee-bearing "
            "sublicence and any use to create a competing product; (3) no correcting, adapting, modifying, "
            "reverse engineering or otherwise transforming the Software; (4) any publication must state "
            "'\"FeatureStyleEncoder\" is an InterDigital product' and cite Yao, Newson, Gousseau, Hellier, "
            "\"A Style-Based GAN Encoder for High Fidelity Reconstruction of Images and Videos\", ECCV 2022 "
            "(arXiv 2202.02183). Copies must carry the licence. Read the whole licence: "
            f"{_FS_REPO}/blob/main/LICENSE.md")
_STIT_LICENCE = "CC BY-NC 4.0 (Yandex LLC, stylegan2-distillation)"
_STIT_REPO = "https://github.com/EvgenyKashin/stylegan2-distillation"
_STIT_NOTE = ("Byte-identical (same sha256) to EvgenyKashin/stylegan2-distillation stylegan2directions/<name>.npy, "
              "whose LICENSE is Creative Commons Attribution-NonCommercial 4.0 International, Copyright (c) 2019 "
              "Yandex LLC: sharing and adapting for NonCommercial purposes only, with attribution "
              f"({_STIT_REPO}). Stitch it in Time (rotemtzaban/STIT), from which vidinv downloads them, took them "
              "unchanged; STIT's MIT licence covers STIT's code only.")


# Default branches: confirmed from the repositories' own links (STIT and e4e: `main`; pSp: `master`, its README's
# Colab badge; FeatureStyleEncoder: `main` in external references to its files, while its README's Colab badge
# says `master`).
_RAW = "https://raw.githubusercontent.com/{repo}/{branch}/{path}"
_FS_RAW = ("InterDigitalInc/FeatureStyleEncoder", "main")
_STIT_RAW = ("rotemtzaban/STIT", "main")
_E4E_RAW = ("omertov/encoder4editing", "main")
_PSP_RAW = ("eladrich/pixel2style2pixel", "master")


def _raw(repo_branch: tuple[str, str], path: str) -> str:
    return _RAW.format(repo=repo_branch[0], branch=repo_branch[1], path=path)


def _builtin_entries() -> list[WeightFile]:
    e: list[WeightFile] = []
    # ---------------------------------------------------------------------------------------- weights
    e.append(WeightFile(
        name="143_enc.pth", kind="weights",
        description="Feature-Style encoder (Yao et al., ECCV 2022), fs_encoder_v2 / IResNet-50, plain state_dict",
        needed_by="vidinv edit (Feature-Style encoder: W+ latent and feature code F)",
        uses=("edit",), size=456_000_000, size_exact=False,
        licence=_FS_LICENCE, licence_note=_FS_NOTE, terms="research-only", licence_file="LICENSE.md",
        licence_url=_raw(_FS_RAW, "LICENSE.md"),
        gdrive_id="1RnnBL77j_Can0dY1KOiXHvG224MxjvzC",
        check="vidinv.models.fs_encoder:load_fs_encoder"))
    e.append(WeightFile(
        name="psp_ffhq_encode.pt", kind="weights",
        description="pSp FFHQ inversion (Richardson et al., CVPR 2021): {state_dict: encoder.* + decoder.* "
                    "(StyleGAN2 1024), latent_avg (18,512), opts}",
        needed_by="vidinv edit (its StyleGAN2 1024 decoder and latent_avg are the Feature-Style encoder's "
                  "generator; --encoder psp uses its encoder)",
        uses=("edit", "edit-psp", "train"), size=1_201_400_000, size_exact=False,
        licence=_NC_FFHQ, licence_note=_NC_FFHQ_NOTE, terms="non-commercial", licence_url=_PSP_REPO,
        gdrive_id="1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0",
        check="vidinv.models.psp:load_psp"))
    e.append(WeightFile(
        name="79999_iter.pth", kind="weights",
        description="BiSeNet face parsing, 19 CelebAMask-HQ classes (zllrunning/face-parsing.PyTorch), "
                    "plain state_dict",
        needed_by="vidinv edit (face parsing for the blend mask); vidinv anonymize (the label map); Feature-Style "
                  "training",
        uses=("edit", "train", "anonymize"), size=53_300_000, size_exact=False,
        licence="non-commercial (CelebAMask-HQ dataset agreement)", terms="non-commercial",
        licence_note=("face-parsing.PyTorch's README: the model is trained on the CelebAMask-HQ dataset, whose "
                      "Dataset Agreement makes it available for non-commercial research purposes only and forbids "
                      "exploiting \"any portion of derived data\" for any commercial purposes "
                      "(https://github.com/switchablenorms/CelebAMask-HQ). For the licence of the code and of the "
                      "file itself see https://github.com/zllrunning/face-parsing.PyTorch."),
        licence_url="https://github.com/zllrunning/face-parsing.PyTorch",
        gdrive_id="154JgKpzCPW82qINcVieuPH3fZ2e0P812",
        check="vidinv.models.bisenet:load_bisenet"))
    e.append(WeightFile(
        name="backbone.pth", kind="weights",
        description="ArcFace IResNet-50 (insightface arcface_torch r50), plain state_dict",
        needed_by="Feature-Style training (multi-layer ID loss); identity similarity metrics",
        uses=("train", "eval"), size=174_600_000, size_exact=False,
        licence="non-commercial research (insightface model zoo)", terms="non-commercial",
        licence_note=("An insightface arcface_torch r50 model, distributed by the Feature-Style encoder authors "
                      "(their download_models.sh). insightface's model zoo README: \"ALL models are available for "
                      "non-commercial research purposes only.\" See "
                      "https://github.com/deepinsight/insightface/tree/master/model_zoo."),
        licence_url="https://github.com/deepinsight/insightface/tree/master/model_zoo",
        gdrive_id="1coFTz-Kkgvoc_gRT8JFzqCgeC3lAFWQp",
        check="vidinv.models.iresnet:load_arcface"))
    e.append(WeightFile(
        name="model_ir_se50.pth", kind="weights",
        description="IR-SE50 face recognition backbone (TreB1eN InsightFace_Pytorch), plain state_dict",
        needed_by="pSp / e4e ID loss; identity similarity metrics",
        uses=("train-psp", "eval"), size=175_400_000, size_exact=False,
        licence="MIT (TreB1eN/InsightFace_Pytorch); trained on MS1M-derived data", terms="check-terms",
        licence_note=("pSp's README: \"Pretrained IR-SE50 model taken from TreB1eN\" (InsightFace_Pytorch); pSp "
                      "credits it with TreB1eN's MIT licence, licenses/LICENSE_TreB1eN (Copyright (c) 2018 "
                      "TreB1eN). The model is trained on MS1M-derived data (InsightFace_Pytorch's README trains on "
                      "the refined MS1M / emore data); the data's own terms are not part of that licence: see "
                      "https://github.com/TreB1eN/InsightFace_Pytorch."),
        licence_file="LICENSE_TreB1eN", licence_url=_raw(_PSP_RAW, "licenses/LICENSE_TreB1eN"),
        gdrive_id="1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn",
        check="vidinv.models.irse:load_irse50"))
    e.append(WeightFile(
        name="stylegan2-ffhq-config-f.pt", kind="weights",
        description="StyleGAN2 FFHQ 1024 config-f (rosinality conversion): {g_ema, g, d, latent_avg}",
        needed_by="StyleGAN2 sampling and encoder training (the g_ema generator)",
        uses=("train",), size=381_000_000, size_exact=False,
        licence=_NC_FFHQ, terms="non-commercial",
        licence_note=("pSp's README: \"StyleGAN model pretrained on FFHQ taken from rosinality\", i.e. NVIDIA's "
                      "stylegan2-ffhq-config-f converted with rosinality's convert_weight.py. NVIDIA's StyleGAN2 is "
                      "made available under the Nvidia Source Code License-NC: the Work and any derivative works "
                      "thereof only may be used non-commercially, meaning for research or evaluation purposes only "
                      f"({_STYLEGAN2_LICENCE}). Trained on FFHQ, which NVIDIA makes available under CC BY-NC-SA 4.0 "
                      f"({_FFHQ_REPO})."),
        licence_url=_STYLEGAN2_LICENCE,
        gdrive_id="1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",
        check="vidinv.models.stylegan2:load_generator"))
    e.append(WeightFile(
        name="psp_celebs_super_resolution.pt", kind="weights",
        description="pSp super-resolution (CelebA-HQ faces down-sampled x1..x32 and resized back to 256): "
                    "{state_dict: encoder.* + decoder.*, latent_avg, opts (input_nc 3, resize_factors)}",
        needed_by="vidinv restore (pSp face super-resolution)",
        uses=("restore",), size=1_201_400_000, size_exact=False,
        licence=_NC_FFHQ, terms="non-commercial",
        licence_note=_NC_DECODER_NOTE + _CELEBAHQ_NOTE,
        licence_url=_PSP_REPO,
        gdrive_id="1ZpmSXBpJ9pFEov6-jjQstAlfYbkebECu",
        check="vidinv.models.psp:load_psp_task"))
    e.append(WeightFile(
        name="psp_ffhq_frontalization.pt", kind="weights",
        description="pSp face frontalization (FFHQ): {state_dict: encoder.* + decoder.*, latent_avg, "
                    "opts (input_nc 3)}",
        needed_by="vidinv frontalize (pSp face frontalization)",
        uses=("frontalize",), size=1_201_400_000, size_exact=False,
        licence=_NC_FFHQ, licence_note=_NC_FFHQ_NOTE, terms="non-commercial", licence_url=_PSP_REPO,
        gdrive_id="1_S4THAzXb-97DbpXmanjHtXRyKxqjARv",
        check="vidinv.models.psp:load_psp_task"))
    e.append(WeightFile(
        name="psp_ffhq_toonify.pt", kind="weights",
        description="pSp toonify (FFHQ encoder; the decoder is the toon StyleGAN2 generator of Doron Adler & Justin "
                    "Pinkney): {state_dict: encoder.* + decoder.*, latent_avg, opts (input_nc 3)}",
        needed_by="vidinv toonify (pSp toonification)",
        uses=("toonify",), size=1_201_400_000, size_exact=False,
        licence="non-commercial (FFHQ CC BY-NC-SA 4.0); toon generator: see the pSp README", terms="non-commercial",
        licence_note=("The encoder is trained on FFHQ, which NVIDIA makes available under CC BY-NC-SA 4.0 "
                      f"({_FFHQ_REPO}). The StyleGAN2 decoder inside is not NVIDIA's FFHQ generator but the toon "
                      "generator the pSp README credits to Doron Adler and Justin Pinkney; for its terms see "
                      f"{_PSP_REPO} (README, Pretrained Models). pSp's own code is MIT."),
        licence_url=_PSP_REPO,
        gdrive_id="1YKoiVuFaqdvzDP5CZaqa3k5phL-VDmyz",
        check="vidinv.models.psp:load_psp_task"))
    e.append(WeightFile(
        name="psp_celebs_seg_to_face.pt", kind="weights",
        description="pSp segmentation map to face (CelebAMask-HQ, 19 labels one-hot): {state_dict: encoder.* + "
                    "decoder.*, latent_avg, opts (input_nc 19, label_nc 19)}; the pSp README links it as "
                    "\"Segmentation to Image\" without a file name",
        needed_by="vidinv anonymize (face from a parsing label map, with an injected style)",
        uses=("anonymize",), size=1_201_500_000, size_exact=False,
        licence=_NC_FFHQ + "; CelebAMask-HQ non-commercial", terms="non-commercial",
        licence_note=_NC_DECODER_NOTE + (" The pSp README says this model is trained with the CelebAMask-HQ dataset, "
                                         "whose Dataset Agreement makes it available for non-commercial research "
                                         "purposes only and forbids exploiting \"any portion of derived data\" for "
                                         "any commercial purposes (https://github.com/switchablenorms/CelebAMask-HQ). "
                                         "pSp's own code is MIT."),
        licence_url=_PSP_REPO,
        gdrive_id="1VpEKc6E6yG3xhYuZ0cq8D2_1CbT0Dstz",
        check="vidinv.models.psp:load_psp_task"))
    e.append(WeightFile(
        name="psp_celebs_sketch_to_face.pt", kind="weights",
        description="pSp sketch to face (CelebA-HQ, 1-channel sketches): {state_dict: encoder.* + decoder.*, "
                    "latent_avg, opts (input_nc 1, label_nc 1)}",
        needed_by="pSp sketch-to-face (images; loader and registry entry only)",
        uses=("sketch",), size=1_201_400_000, size_exact=False,
        licence=_NC_FFHQ, terms="non-commercial",
        licence_note=_NC_DECODER_NOTE + _CELEBAHQ_NOTE,
        licence_url=_PSP_REPO,
        gdrive_id="1lB7wk7MwtdxL-LL4Z_T76DuCfk00aSXA",
        check="vidinv.models.psp:load_psp_task"))

    # ------------------------------------------------------------------------------------- directions
    fs_dirs = {
        "Smiling_boundary.npy": "5782190b00340d58f8418885dc9ad9ab53462874d7a9a1b91241e76099c9fc22",
        "Eyeglasses_boundary.npy": "227c8edae45f8cf06a0578e8422ef2dc59de6fb741d55280746a63fd40d2936c",
        "Heavy_Makeup_boundary.npy": "dbd6336240825cf1a8077c5e40bde544ebd6b7c300ee76e28991e8e2d892030d",
    }
    for fname, digest in fs_dirs.items():
        e.append(WeightFile(
            name=f"featurestyle/{fname}", kind="direction",
            description="InterFaceGAN boundary in the Feature-Style encoder's W+ (1, 9216) float32, unit norm; "
                        "applied as w' = w + 15*alpha*d",
            needed_by="vidinv edit (Feature-Style directions)",
            uses=("edit",), size=36_992, size_exact=True,
            licence=_FS_LICENCE, licence_note=_FS_NOTE, terms="research-only",
            licence_file="LICENSE-FeatureStyleEncoder.md", licence_url=_raw(_FS_RAW, "LICENSE.md"),
            url=_raw(_FS_RAW, f"boundaries_ours/{fname}"), sha256=digest,
            subdir="directions/featurestyle"))
    stit = {
        "age": "72095858d9f441494d46742639da43b17c282bbd48add6f5eca143073d725986",
        "eye_distance": "c679f7405f8277ef791aa22fd8cb7c728bd0ac210fcd9664cf57c3138c9c4ef6",
        "eye_eyebrow_distance": "a13002c0ad517fdcffe1688e3a3b44a1b8fab0a71769e609b6de43a20550edf0",
        "eye_ratio": "77a7aa387c857eea20380a530626e48ba63de1ad33621c37319020a823be7446",
        "eyes_open": "6115c94f42449aaa1f7064171f32bdc6d6c92aba4db7905fdbbd31a1483fde90",
        "gender": "f1ac40508d9f5b7df499378f60766d93fe4e5f5461b63fff8ed14233e9b15a9e",
        "lip_ratio": "a3ee87e7a175666437d722dbb191cd1b73fd5ce02955f058cbe280878bd529b0",
        "mouth_open": "b4852b360bbc70380f2151e5d7204a895ccf8d22d6a951dbb6f65264774dab39",
        "mouth_ratio": "0a897cc731a213a3ec62869181a30d31d72a2761340c58d0f24e073a5a67be28",
        "nose_mouth_distance": "a466d61d2123d64134616656d36ae5f50fa9bf345373f2e51d37fc41d1af30ca",
        "nose_ratio": "8866c8cf02f7aad7a13c71c3f6b64f9414a58f43a2d4b8f52982c86b4c1dc2d3",
        "nose_tip": "aba1e4487b43e8a1389b3c645b83fe032c439f32397c04e24d3dc9c0e63857b0",
        "pitch": "28fd460a828f56f83c6c22ce4c5251664dab5d7d5da3ad840517c6df9d07c385",
        "roll": "b4e0cc381482a79cd8901e0997cb1d4ffdf6c8e597306da32a040f290e0fed88",
        "smile": "703a67fe070ce1f3c5ad18fc0f5711093756ba1a7048e2e09b2cd6c933032b6e",
        "yaw": "600bbadd2569a8382f444498bf995b3484b9151972601ddfacd80dfa4d5740cd",
    }
    for stem, digest in stit.items():
        e.append(WeightFile(
            name=f"stit_w/{stem}.npy", kind="direction",
            description="Stitch-it-in-Time W direction per style layer, (18, 512) float64, not unit norm; "
                        "applied as w' = w + strength*d",
            needed_by="vidinv edit (STIT directions)",
            uses=("edit",), size=73_856, size_exact=True,
            licence=_STIT_LICENCE, licence_note=_STIT_NOTE.replace("<name>", stem), terms="non-commercial",
            licence_file="LICENSE-stylegan2-distillation", licence_url=_STIT_REPO,
            url=_raw(_STIT_RAW, f"editings/w_directions/{stem}.npy"), sha256=digest,
            subdir="directions/stit_w"))
    e4e = [
        ("interfacegan_age.pt", "interfacegan_directions/age.pt", 2_808,
         "50074516b1629707d89b5e43d6b8abd1792212fa3b961a87a11323d6a5222ae0",
         "InterFaceGAN age direction in W, tensor (1, 512)"),
        ("interfacegan_smile.pt", "interfacegan_directions/smile.pt", 2_808,
         "817a7e732b59dee9eba862bec8bd7e8373568443bc9f9731a21cf9b0356f0653",
         "InterFaceGAN smile direction in W, tensor (1, 512)"),
        ("interfacegan_pose.pt", "interfacegan_directions/pose.pt", 37_624,
         "736e0eacc8488fa0b020a2e7bd256b957284c364191dfea693705e5d06d43e7d",
         "InterFaceGAN pose direction in W+, tensor (1, 18, 512)"),
        ("ganspace_ffhq_pca.pt", "ganspace_pca/ffhq_pca.pt", 167_562,
         "4d7f9df1c96180d9026b9cb8d04753579fbf385f321a9d0e263641601c5e5d36",
         "GANSpace PCA of W for FFHQ: {mean (1,512), comp (80,1,512), std (80)}"),
    ]
    for fname, upstream, size, digest, desc in e4e:
        e.append(WeightFile(
            name=f"e4e/{fname}", kind="direction",
            description=desc + "; applied as w' = w + factor*d",
            needed_by="vidinv edit (e4e InterFaceGAN / GANSpace directions)",
            uses=("edit",), size=size, size_exact=True,
            licence="MIT (e4e)", terms="permissive", licence_file="LICENSE-e4e",
            licence_note="encoder4editing's LICENSE: MIT License, Copyright (c) 2021 omertov.",
            licence_url=_raw(_E4E_RAW, "LICENSE"),
            url=_raw(_E4E_RAW, f"editings/{upstream}"), sha256=digest,
            subdir="directions/e4e"))

    # --------------------------------------------------------------------------------------- external
    _TV_LICENCE = "BSD-3-Clause code (torchvision); weights: see torchvision"
    _TV_NOTE = ("torchvision's code is BSD-3-Clause. Its README (Pre-trained Model License): \"The pre-trained models "
                "provided in this library may have their own licenses or terms and conditions derived from the "
                "dataset used for training. It is your responsibility to determine whether you have permission to "
                "use the models for your use case.\" These are ImageNet classifiers.")
    _TV_URL = "https://github.com/pytorch/vision#pre-trained-model-license"
    tv_hint = ("torchvision downloads it into torch.hub's checkpoints folder the first time the LPIPS "
               "backbone is built (needs internet); or download it by hand to the path shown.")
    e.append(WeightFile(
        name="alexnet-owt-7be5be79.pth", kind="external",
        description="torchvision AlexNet ImageNet weights (LPIPS net='alex' backbone)",
        needed_by="LPIPS (alex) reconstruction metric / loss",
        uses=("eval", "train"), size=244_400_000, size_exact=False,
        licence=_TV_LICENCE, terms="check-terms", licence_note=_TV_NOTE, licence_url=_TV_URL,
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79",
        locator="torch_hub", hint=tv_hint))
    e.append(WeightFile(
        name="vgg16-397923af.pth", kind="external",
        description="torchvision VGG16 ImageNet weights (LPIPS net='vgg' backbone)",
        needed_by="LPIPS (vgg) loss",
        uses=("train",), size=553_400_000, size_exact=False,
        licence=_TV_LICENCE, terms="check-terms", licence_note=_TV_NOTE, licence_url=_TV_URL,
        url="https://download.pytorch.org/models/vgg16-397923af.pth", sha256_prefix="397923af",
        locator="torch_hub", hint=tv_hint))
    _FAN_NOTE = ("face-alignment's LICENSE is BSD 3-Clause (Copyright (c) Adrian Bulat); for the terms of the "
                 "models it downloads and of their training data see https://github.com/1adrianb/face-alignment.")
    fan_hint = ("face-alignment (pip install 'vidinv[fan]') downloads it into torch.hub's checkpoints folder "
                "on first use (needs internet); or download it by hand to the path shown.")
    e.append(WeightFile(
        name="s3fd-619a316812.pth", kind="external",
        description="face-alignment S3FD face detector state_dict",
        needed_by="--landmarks fan (face detection)",
        uses=("align-fan",), size=89_800_000, size_exact=False,
        licence="BSD-3-Clause code (face-alignment); weights: see source", terms="check-terms",
        licence_note=_FAN_NOTE, licence_url="https://github.com/1adrianb/face-alignment",
        url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth", sha256_prefix="619a316812",
        locator="torch_hub", hint=fan_hint))
    e.append(WeightFile(
        name="2DFAN4-cd938726ad.zip", kind="external",
        description="face-alignment 2D FAN-4 68-landmark network (TorchScript archive)",
        needed_by="--landmarks fan (68 landmarks)",
        uses=("align-fan",), size=95_000_000, size_exact=False,
        licence="BSD-3-Clause code (face-alignment); weights: see source", terms="check-terms",
        licence_note=_FAN_NOTE, licence_url="https://github.com/1adrianb/face-alignment",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip", sha256_prefix="cd938726ad",
        locator="torch_hub", hint=fan_hint))
    _DLIB_PD = ("dlib-models README (Davis King): \"anyone can do whatever they want with these model files as I've "
                "released them into the public domain.\"")
    frm_hint = ("shipped inside the face_recognition_models package (a vidinv dependency): "
                "pip install face_recognition_models")
    e.append(WeightFile(
        name="shape_predictor_68_face_landmarks.dat", kind="external",
        description="dlib 68-point landmark shape predictor (iBUG 300-W)",
        needed_by="face alignment (FFHQ quad from 68 landmarks)",
        uses=("align", "edit"), size=99_693_937, size_exact=True,
        licence="non-commercial (iBUG 300-W terms)", terms="non-commercial",
        licence_note=("dlib-models README: trained on the iBUG 300-W dataset, whose licence \"excludes commercial "
                      "use\"; one of its creators asked for a note \"that the trained model therefore can't be used "
                      "in a commerical product\" (ask Imperial College London for commercial use)."),
        licence_url="https://github.com/davisking/dlib-models",
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        locator="face_recognition_models", hint=frm_hint))
    e.append(WeightFile(
        name="mmod_human_face_detector.dat", kind="external",
        description="dlib CNN (MMOD) face detector",
        needed_by="face detection with the CNN detector option",
        uses=("align",), size=729_940, size_exact=True,
        licence="public domain (dlib-models)", terms="permissive", licence_note=_DLIB_PD,
        licence_url="https://github.com/davisking/dlib-models",
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        locator="face_recognition_models", hint=frm_hint))
    e.append(WeightFile(
        name="shape_predictor_5_face_landmarks.dat", kind="external",
        description="dlib 5-point landmark shape predictor",
        needed_by="fast face detection checks (5 landmarks)",
        uses=("align",), size=9_150_489, size_exact=True,
        licence="public domain (dlib-models)", terms="permissive", licence_note=_DLIB_PD,
        licence_url="https://github.com/davisking/dlib-models",
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        locator="face_recognition_models", hint=frm_hint))
    e.append(WeightFile(
        name="dlib_face_recognition_resnet_model_v1.dat", kind="external",
        description="dlib face-recognition ResNet (128-d identity embedding; offline default of vidinv report)",
        needed_by="identity metrics (vidinv report)",
        uses=("eval",), size=22_466_066, size_exact=True,
        licence="public domain (dlib-models)", terms="permissive", licence_note=_DLIB_PD,
        licence_url="https://github.com/davisking/dlib-models",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        locator="face_recognition_models", hint=frm_hint))
    return e


_REGISTRY: dict[str, WeightFile] = {w.name: w for w in _builtin_entries()}


# --------------------------------------------------------------------------------------------------
# access

def get(name: str | WeightFile) -> WeightFile:
    """Return the entry called ``name`` (an entry is returned as is).

    A direction may also be named by its file name alone when that is unambiguous
    (``"age.npy"`` for ``"stit_w/age.npy"``).

    Raises:
        UnknownWeightError: no such entry; the message lists the closest names.
    """
    if isinstance(name, WeightFile):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    by_file = [w for w in _REGISTRY.values() if w.filename == name]
    if len(by_file) == 1:
        return by_file[0]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownWeightError(f"unknown weight file {name!r}.{hint} See `vidinv weights list`.")


def all_files(kind: Kind | None = None) -> list[WeightFile]:
    """Every registered entry (optionally of one kind), in registration order."""
    return [w for w in _REGISTRY.values() if kind is None or w.kind == kind]


def names(kind: Kind | None = None) -> list[str]:
    """Names of every registered entry (optionally of one kind)."""
    return [w.name for w in all_files(kind)]


def files_for(use: str, *, fetchable_only: bool = False) -> list[WeightFile]:
    """Entries tagged with ``use`` (a key of :data:`USES`), e.g. ``files_for("edit")``.

    Raises:
        ValueError: unknown use.
    """
    if use not in USES:
        raise ValueError(f"unknown use {use!r}; choose from: {', '.join(USES)}")
    return [w for w in _REGISTRY.values() if use in w.uses and (w.fetchable or not fetchable_only)]


def register(entry: WeightFile, *, replace: bool = False) -> WeightFile:
    """Add ``entry`` to the registry.

    Raises:
        ValueError: the name is taken and ``replace`` is False.
    """
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"weight file {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry (no error when absent)."""
    _REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(*entries: WeightFile) -> Iterator[list[WeightFile]]:
    """Context manager registering ``entries`` for its duration (replacing same-named ones, which
    are restored afterwards)."""
    saved = {w.name: _REGISTRY.get(w.name) for w in entries}
    for w in entries:
        _REGISTRY[w.name] = w
    try:
        yield list(entries)
    finally:
        for name, old in saved.items():
            if old is None:
                _REGISTRY.pop(name, None)
            else:
                _REGISTRY[name] = old


def load_checker(entry: WeightFile) -> Callable[..., object] | None:
    """Import the structure check of ``entry`` (``"module:function"``), or return the callable given.

    Returns:
        The function (called as ``fn(path)``), or None when the entry has no structure check.

    Raises:
        ImportError: the module or function cannot be imported (the message names the check).
    """
    chk = entry.check
    if chk is None or callable(chk):
        return chk
    mod_name, _, func_name = chk.partition(":")
    if not mod_name or not func_name:
        raise ImportError(f"{entry.name}: structure check {chk!r} is not of the form 'module:function'")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ImportError(f"{entry.name}: cannot import the structure check {chk} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise ImportError(f"{entry.name}: structure check {chk}: {mod_name} has no function {func_name!r}")
    return fn


def expand_names(patterns: Iterable[str]) -> list[str]:
    """Turn command-line names into registry names, in order and without repeats.

    Each pattern is a registry name, a bare file name (see :func:`get`) or a direction folder
    (``"stit_w"`` or ``"stit_w/"``) meaning every direction in it.

    Raises:
        UnknownWeightError: a pattern matches nothing.
    """
    out: list[str] = []
    for p in patterns:
        prefix = p.rstrip("/") + "/"
        folder = [n for n in _REGISTRY if n.startswith(prefix)]
        matched = folder if folder and p not in _REGISTRY else [get(p).name]
        out.extend(n for n in matched if n not in out)
    return out
