"""pSp's image-to-image tasks on video: the options of ``vidinv restore``, ``toonify`` and ``anonymize``.

Each task runs the ``vidinv edit`` job (:func:`vidinv.pipeline.edit.run_edit`: tracking, smoothing,
alignment, encode, optional latent edits and style mixing, render, inverse warp and blend, streaming
output with the input's timestamps and audio) with the task's pSp model as the inverter
(:mod:`vidinv.inverters.tasks`); only the defaults differ, so a task is an options class here:

=============  =====================  ================================================================
command        inverter kind          defaults
=============  =====================  ================================================================
``restore``    ``psp-sr``             ``scale`` 4 (the output frame up-scaled x4, faces rendered at that size),
                                     ``detect_upscale`` ``"auto"`` (small faces found)
``toonify``    ``psp-toon``           as ``edit``
``anonymize``  ``psp-seg``            ``mix_rows`` ``"8-17"`` (pSp's fine styles: one injected style per track),
                                     ``gate`` ``"off"``
=============  =====================  ================================================================

The confidence gate (:mod:`vidinv.face.gate`): ``anonymize`` turns it off, since a face faded back to the
input would show the identity the command is meant to hide. ``restore`` and ``toonify`` keep it on without
its ``identity`` component: their reconstructions differ from the input face by design (a restored face
vs its degraded input, a cartoon), so the crop-vs-reconstruction distance would not measure a failure.

``vidinv edit --restore`` is the same job as ``restore`` with latent edits (``EditOptions.restore``).
``vidinv frontalize`` writes aligned crops instead of blended frames: :mod:`vidinv.pipeline.frontalize`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidinv.io.mux import EditedVideoWriter
from vidinv.io.video import VideoReader
from vidinv.models.sr_degradation import simulate_low_resolution_frame
from vidinv.pipeline.edit import EditOptions

__all__ = ["RestoreOptions", "ToonifyOptions", "AnonymizeOptions", "TASK_OPTIONS", "write_simulated_input"]


@dataclass(kw_only=True)
class RestoreOptions(EditOptions):
    """``vidinv restore``: pSp face super-resolution (see :class:`~vidinv.pipeline.edit.EditOptions` for the
    fields; here ``encoder`` is ``"psp-sr"``, ``scale`` defaults to 4 and ``detect_upscale`` to ``"auto"``:
    small frames are enlarged for face detection, so that faces down to about 15 px are found)."""

    encoder: str = "psp-sr"
    scale: int = 4
    detect_upscale: int | str = "auto"
    gate_identity: str = "off"


@dataclass(kw_only=True)
class ToonifyOptions(EditOptions):
    """``vidinv toonify``: pSp's toonify model (``encoder`` ``"psp-toon"``)."""

    encoder: str = "psp-toon"
    gate_identity: str = "off"


@dataclass(kw_only=True)
class AnonymizeOptions(EditOptions):
    """``vidinv anonymize``: every tracked face replaced by pSp's segmentation-to-face rendering of its
    parsing map (``encoder`` ``"psp-seg"``) with the fine styles 8-17 of one injected style per track
    (``mix_rows``), so expression and layout stay and identity goes."""

    encoder: str = "psp-seg"
    mix_rows: str | None = "8-17"
    gate: str = "off"


#: Command name -> its options class.
TASK_OPTIONS: dict[str, type[EditOptions]] = {"restore": RestoreOptions, "toonify": ToonifyOptions,
                                              "anonymize": AnonymizeOptions}


def write_simulated_input(src: str | os.PathLike, dst: str | os.PathLike, factor: int, *, start: float | None = None,
                          end: float | None = None, crf: int = 18, codec: str = "libx264") -> Path:
    """Write the low-resolution input ``vidinv restore --simulate-factor`` gives the model: every frame of
    ``src`` in ``[start, end)`` degraded by
    :func:`vidinv.models.sr_degradation.simulate_low_resolution_frame` (same size, timestamps and audio as
    the input), so that a report can show it and up-scale it for the bicubic baseline.

    Returns:
        ``Path(dst)``.

    Raises:
        What :class:`vidinv.io.mux.EditedVideoWriter` and the degradation raise.
    """
    with EditedVideoWriter(src, dst, codec=codec, crf=crf, start=start, end=end) as writer:
        with VideoReader(src, start=writer.frames.start, stop=writer.frames.stop, accurate_color=True) as video:
            for fr in video:
                writer.write(fr, simulate_low_resolution_frame(fr.image, factor))
    return Path(dst)
