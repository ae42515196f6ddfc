"""Run-time settings (device, precision) and the model bundle of ``vidinv edit`` / ``vidinv invert``.

* :class:`Runtime` picks the device (``auto`` = CUDA when present) and the precision: ``fp32``
  everywhere; ``fp16`` / ``bf16`` run the networks under :func:`torch.autocast` on CUDA only (on the
  CPU they fall back to fp32 with a warning). Codes leave the networks as float32.
* :func:`required_weights` / :func:`resolve_weights` name and find every weight file a job needs, so
  that a missing file stops the job with the registry's :class:`~vidinv.weights.MissingWeightsError`
  before any video is decoded.
* :class:`ModelBundle` holds the loaded networks: the StyleGAN2 generator and ``latent_avg`` from
  ``psp_ffhq_encode.pt`` (:func:`vidinv.models.load_generator`), the encoder (Feature-Style
  ``143_enc.pth``, :func:`vidinv.models.load_fs_encoder`; or pSp's GradualStyleEncoder from
  ``psp_ffhq_encode.pt``) and, when ``79999_iter.pth`` is present, the BiSeNet face parser for the
  blend mask. :meth:`ModelBundle.encode` maps aligned crops to (w, F).
* An encoder the user trained with ``training/`` (exported under its own name, e.g.
  ``myrun_fs_encoder.pth``) is used through ``encoder_checkpoint=`` (a path) of
  :func:`required_weights`, :func:`resolve_weights` and :func:`load_bundle`; the generator still comes
  from ``psp_ffhq_encode.pt``.

What is substituted is said at WARNING level (the CLI's default): ``--mask auto`` without
``79999_iter.pth`` (landmark masks instead of face parsing), and a generator file without
``latent_avg`` (the average is estimated from random z).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS", "ENCODERS", "GENERATOR_FILE", "FS_ENCODER_FILE", "PARSER_FILE", "F_STORAGE_DTYPE", "LATENT_AVG_SAMPLES",
    "Runtime", "ModelBundle", "required_weights", "resolve_weights", "load_bundle",
]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ENCODERS = ("fs", "psp")
GENERATOR_FILE = "psp_ffhq_encode.pt"
FS_ENCODER_FILE = "143_enc.pth"
PARSER_FILE = "79999_iter.pth"
#: Number of random z whose mapped w are averaged when the generator file has no latent_avg.
LATENT_AVG_SAMPLES = 4096
#: The feature code F is rounded to float16 in every path: the precision the inversion export stores it
#: in (:mod:`vidinv.io.inversion`), so that ``vidinv edit --from-inversion`` reproduces a direct run bit for
#: bit. Relative rounding error <= 2**-11, far below one uint8 level of the output.
F_STORAGE_DTYPE = torch.float16


@dataclass
class Runtime:
    """Device and precision of a job.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast, CUDA only).

    Raises:
        ValueError: unknown precision, or ``cuda`` asked for on a machine without CUDA.
    """

    device: str = "auto"
    precision: str = "fp32"
    torch_device: torch.device = field(init=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        name = str(self.device)
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
        self.torch_device = torch.device(name)
        if self.torch_device.type != "cuda" and self.precision != "fp32":
            log.warning("precision %s needs CUDA; running in fp32 on %s", self.precision, self.torch_device)
            self.precision = "fp32"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32."""
        return None if self.precision == "fp32" else PRECISIONS[self.precision]

    def autocast(self):
        """Context manager: :func:`torch.autocast` on CUDA for fp16/bf16, else a no-op."""
        dt = self.autocast_dtype
        if dt is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dt)

    def describe(self) -> str:
        return f"{self.torch_device} {self.precision}"


