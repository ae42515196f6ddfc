"""The streaming video pipeline behind ``vidinv edit`` and ``vidinv invert``.

Modules:

* :mod:`~vidinv.pipeline.stages`: threads joined by bounded queues (:class:`StagePipeline`), with
  cancellation and per-stage timings; memory does not grow with the video's length.
* :mod:`~vidinv.pipeline.runtime`: device / precision (:class:`Runtime`), the weight files a job
  needs (:func:`required_weights`, :func:`resolve_weights`) and the loaded networks
  (:class:`ModelBundle`, :func:`load_bundle`).
* :mod:`~vidinv.pipeline.faces`: the per-face stages (front-end, batched encoding, latent smoothing,
  edit + generation, compositing).
* :mod:`~vidinv.pipeline.edit`: :func:`run_edit` (``vidinv edit``, also ``--from-inversion``).
* :mod:`~vidinv.pipeline.invert`: :func:`run_invert` (``vidinv invert``).
"""
from vidinv.pipeline.edit import EditOptions, EditResult, plan_edit, run_edit
from vidinv.pipeline.invert import InvertOptions, InvertResult, run_invert
from vidinv.pipeline.runtime import ModelBundle, Runtime, load_bundle, required_weights, resolve_weights
from vidinv.pipeline.stages import Cancelled, StagePipeline, StageStats

__all__ = ["EditOptions", "EditResult", "plan_edit", "run_edit", "InvertOptions", "InvertResult", "run_invert",
           "ModelBundle", "Runtime", "load_bundle", "required_weights", "resolve_weights", "Cancelled",
           "StagePipeline", "StageStats"]
