"""What every video job shares: its common options and its set-up, in one code path.

``vidinv edit``, ``vidinv invert`` (and the task commands to come) all run the same sequence::

    JobOptions -> resolve_job_weights (every file, one MissingWeightsError) -> input_video (the input exists)
      -> load_job (Runtime + the networks: a Job) -> Job.open_video -> Job.face_stages (front-end + encode)
      + the job's own stages -> Job.stream (threaded stages, frames in order)

:func:`prepare_job` runs the first three steps for a job that has nothing to check between them;
``vidinv edit`` checks its edit and export in between (:func:`vidinv.pipeline.edit.plan_edit`), so it
calls the steps itself.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from pathlib import Path
from typing import Protocol

from vidinv.device import Runtime
from vidinv.face.frontend import FaceFrontEnd
from vidinv.face.tracking import Tracker
from vidinv.inverters import Inverter
from vidinv.io.images import ImageReader, is_image_path
from vidinv.io.video import VideoReader
from vidinv.pipeline.faces import Item, encode_stage, front_end_stage
from vidinv.pipeline.runtime import ModelBundle, load_bundle, required_weights, resolve_weights
from vidinv.pipeline.stages import StagePipeline

__all__ = ["JobOptions", "Job", "BundleLoader", "resolve_job_weights", "input_video", "load_job", "prepare_job"]


class BundleLoader(Protocol):
    """What loads a job's networks: :func:`vidinv.pipeline.runtime.load_bundle` (the default), or a cache with
    the same signature that hands back networks already loaded for the same files, runtime and mask
    (``vidinv batch``: :class:`vidinv.batch.worker.BundleCache`)."""

    def __call__(self, paths: dict[str, Path], encoder: str = "fs", runtime: Runtime | None = None, *,
                 need_encoder: bool = True, mask: str = "auto",
                 encoder_checkpoint: str | os.PathLike | None = None) -> ModelBundle: ...


@dataclass
class JobOptions:
    """The settings every video job has (the options common to ``vidinv edit`` and ``vidinv invert``).

    ``src`` and ``dst`` may be given by position; every other field by name.

    Attributes:
        src, dst: input video and output path (file or export folder, per job).
        encoder: an encoder kind of the inverter registry (:data:`vidinv.inverters.INVERTERS`: ``"fs"``,
            ``"psp"``).
        face: ``"largest"`` (one track) or ``"all"``.
        batch_size: faces per encoder / generator batch (>= 1).
        device, precision: see :class:`vidinv.device.Runtime`.
        start, end: window in seconds (None: from the start / to the end).
        weights_dir, fetch: where to find / whether to download weight files.
        allow_hash_mismatch: accept a ``weights_dir`` file whose sha256 differs from the registry's.
        encoder_checkpoint: an encoder trained with vidinv's ``training/`` (its own file name, with the
            vidinv record), used instead of the official encoder of ``encoder``.
        queue_size: items between two stages.
        detector: landmark detector (``"dlib"`` or ``"fan"``).
        detect_upscale: dlib only: enlarge each frame by this integer factor before detection and landmarks
            (coordinates come back in frame pixels), or ``"auto"`` (small frames up to about 960 px on the
            long side; :func:`vidinv.face.detect.upscale_factor`); 1 = as is. For small, blurry faces
            (``vidinv restore`` uses ``"auto"``).
        backend: the generator's back-end, ``"eager"``, ``"onnx"``, ``"openvino"`` or ``"auto"``
            (:func:`vidinv.models.export.attach_backend`; applied by :meth:`Job.attach_backend`).
    """

    src: str | os.PathLike | None
    dst: str | os.PathLike
    _: KW_ONLY
    encoder: str = "fs"
    face: str = "largest"
    batch_size: int = 4
    device: str = "auto"
    precision: str = "fp32"
    start: float | None = None
    end: float | None = None
    weights_dir: str | os.PathLike | None = None
    fetch: bool = False
    allow_hash_mismatch: bool = False
    encoder_checkpoint: str | os.PathLike | None = None
    queue_size: int = 4
    detector: str = "dlib"
    detect_upscale: int | str = 1
    backend: str = "eager"


def resolve_job_weights(opts: JobOptions, *, encoder: str | None = None, need_encoder: bool = True,
                        extra: Sequence[str] = (), mask: str = "landmarks", quiet: bool = False) -> dict[str, Path]:
    """Resolve every weight file of a job in one go (:func:`vidinv.pipeline.runtime.resolve_weights`).

    Args:
        opts: the job's options (encoder kind, encoder checkpoint, weights folder, fetch, hash policy).
        encoder: the encoder kind when it is not ``opts.encoder`` (an export's).
        need_encoder: False when no encoder runs (``--from-inversion``; ``opts.encoder_checkpoint`` is then
            ignored).
        extra: more registry names (e.g. direction files), resolved with the model files.
        mask: as :func:`~vidinv.pipeline.runtime.resolve_weights` (``"landmarks"``: no face parser).

    Returns:
        ``{name: path}``.

    Raises:
        vidinv.weights.MissingWeightsError, vidinv.weights.WeightHashMismatchError, FileNotFoundError,
        ValueError: as :func:`~vidinv.pipeline.runtime.resolve_weights`; ValueError for an unknown kind.
    """
    own = opts.encoder_checkpoint if need_encoder else None
    names = required_weights(encoder or opts.encoder, need_encoder=need_encoder, encoder_checkpoint=own) + list(extra)
    return resolve_weights(names, opts.weights_dir, opts.fetch, mask=mask, quiet=quiet, encoder_checkpoint=own,
                           allow_hash_mismatch=opts.allow_hash_mismatch or None)


def input_video(src: str | os.PathLike) -> Path:
    """``src`` as a Path once it is known to be a file.

    Raises:
        FileNotFoundError: it is not.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"input video {src} does not exist")
    return src