def required_weights(encoder: str = "fs", *, need_encoder: bool = True,
                     encoder_checkpoint: str | os.PathLike | None = None) -> list[str]:
    """Registry names of the model files a job needs.

    ``fs``: ``143_enc.pth`` (encoder) and ``psp_ffhq_encode.pt`` (generator and latent_avg);
    ``psp``: ``psp_ffhq_encode.pt``. Without the encoder (``--from-inversion``), or with the user's own
    ``encoder_checkpoint`` (not a registry file): the generator file only. The face parser
    ``79999_iter.pth`` is optional (see :func:`resolve_weights`).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if need_encoder and encoder == "fs" and encoder_checkpoint is None:
        return [FS_ENCODER_FILE, GENERATOR_FILE]
    return [GENERATOR_FILE]


def resolve_weights(names: list[str], weights_dir: str | os.PathLike | None = None, fetch: bool = False, *,
                    mask: str = "auto", quiet: bool = False,
                    encoder_checkpoint: str | os.PathLike | None = None,
                    allow_hash_mismatch: bool | None = None) -> dict[str, Path]:
    """Find every file of ``names`` (and the face parser) in one go.

    Args:
        names: registry names (model files and direction files together, so one error lists all).
        weights_dir, fetch: as :func:`vidinv.weights.resolve`.
        mask: ``"parsing"`` adds ``79999_iter.pth`` to the required files; ``"auto"`` uses it when
            present (no fetch, no error when absent; when absent a WARNING says that the blend masks come
            from landmarks instead, and how to get the file); ``"landmarks"`` never uses it.
        encoder_checkpoint: the user's own encoder file (see :func:`load_bundle`); added to the result
            under its file name.
        allow_hash_mismatch: accept ``weights_dir`` files whose sha256 differs from the registry's (see
            :func:`vidinv.weights.resolve`; None reads ``VIDINV_ALLOW_HASH_MISMATCH``).

    Returns:
        ``{name: path}``; ``79999_iter.pth`` is in it when it will be used.

    Raises:
        vidinv.weights.MissingWeightsError: every missing file, with URLs and target paths.
        vidinv.weights.WeightHashMismatchError: a ``weights_dir`` file differs from the registry's sha256.
        FileNotFoundError: ``encoder_checkpoint`` is not a file.
        ValueError: ``encoder_checkpoint`` has the name of a registry file.
    """
    from vidinv.weights import MissingWeightsError, registry, resolve

    wanted = list(dict.fromkeys(names))
    if mask == "parsing":
        wanted.append(PARSER_FILE)
    own = None
    if encoder_checkpoint is not None:
        own = Path(encoder_checkpoint)
        if own.name in registry.names():
            raise ValueError(f"encoder checkpoint {own}: its name is that of the official file {own.name}; an encoder "
                             "you trained must keep its own name (e.g. myrun_fs_encoder.pth), and an official file "
                             "belongs in --weights-dir")
        if not own.is_file():
            raise FileNotFoundError(f"encoder checkpoint {own} does not exist")
    paths = resolve(wanted, weights_dir=weights_dir, fetch=fetch, quiet=quiet,
                    allow_hash_mismatch=allow_hash_mismatch)
    if mask == "auto":
        try:
            paths.update(resolve([PARSER_FILE], weights_dir=weights_dir, fetch=False, quiet=True,
                                 allow_hash_mismatch=allow_hash_mismatch))
        except MissingWeightsError:
            where = f"--weights-dir {weights_dir} or the cache" if weights_dir else "the cache"
            log.warning("%s (BiSeNet face parsing) was not found in %s: --mask auto uses landmark masks (the hull "
                        "of the 68 landmarks) instead of face parsing. Get it with `vidinv weights fetch %s`, or "
                        "choose landmark masks explicitly with --mask landmarks.", PARSER_FILE, where, PARSER_FILE)
    if own is not None:
        paths[own.name] = own
    return paths


class _PspEncoderAdapter(torch.nn.Module):
    """pSp GradualStyleEncoder + latent_avg: crops (B, 3, 256, 256) in [-1, 1] -> W+ (B, 18, 512)."""

    def __init__(self, encoder: torch.nn.Module, latent_avg: torch.Tensor | None):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("latent_avg", latent_avg if latent_avg is not None else torch.zeros(1), persistent=False)
        self.has_avg = latent_avg is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(x)
        return codes + self.latent_avg.unsqueeze(0).to(codes.dtype) if self.has_avg else codes


@dataclass
class ModelBundle:
    """The loaded networks of a job (see the module doc).

    Attributes:
        G: StyleGAN2 generator (eval, on the runtime device, float32).
        latent_avg: (n_latent, 512) float32 on the device.
        encoder_kind: ``"fs"`` or ``"psp"``.
        encoder: the encoder module, or None (``--from-inversion``).
        parser: BiSeNet or None.
        paths: ``{registry name: path}`` of the files loaded.
        runtime: the :class:`Runtime`.
        feature_index: K (5) for ``fs``, None for ``psp``.
    """

    G: torch.nn.Module
    latent_avg: torch.Tensor
    encoder_kind: str
    encoder: torch.nn.Module | None
    parser: torch.nn.Module | None
    paths: dict[str, Path]
    runtime: Runtime
    feature_index: int | None = 5

    @property
    def align_size(self) -> int:
        """Side of the aligned crop fed to the encoder: the generator size for ``fs`` (1024, downscaled
        twice by :meth:`FeatureStyleEncoder.encode` as the reference does), 256 for ``psp``."""
        return int(self.G.size) if self.encoder_kind == "fs" else 256

    @property
    def feature_shape(self) -> tuple[int, int, int] | None:
        return tuple(self.G.feature_shape(self.feature_index)) if self.encoder_kind == "fs" else None

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Invert aligned crops.

        Args:
            crops: (B, S, S, 3) uint8 RGB aligned faces, S = :attr:`align_size`.

        Returns:
            ``(w, F)``: w (B, n_latent, 512) float32 W+ codes (latent_avg included) and F (B, C, 16, 16)
            float32 feature codes rounded to :data:`F_STORAGE_DTYPE` (None for ``psp``), on the device.
        """
        if self.encoder is None:
            raise RuntimeError("this bundle was loaded without an encoder")
        dev = self.runtime.torch_device
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(dev).permute(0, 3, 1, 2).float()
        x = x / 127.5 - 1.0
        with self.runtime.autocast():
            if self.encoder_kind == "fs":
                w, F = self.encoder.encode(x, self.latent_avg)
                return w.float(), F.to(F_STORAGE_DTYPE).float()
            w = self.encoder(x)
        return w.float(), None


