"""The browser preview's page (Gradio Blocks) and its server: ``vidinv ui``.

The page, top to bottom: open (upload) a video -> it is analysed at once (tracking + inversion, with a
progress bar; :meth:`vidinv.ui.session.PreviewSession.analyse`) and one frame is shown with every tracked
face's crop outline and ``#id`` -> pick a direction (``SOURCE:NAME`` of
:data:`vidinv.edit.attributes.ATTRIBUTES`), its strength and the number of preview frames with sliders, the
blend mask and the confidence gate -> **Preview**: those frames, original | edited, from the cached
inversion (seconds) -> **Render**: the whole clip with a progress bar, then the edited video, and its report
(``report.zip``, ``report.html``) for download.

Local only (:func:`launch`): the server binds ``127.0.0.1`` unless told otherwise, never opens a share link
(``share=False``), sends no analytics (``GRADIO_ANALYTICS_ENABLED=False`` is set when this module is
imported, and ``analytics_enabled=False``; that also turns off Gradio's version check), runs without
server-side rendering, PWA or MCP endpoints. What the browser loads: the page, Gradio's own JavaScript,
CSS and fonts (the default theme's fonts are ``LocalFont`` files served by the same server), and the
media this app returns; no CDN, web font service or other host (``tests/test_ui.py`` checks every request
a real Chromium makes).
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

import socket
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from vidinv.edit.attributes import DEMONSTRATED_MAX_STRENGTH
from vidinv.ui.session import MASKS, PreviewSession, UiSettings, direction_choices, gate_options

__all__ = ["build_app", "launch", "free_port", "DEFAULT_DIRECTION", "STRENGTH_RANGE"]

#: The direction selected when the page opens.
DEFAULT_DIRECTION = "fs:smile"
#: The strength slider's range (3x the largest strength the directions' authors demonstrated, rounded).
STRENGTH_RANGE = (-round(3 * DEMONSTRATED_MAX_STRENGTH), round(3 * DEMONSTRATED_MAX_STRENGTH))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _progress(bar: gr.Progress, desc: str):
    def update(done: int, total: int | None) -> None:
        bar((done, total), desc=desc, unit="frames")
    return update


def _error(exc: Exception) -> gr.Error:
    """An exception as the page's one-line error (the text ``vidinv: error:`` would follow on the command line)."""
    return gr.Error(str(exc) or type(exc).__name__)