@dataclass
class Job:
    """A job's loaded set-up: options, weight files, input video, the networks (see the module doc).

    Attributes:
        opts: the :class:`JobOptions` (or a subclass).
        paths: ``{registry name: path}`` of the resolved weight files.
        src: the input video (a file).
        bundle: the loaded networks (:class:`~vidinv.pipeline.runtime.ModelBundle`).
        stage_s: busy seconds per stage of the last :meth:`stream`, once it ended.
    """

    opts: JobOptions
    paths: dict[str, Path]
    src: Path
    bundle: ModelBundle
    stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def inverter(self) -> Inverter:
        """The job's :class:`~vidinv.inverters.Inverter`."""
        return self.bundle.inverter

    @property
    def runtime(self) -> Runtime:
        """The job's :class:`~vidinv.device.Runtime`."""
        return self.bundle.runtime

    def attach_backend(self, frames: int | None) -> str:
        """Give the generator the back-end of ``opts.backend`` for a clip of ``frames`` frames
        (:func:`vidinv.models.export.attach_backend`); returns the one chosen (``"eager"``, ``"onnx"`` or
        ``"openvino"``).

        Raises:
            vidinv.models.export.BackendUnavailable: a compiled back-end without its packages or not on a float32
                CPU generator.
        """
        # here, not at the top: ONNX and its exporter load only for a job that asks for a back-end
        from vidinv.models.export import attach_backend
        from vidinv.weights.cache import vidinv_home

        feature_index = getattr(self.bundle.inverter, "feature_index", None)
        return attach_backend(self.bundle.G, self.opts.backend, cache_dir=vidinv_home() / "onnx", frames=frames,
                              **({"k": feature_index} if feature_index else {}))

    def open_video(self, frames: range) -> VideoReader | ImageReader:
        """Open the input for the frames ``frames`` (indices), decoded with accurate YUV->RGB so that pixels
        passed through unchanged survive decode + re-encode without drift. A still image
        (:func:`vidinv.io.images.is_image_path`) is opened as a one-frame :class:`~vidinv.io.images.ImageReader`
        (``frames`` is then the writer's ``range(0, 1)``)."""
        if is_image_path(self.src):
            return ImageReader(self.src, start=frames.start, stop=frames.stop)
        return VideoReader(self.src, start=frames.start, stop=frames.stop, accurate_color=True)

    def for_input(self, src: str | os.PathLike) -> Job:
        """This job (options, weight files, the loaded networks: nothing is reloaded) for another input file,
        e.g. the next image of a folder (:func:`vidinv.pipeline.images.run_folder`)."""
        return replace(self, src=Path(src), stage_s={})

    def face_stages(self, *, keep_crops: bool = False, timings: dict | None = None,
                    skip: Callable[[Item], bool] | None = None) -> list[tuple[str, Callable]]:
        """The front-end and encode stages: ``[("faces", ...), ("encode", ...)]`` with the options' detector,
        face mode and batch size (see :func:`~vidinv.pipeline.faces.front_end_stage`,
        :func:`~vidinv.pipeline.faces.encode_stage` for ``keep_crops``, ``timings``, ``skip``)."""
        up = self.opts.detect_upscale
        fe = FaceFrontEnd(self.opts.detector, Tracker(mode=self.opts.face),
                          detector_options=None if up in (1, "1") else {"upscale": up})
        return [("faces", front_end_stage(fe)),
                ("encode", encode_stage(self.bundle, self.opts.batch_size, keep_crops=keep_crops, timings=timings,
                                        skip=skip))]

    def stream(self, video: VideoReader | ImageReader, stages: Sequence[tuple[str, Callable]], *,
               total: int | None = None, progress: Callable[[int, int | None], None] | None = None) -> Iterator[Item]:
        """Run ``stages`` on the decoded ``video`` (:class:`~vidinv.pipeline.stages.StagePipeline`, at most
        ``opts.queue_size`` items between two stages) and yield the last stage's items in frame order;
        ``progress(frames_done, total)`` is called after the caller handled each item. :attr:`stage_s`
        holds the stages' busy seconds once the stream ended (normally or not).

        Raises:
            The first error of a stage (after every stage stopped).
        """
        pipe = StagePipeline(video, stages, maxsize=self.opts.queue_size)
        n = 0
        try:
            for it in pipe:
                yield it
                n += 1
                if progress is not None:
                    progress(n, total)
        finally:
            self.stage_s = {s.name: s.busy_s for s in pipe.stats}


