"""Identity-consistency and quality reports of face videos (``vidinv report``).

:func:`run_report` analyses one or more source videos and optionally edited/reconstructed outputs of
them, and writes into an output folder:

* ``report.json`` — every number, per frame and aggregated, with the identifiers of the networks that
  produced them; it validates against ``report.schema.json`` (:mod:`vidinv.report.schema`);
* PNG plots (:mod:`vidinv.report.plots`): per-frame identity similarity and identity-consistency
  curves, face-crop / background quality and flicker, and a box plot of identity consistency across
  videos (Feature-Style Fig. 9 layout) when there are several videos;
* ``report.html`` — a self-contained page showing the tables and the plots (:mod:`vidinv.report.html`).

:func:`run_report` lives in :mod:`vidinv.report.run`; the per-frame work is in :mod:`vidinv.report.compute`,
the document in :mod:`vidinv.report.document`, its plots in :mod:`vidinv.report.plots`, the printed summary in
:mod:`vidinv.report.summary`, the metric definitions in :mod:`vidinv.metrics`.

TL-ID / TG-ID are Stitch it in Time's mean of per-pair ratios (:mod:`vidinv.metrics.temporal`); the
document names the identity network and crops behind them. dlib's CNN detector fallback is off unless
``cnn_fallback=True`` (``--cnn-fallback``); each video's ``detection`` entry counts the frames it ran on.

With ``reference=HR.mp4`` (``vidinv report LR.mp4 RESTORED.mp4 --reference HR.mp4``) the document gains a
``restoration`` section: PSNR / SSIM / LPIPS / identity similarity of the restored faces, and of the bicubic
up-scaled source (baseline), against the reference's FFHQ-aligned faces
(:func:`vidinv.report.restoration.restoration_metrics`, pSp's super-resolution protocol).

``vidinv edit --report DIR`` should call ``run_report([source], [output], DIR)`` after writing its output
(with ``options=ReportOptions(source_start=first_frame, source_stop=stop_frame)`` when the output was cut to
a window of the source).
"""
from vidinv.report.compute import PairAnalysis, ReportOptions, VideoAnalysis
from vidinv.report.document import SCHEMA_ID
from vidinv.report.inputs import InputError
from vidinv.report.plots import output_group, plot_document
from vidinv.report.restoration import RestorationInputError, RestorationResult, restoration_metrics
from vidinv.report.run import run_report, write_outputs
from vidinv.report.schema import SchemaError, validate
from vidinv.report.summary import summary_lines, timing_line

__all__ = ["run_report", "ReportOptions", "VideoAnalysis", "PairAnalysis", "InputError", "SchemaError",
           "SCHEMA_ID", "validate", "write_outputs", "output_group", "plot_document", "summary_lines", "timing_line",
           "restoration_metrics", "RestorationResult", "RestorationInputError"]
