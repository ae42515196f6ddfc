"""The browser preview (``vidinv ui``): open a video, see its tracked faces, preview an edit on a few frames
from a cached inversion, render the whole clip with its report.

* :mod:`~vidinv.ui.session`: what the page does, without a browser (:class:`PreviewSession`: analyse,
  preview, render; :class:`UiSettings`). Needs no Gradio.
* :mod:`~vidinv.ui.app`: the Gradio page and its local server (:func:`vidinv.ui.app.launch`); needs the
  ``ui`` extra (``pip install 'vidinv[ui]'``).

Layer: above :mod:`vidinv.pipeline` and :mod:`vidinv.report`, below :mod:`vidinv.cli` (ARCHITECTURE.md).
"""
from vidinv.ui.session import Analysis, PreviewFrame, PreviewSession, RenderResult, UiSettings

__all__ = ["Analysis", "PreviewFrame", "PreviewSession", "RenderResult", "UiSettings"]