def load_job(opts: JobOptions, paths: dict[str, Path], src: Path, *, encoder: str | None = None,
             need_encoder: bool = True, mask: str = "landmarks", loader: BundleLoader | None = None) -> Job:
    """Build the runtime (``opts.device``, ``opts.precision``) and load the networks of a job.

    Args:
        opts, paths, src: the options, the resolved weight files, the checked input.
        encoder, need_encoder: as :func:`resolve_job_weights`.
        mask: as :func:`~vidinv.pipeline.runtime.load_bundle` (``"landmarks"``: no face parser).
        loader: what loads the networks (default :func:`~vidinv.pipeline.runtime.load_bundle`; a
            :class:`BundleLoader` cache reuses networks across jobs).

    Raises:
        ValueError: bad device / precision; an encoder that does not fit the generator.
        vidinv.io.checkpoints.CheckpointError: a file has the wrong layout.
    """
    runtime = Runtime(opts.device, opts.precision)
    bundle = (loader or load_bundle)(paths, encoder or opts.encoder, runtime, need_encoder=need_encoder, mask=mask,
                                     encoder_checkpoint=opts.encoder_checkpoint if need_encoder else None)
    return Job(opts, paths, src, bundle)


def prepare_job(opts: JobOptions, *, extra_weights: Sequence[str] = (), mask: str = "landmarks",
                quiet: bool = False, loader: BundleLoader | None = None) -> Job:
    """Resolve the weights, check the input, load the networks (with ``loader``, as :func:`load_job`): a
    :class:`Job` ready to open its video.

    Raises:
        Everything :func:`resolve_job_weights`, :func:`input_video` and :func:`load_job` raise, in that order;
        ValueError: no ``opts.src``.
    """
    paths = resolve_job_weights(opts, extra=extra_weights, mask=mask, quiet=quiet)
    if opts.src is None:
        raise ValueError("no input video given")
    src = input_video(opts.src)
    return load_job(opts, paths, src, mask=mask, loader=loader)