def build_app(session: PreviewSession) -> gr.Blocks:
    """The page (see the module doc) wired to ``session``.

    Element ids (for tests and styling): ``video-in`` (upload), ``status``, ``tracks`` (the overview image),
    ``direction``, ``strength``, ``frames``, ``mask``, ``gate``, ``report``, ``preview-btn``, ``preview``
    (gallery), ``render-btn``, ``out-video``, ``downloads``.
    """
    has_gate = bool(gate_options(True))

    def analyse(path, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a progress bar
        if not path:
            return None, None, "Open a video to start."
        try:
            a = session.analyse(path, progress=_progress(progress, "tracking and inverting"))
        except Exception as exc:
            raise _error(exc) from exc
        took = f" Inverted in {a.invert_s:.1f} s." if a.invert_s else " (cached inversion)"
        return a.key, a.overview, f"{a.summary()}; frame {a.overview_frame} shown.{took}"

    def preview(key, direction, strength, frames, mask, gate):
        if not key:
            raise gr.Error("open a video first")
        try:
            a = session.get(key)
            got = session.preview(a, direction, float(strength), frames=int(frames), mask=mask, gate=bool(gate))
        except Exception as exc:
            raise _error(exc) from exc
        if not got:
            return [], "No face was tracked in this video: nothing to preview."
        items = [(f.side_by_side(), f"frame {f.index} ({f.time:.2f} s): original | {direction} x{float(strength):g}")
                 for f in got]
        return items, f"Preview of {len(got)} frame(s): {direction} x{float(strength):g}."

    def render(key, direction, strength, mask, gate, report, progress=gr.Progress()):  # noqa: B008
        if not key:
            raise gr.Error("open a video first")
        try:
            a = session.get(key)
            r = session.render(a, direction, float(strength), mask=mask, gate=bool(gate), report=bool(report),
                               progress=_progress(progress, "rendering"))
        except Exception as exc:
            raise _error(exc) from exc
        note = f"{r.video.name}: {r.frames} frames, {r.frames_edited} with a face, {r.edit}; {r.wall_s:.1f} s"
        if r.report_dir is not None:
            note += " (with its report)"
        return str(r.video), [str(p) for p in r.files], note + "."

    with gr.Blocks(title="vidinv preview", analytics_enabled=False) as app:
        gr.Markdown("## vidinv: preview a face edit\nOpen a video; its faces are tracked and inverted once. "
                    "Then preview the edit on a few frames and render the whole clip.")
        key = gr.State(None)
        with gr.Row():
            with gr.Column():
                video_in = gr.File(label="Video", file_types=["video"], type="filepath", elem_id="video-in")
                status = gr.Markdown("Open a video to start.", elem_id="status")
            tracks = gr.Image(label="Tracked faces (crop outline and track id)", type="numpy", interactive=False,
                              elem_id="tracks")
        with gr.Row():
            direction = gr.Dropdown(direction_choices(), value=DEFAULT_DIRECTION, label="Attribute / direction",
                                    elem_id="direction")
            strength = gr.Slider(*STRENGTH_RANGE, value=1.0, step=0.1, label="Strength", elem_id="strength")
            frames = gr.Slider(1, 8, value=3, step=1, label="Preview frames", elem_id="frames")
        with gr.Row():
            mask = gr.Dropdown(list(MASKS), value="landmarks", label="Blend mask", elem_id="mask")
            gate = gr.Checkbox(value=bool(session.settings.gate), label="gate", elem_id="gate", interactive=has_gate,
                               info="Fade the edit out where the face turns away or the inversion fails"
                                    + ("" if has_gate else " (not in this version of vidinv: no effect)"))
            report = gr.Checkbox(value=True, label="report", elem_id="report",
                                 info="Write the identity/quality report with the render")
        with gr.Row():
            preview_btn = gr.Button("Preview", variant="primary", elem_id="preview-btn")
            render_btn = gr.Button("Render whole clip", elem_id="render-btn")
        gallery = gr.Gallery(label="Preview: original | edited", columns=1, format="png", elem_id="preview")
        with gr.Row():
            out_video = gr.Video(label="Edited video", interactive=False, elem_id="out-video")
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

        video_in.upload(analyse, [video_in], [key, tracks, status])
        preview_btn.click(preview, [key, direction, strength, frames, mask, gate], [gallery, status])
        render_btn.click(render, [key, direction, strength, mask, gate, report], [out_video, downloads, status])
    return app


def launch(settings: UiSettings | None = None, *, port: int | None = None, host: str = "127.0.0.1",
           block: bool = True, quiet: bool = False) -> tuple[gr.Blocks, str, PreviewSession]:
    """Start the server of the page (see the module doc for what is and is not loaded or sent).

    Args:
        settings: the session's settings (weights, device, cache folder).
        port: TCP port (None: a free one).
        host: the address to bind (``127.0.0.1``: this machine only).
        block: serve until interrupted (the command line: the server is closed and the KeyboardInterrupt
            propagates); False returns at once with the server running in a thread (tests; stop it with
            ``app.close()``).
        quiet: do not print Gradio's start-up lines.

    Returns:
        ``(app, url, session)``.

    Raises:
        OSError: the port is taken.
    """
    session = PreviewSession(settings)
    app = build_app(session)
    port = free_port(host) if port is None else int(port)
    kwargs: dict[str, Any] = dict(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                                  quiet=quiet, show_error=True, ssr_mode=False, pwa=False, mcp_server=False,
                                  allowed_paths=[str(Path(session.cache_dir))], inbrowser=False)
    _, url, _ = app.queue(default_concurrency_limit=1).launch(**kwargs)
    if block:
        try:  # serve until Ctrl-C / SIGTERM (KeyboardInterrupt reaches the caller: `vidinv: interrupted`, 130)
            threading.Event().wait()
        finally:
            app.close()
    return app, url, session
