"""Inverters: the seam between a job and its encoder + generator (see :mod:`vidinv.inverters.base`).

The registry :data:`INVERTERS` maps each encoder kind (``vidinv edit/invert --encoder KIND``, an inversion
export's ``encoder.kind``) to its :class:`Inverter` class; :func:`build_inverter` loads one. This is the
only place that knows the kinds: code elsewhere asks the registry (:func:`inverter_class`) or the built
inverter (its ``feature_index``, ``align_size``, ``encode``, ``synthesize``, ``edit``), never compares kind
names.

A new encoder goes here: a subclass of :class:`Inverter` in its own module (its weight files, how its
encoder loads, its crop size, ``_encode``), added to :data:`INVERTERS`.

=============  ======================================================  ======================================
kind           class                                                   codes
=============  ======================================================  ======================================
``fs``         :class:`~vidinv.inverters.fs.FeatureStyleInverter`      W+ (18, 512) and F (512, 16, 16), K = 5
``psp``        :class:`~vidinv.inverters.psp.PSPInverter`              W+ (18, 512)
``psp-sr``     :class:`~vidinv.inverters.tasks.SuperResolutionInverter`  W+ of pSp's super-resolution model
``psp-front``  :class:`~vidinv.inverters.tasks.FrontalizationInverter`   W+ of pSp's frontalization model
``psp-toon``   :class:`~vidinv.inverters.tasks.ToonifyInverter`          W+ of pSp's toonify model (toon G)
``psp-seg``    :class:`~vidinv.inverters.segmentation.SegmentationInverter`  W+ of pSp's seg-to-face model
=============  ======================================================  ======================================

The first two are inversion encoders (``--encoder``, :data:`ENCODER_KINDS`); the others are pSp's task
models (:data:`TASK_KINDS`), each with its own generator, run by ``vidinv restore`` / ``frontalize`` /
``toonify`` / ``anonymize`` (and ``vidinv edit --restore``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vidinv.device import Runtime
from vidinv.inverters.base import F_STORAGE_DTYPE, GENERATOR_FILE, LATENT_AVG_SAMPLES, Inverter
from vidinv.inverters.fs import FS_ENCODER_FILE, FeatureStyleInverter
from vidinv.inverters.psp import PSPInverter
from vidinv.inverters.segmentation import SegmentationInverter
from vidinv.inverters.tasks import FrontalizationInverter, PspTaskInverter, SuperResolutionInverter, ToonifyInverter

__all__ = ["INVERTERS", "ENCODER_KINDS", "TASK_KINDS", "Inverter", "FeatureStyleInverter", "PSPInverter",
           "PspTaskInverter", "SuperResolutionInverter", "FrontalizationInverter", "ToonifyInverter",
           "SegmentationInverter",
           "inverter_class", "build_inverter", "is_task", "GENERATOR_FILE", "FS_ENCODER_FILE", "LATENT_AVG_SAMPLES",
           "F_STORAGE_DTYPE"]

#: The registry: kind -> :class:`Inverter` class (insertion order = the order listed to users).
INVERTERS: dict[str, type[Inverter]] = {cls.kind: cls for cls in (
    FeatureStyleInverter, PSPInverter, SuperResolutionInverter, FrontalizationInverter, ToonifyInverter,
    SegmentationInverter)}
#: The inversion encoders (``vidinv edit / invert --encoder``): they invert into ``psp_ffhq_encode.pt``'s generator.
ENCODER_KINDS: tuple[str, ...] = tuple(k for k, c in INVERTERS.items() if not issubclass(c, PspTaskInverter))
#: pSp's task models (each its own encoder and generator).
TASK_KINDS: tuple[str, ...] = tuple(k for k, c in INVERTERS.items() if issubclass(c, PspTaskInverter))


def is_task(kind: str) -> bool:
    """Whether ``kind`` is one of pSp's task models (:data:`TASK_KINDS`) rather than an inversion encoder.

    Raises:
        ValueError: an unknown kind.
    """
    return issubclass(inverter_class(kind), PspTaskInverter)


def inverter_class(kind: str) -> type[Inverter]:
    """The :class:`Inverter` class of an encoder kind.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
    """
    try:
        return INVERTERS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"encoder must be one of {ENCODER_KINDS} (or a pSp task model, one of {TASK_KINDS}), "
                         f"got {kind!r}") from None


def build_inverter(kind: str, paths: Mapping[str, Path], runtime: Runtime | None = None, *, need_encoder: bool = True,
                   encoder_checkpoint: str | os.PathLike | None = None) -> Inverter:
    """Load the inverter of ``kind`` from resolved weight files (see :meth:`Inverter.load`).

    Raises:
        ValueError: an unknown kind; an encoder that does not fit the generator.
        vidinv.io.checkpoints.CheckpointError / CheckpointMismatchError: a file has the wrong layout.
    """
    return inverter_class(kind).load(paths, runtime, need_encoder=need_encoder, encoder_checkpoint=encoder_checkpoint)