def load_bundle(paths: dict[str, Path], encoder: str = "fs", runtime: Runtime | None = None, *,
                need_encoder: bool = True, mask: str = "auto",
                encoder_checkpoint: str | os.PathLike | None = None) -> ModelBundle:
    """Load the networks of a job from resolved paths (see :func:`resolve_weights`).

    Args:
        paths: ``{registry name: path}`` from :func:`resolve_weights`.
        encoder: ``"fs"`` or ``"psp"``.
        runtime: device and precision (default :class:`Runtime`).
        need_encoder: load the encoder (False for ``--from-inversion``).
        mask: ``"landmarks"`` skips the face parser even when its file is in ``paths``.
        encoder_checkpoint: the user's own encoder instead of the registry's: a Feature-Style encoder
            exported by ``training/`` (``<run>_fs_encoder.pth``, read by
            :func:`vidinv.models.load_fs_encoder`) for ``fs``, or a pSp checkpoint (``<run>_psp_encode.pt``,
            whose encoder and latent_avg are used, :func:`vidinv.models.psp.load_psp_encoder`) for ``psp``.
            The generator still comes from ``psp_ffhq_encode.pt``; the encoder must fit it.

    When the generator file has no ``latent_avg``, the average is estimated as the mean of the mapping
    network's w over :data:`LATENT_AVG_SAMPLES` random z (seed 0), and a WARNING says so.

    Raises:
        vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: a file has the wrong layout.
        ValueError: the encoder's W+ rows or F shape do not fit the generator.
    """
    from vidinv.models import load_fs_encoder, load_generator

    runtime = runtime or Runtime()
    dev = runtime.torch_device
    G, latent_avg = load_generator(paths[GENERATOR_FILE], device=dev)
    if latent_avg is None:
        log.warning("%s has no latent_avg; estimating the average latent from %d random z (mean of the mapping "
                    "network's w, seed 0). Codes and edits are relative to this estimate, not to the average the "
                    "encoder was trained with.", paths[GENERATOR_FILE], LATENT_AVG_SAMPLES)
        latent_avg = G.mean_latent(LATENT_AVG_SAMPLES, generator=torch.Generator(device=dev).manual_seed(0))[0]
    latent_avg = latent_avg.to(dev, torch.float32)
    if latent_avg.ndim == 1:
        latent_avg = latent_avg.unsqueeze(0).repeat(G.n_latent, 1)
    enc = None
    if need_encoder and encoder == "fs":
        enc_path = Path(encoder_checkpoint) if encoder_checkpoint is not None else paths[FS_ENCODER_FILE]
        enc = load_fs_encoder(enc_path, device=dev)
        if enc.n_styles != G.n_latent or (enc.content_channels, 16, 16) != tuple(G.feature_shape(5)):
            raise ValueError(f"{enc_path}: the encoder gives {enc.n_styles} W+ rows and F with "
                             f"{enc.content_channels} channels; the generator in {paths[GENERATOR_FILE]} needs "
                             f"{G.n_latent} rows and F of shape {tuple(G.feature_shape(5))}")
    elif need_encoder and encoder == "psp":
        from vidinv.models.psp import load_psp_encoder

        enc_path = Path(encoder_checkpoint) if encoder_checkpoint is not None else paths[GENERATOR_FILE]
        penc, pavg = load_psp_encoder(enc_path)
        if penc.n_styles != G.n_latent:
            raise ValueError(f"{enc_path}: the pSp encoder gives {penc.n_styles} W+ rows; the generator in "
                             f"{paths[GENERATOR_FILE]} needs {G.n_latent}")
        enc = _PspEncoderAdapter(penc, pavg).to(dev).eval()
    parser = None
    if mask != "landmarks" and PARSER_FILE in paths:
        from vidinv.models.bisenet import load_bisenet

        parser = load_bisenet(paths[PARSER_FILE], device=dev)
    return ModelBundle(G=G, latent_avg=latent_avg, encoder_kind=encoder, encoder=enc, parser=parser, paths=paths,
                       runtime=runtime, feature_index=5 if encoder == "fs" else None)
