"""vidinv's I/O in one place: everything that reads or writes files lives in this package.

* :mod:`vidinv.io.video` — decoding (PyAV): :class:`~vidinv.io.video.VideoReader`, probing, frames as RGB
  uint8 with their exact timestamps.
* :mod:`vidinv.io.mux` — the output writer: input timestamps, rotation, colour tags, audio copied packet for
  packet (:class:`~vidinv.io.mux.EditedVideoWriter`, :func:`~vidinv.io.mux.passthrough`).
* :mod:`vidinv.io.inversion` — the versioned per-frame inversion export (w, F, quads, landmarks).
* :mod:`vidinv.io.checkpoints` — reading checkpoints (``torch.load(weights_only=True)``), strict loading,
  the vidinv record of files written by ``training/``.
* :mod:`vidinv.io.outputs` — input and destination checks before any work, :func:`~vidinv.io.outputs.atomic_write`
  / :func:`~vidinv.io.outputs.atomic_path` / :func:`~vidinv.io.outputs.atomic_save` (the one
  temp-file-then-rename helper, ``torch.save`` included), :func:`~vidinv.io.outputs.sha256_file` (the one file
  hash) and :func:`~vidinv.io.outputs.json_safe` (values made strict-JSON-ready).

Submodules are imported on use (``import vidinv.io`` stays light: no torch, no PyAV).
"""
