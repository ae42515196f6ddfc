"""``vidinv ui``: the browser preview (:mod:`vidinv.ui`), served on this machine."""
from __future__ import annotations

import click

from vidinv.cli.common import fail, install_signal_handlers
from vidinv.cli.options import job_options
from vidinv.ui.session import UiSettings

#: The :class:`~vidinv.ui.session.UiSettings` fields offered as options (the page picks the edit itself).
UI_FIELDS = ("encoder", "face", "batch_size", "device", "precision", "weights_dir")
#: The port the server listens on unless ``--port`` says otherwise (Gradio's usual one).
DEFAULT_PORT = 7860

_HELP = """Open the browser preview: load a video, see its tracked faces, preview an edit on a few frames in
seconds, then render the whole clip with its report.

The page is served on http://127.0.0.1:PORT (this machine only; no share link, no analytics). The first
upload of a video tracks and inverts it once (the `vidinv invert` export, cached under --cache-dir); every
preview and the render reuse that inversion. Needs the `ui` extra: pip install 'vidinv[ui]'.

Example: vidinv ui --port 7860   (then open http://127.0.0.1:7860 in a browser)
"""


@click.command("ui", context_settings={"max_content_width": 110}, help=_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port of the page.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but 127.0.0.1 / localhost lets other machines open the page.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for uploads, inversions and renders (default: a new temporary folder).")
@job_options(UiSettings, only=UI_FIELDS)
def ui_cmd(port, host, cache_dir, **fields):
    install_signal_handlers()
    try:
        # on use: Gradio is an optional dependency (the `ui` extra), imported only by this command
        from vidinv.ui.app import launch
    except ImportError as exc:
        fail(ImportError(f"the browser preview needs Gradio ({exc}): pip install 'vidinv[ui]'"))
    click.echo(f"vidinv ui: serving on http://{host}:{port} (Ctrl-C to stop)", err=True)
    launch(UiSettings(cache_dir=cache_dir, **fields), port=port, host=host, block=True, quiet=True)
