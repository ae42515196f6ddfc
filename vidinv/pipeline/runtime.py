"""Run-time settings (device, precision), the weight files and the model bundle of ``vidinv edit`` / ``vidinv invert``.

* :class:`Runtime` (:mod:`vidinv.device`, re-exported here) picks the device (``auto`` = CUDA when
  present) and the precision: ``fp32`` everywhere; ``fp16`` / ``bf16`` run the networks under
  :func:`torch.autocast` on CUDA only (on the CPU they fall back to fp32 with a warning). Codes leave the
  networks as float32.
* :func:`required_weights` / :func:`resolve_weights` name and find every weight file a job needs, so
  that a missing file stops the job with the registry's :class:`~vidinv.weights.MissingWeightsError`
  before any video is decoded.
* :class:`ModelBundle` holds the loaded networks: the :class:`~vidinv.inverters.Inverter` of the encoder
  kind (the StyleGAN2 generator and ``latent_avg`` from ``psp_ffhq_encode.pt``, and the encoder:
  Feature-Style ``143_enc.pth`` or pSp's GradualStyleEncoder from ``psp_ffhq_encode.pt``; built by the
  registry :func:`vidinv.inverters.build_inverter`) and, when ``79999_iter.pth`` is present, the BiSeNet
  face parser for the blend mask.
* An encoder the user trained with ``training/`` (exported under its own name, e.g.
  ``myrun_fs_encoder.pth``) is used through ``encoder_checkpoint=`` (a path) of
  :func:`required_weights`, :func:`resolve_weights` and :func:`load_bundle`; the generator still comes
  from ``psp_ffhq_encode.pt``.

What is substituted is said at WARNING level (the CLI's default): ``--mask auto`` without
``79999_iter.pth`` (landmark masks instead of face parsing), and a generator file without
``latent_avg`` (the average is estimated from random z, :func:`vidinv.inverters.base.load_generator_and_average`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vidinv.device import PRECISIONS, Runtime
from vidinv.inverters import (
    ENCODER_KINDS,
    F_STORAGE_DTYPE,
    FS_ENCODER_FILE,
    GENERATOR_FILE,
    LATENT_AVG_SAMPLES,
    Inverter,
    build_inverter,
    inverter_class,
)
from vidinv.models.bisenet import load_bisenet
from vidinv.models.stylegan2 import Generator
from vidinv.weights import MissingWeightsError, registry, resolve

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS", "ENCODERS", "GENERATOR_FILE", "FS_ENCODER_FILE", "PARSER_FILE", "F_STORAGE_DTYPE",
    "LATENT_AVG_SAMPLES", "Runtime", "ModelBundle", "required_weights", "resolve_weights", "load_bundle",
]

#: The inversion encoder kinds (``--encoder``; :data:`vidinv.inverters.ENCODER_KINDS`).
ENCODERS = ENCODER_KINDS
PARSER_FILE = "79999_iter.pth"


def required_weights(encoder: str = "fs", *, need_encoder: bool = True,
                     encoder_checkpoint: str | os.PathLike | None = None) -> list[str]:
    """Registry names of the model files a job needs (:meth:`vidinv.inverters.Inverter.weight_names`).

    ``fs``: ``143_enc.pth`` (encoder) and ``psp_ffhq_encode.pt`` (generator and latent_avg);
    ``psp``: ``psp_ffhq_encode.pt``. Without the encoder (``--from-inversion``), or with the user's own
    ``encoder_checkpoint`` (not a registry file): the generator file only. The face parser
    ``79999_iter.pth`` is optional (see :func:`resolve_weights`).

    Raises:
        ValueError: an unknown encoder kind.
    """
    return inverter_class(encoder).weight_names(need_encoder=need_encoder, encoder_checkpoint=encoder_checkpoint)


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


@dataclass
class ModelBundle:
    """The loaded networks of a job (see the module doc).

    Attributes:
        inverter: the :class:`~vidinv.inverters.Inverter` (generator, latent_avg, encoder or None for
            ``--from-inversion``, runtime).
        parser: BiSeNet face parser, or None (landmark masks).
        paths: ``{registry name: path}`` of the files loaded.
    """

    inverter: Inverter
    parser: torch.nn.Module | None
    paths: dict[str, Path]

    @property
    def G(self) -> Generator:
        """The StyleGAN2 generator (eval, on the runtime device, float32)."""
        return self.inverter.generator

    @property
    def runtime(self) -> Runtime:
        """The job's :class:`Runtime`."""
        return self.inverter.runtime


def load_bundle(paths: dict[str, Path], encoder: str = "fs", runtime: Runtime | None = None, *,
                need_encoder: bool = True, mask: str = "auto",
                encoder_checkpoint: str | os.PathLike | None = None) -> ModelBundle:
    """Load the networks of a job from resolved paths (see :func:`resolve_weights`).

    Args:
        paths: ``{registry name: path}`` from :func:`resolve_weights`.
        encoder: an encoder kind of the inverter registry (``"fs"``, ``"psp"``).
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
        ValueError: an unknown encoder kind; the encoder's W+ rows or F shape do not fit the generator.
    """
    inverter = build_inverter(encoder, paths, runtime, need_encoder=need_encoder, encoder_checkpoint=encoder_checkpoint)
    parser = None
    if mask != "landmarks" and PARSER_FILE in paths:
        parser = load_bisenet(paths[PARSER_FILE], device=inverter.runtime.torch_device)
    return ModelBundle(inverter=inverter, parser=parser, paths=dict(paths))
