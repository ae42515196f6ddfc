"""The streaming video pipeline behind ``vidinv edit`` and ``vidinv invert``.

Modules:

* :mod:`~vidinv.pipeline.stages`: threads joined by bounded queues (:class:`StagePipeline`), with
  cancellation and per-stage timings; memory does not grow with the video's length.
* :mod:`~vidinv.pipeline.runtime`: device / precision (:class:`Runtime`), the weight files a job
  needs (:func:`required_weights`, :func:`resolve_weights`) and the loaded networks
  (:class:`ModelBundle`: the :class:`~vidinv.inverters.Inverter` and the face parser; :func:`load_bundle`).
* :mod:`~vidinv.pipeline.job`: what every job shares: the common options (:class:`JobOptions`) and the
  set-up (weights -> runtime + networks -> input video -> front-end + encode stages -> streaming;
  :class:`Job`, :func:`prepare_job`).
* :mod:`~vidinv.pipeline.faces`: the per-face stages (front-end, batched encoding, latent smoothing,
  edit + generation, compositing).
* :mod:`~vidinv.pipeline.edit`: :func:`run_edit` (``vidinv edit``, also ``--from-inversion``).
* :mod:`~vidinv.pipeline.invert`: :func:`run_invert` (``vidinv invert``).
"""
from vidinv.pipeline.edit import EditOptions, EditResult, plan_edit, run_edit
from vidinv.pipeline.invert import InvertOptions, InvertResult, run_invert
from vidinv.pipeline.job import Job, JobOptions, load_job, prepare_job, resolve_job_weights
from vidinv.pipeline.runtime import ModelBundle, Runtime, load_bundle, required_weights, resolve_weights
from vidinv.pipeline.stages import Cancelled, StagePipeline, StageStats

__all__ = ["EditOptions", "EditResult", "plan_edit", "run_edit", "InvertOptions", "InvertResult", "run_invert",
           "Job", "JobOptions", "load_job", "prepare_job", "resolve_job_weights",
           "ModelBundle", "Runtime", "load_bundle", "required_weights", "resolve_weights", "Cancelled",
           "StagePipeline", "StageStats"]
