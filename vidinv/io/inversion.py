"""The inversion export of ``vidinv invert``: a versioned, streamable folder of per-frame codes.

Specification (format ``vidinv-inversion``, version 1)
=====================================================

An export is a folder (name it ``NAME.vinv``)::

    NAME.vinv/
      manifest.json                  header + index of the completed chunks (rewritten atomically)
      chunks/chunk_000000.npz        records 0 .. n0-1
      chunks/chunk_000001.npz        the next records, ...
      images/crops/f00000012_t0.png  optional: aligned crop of frame 12, track 0 (RGB, 8-bit)
      images/recon/f00000012_t0.png  optional: the encoder's reconstruction of that crop

**Record.** One record per face per video frame (a frame with two tracked faces has two records).
Records are stored in the order written, which is non-decreasing ``frame_index``. Fields (shapes
per record; in a chunk every array has a leading dimension n = records in the chunk):

==============  =====================  =========  ===================================================
field           shape                  dtype      meaning
==============  =====================  =========  ===================================================
``w``           (n_latent, style_dim)  float32    W+ latent code, latent_avg included ((18, 512))
``F``           (C, H, W)              float16    feature code at layer K ((512, 16, 16), K = 5);
                                                  absent when the encoder has none (``psp``)
``quad``        (4, 2)                 float64    crop corners in frame pixels (x, y), index
                                                  coordinates, order top-left, bottom-left,
                                                  bottom-right, top-right (:mod:`vidinv.face.align`)
``landmarks``   (L, 2)                 float64    smoothed landmarks (x, y) frame pixels (L = 68)
``track_id``    ()                     int64      face track id (:mod:`vidinv.face.tracking`)
``frame_index`` ()                     int64      0-based frame position in presentation order
``pts``         ()                     int64      presentation timestamp in ``source.time_base``
                                                  units; ``-2**63`` when the container gives none
``time``        ()                     float64    presentation time in seconds (``pts·time_base``);
                                                  NaN when unknown
``has_crop``    ()                     bool       an aligned crop PNG was written for the record
``has_recon``   ()                     bool       a reconstruction PNG was written for the record
==============  =====================  =========  ===================================================

**Chunk.** ``chunks/chunk_<6 digits>.npz``: an uncompressed NumPy ``.npz`` holding the arrays above
(``np.load(..., allow_pickle=False)`` reads it). A chunk holds whole video frames: the writer
closes a chunk once it has ``chunk_size`` records and the next record starts a new frame.

**manifest.json** (UTF-8 JSON object)::

    format        "vidinv-inversion"
    version       1 (integer; readers refuse other versions, naming found and expected)
    complete      false while writing; true once the writer closed normally
    created, updated   ISO 8601 UTC times
    writer        {"vidinv": version}
    source        the video: path, width, height, rotation, fps ("num/den"), time_base ("num/den"),
                  num_frames, duration (s), codec, pix_fmt, has_audio, ... (from vidinv.io.video.probe)
    encoder       {"kind": an encoder kind of the inverter registry (:data:`vidinv.inverters.INVERTERS`:
                   "fs", "psp"), "feature_index": K or null}
    generator     the StyleGAN2 configuration: size, style_dim, n_latent, num_layers, n_mlp,
                  channel_multiplier, max_channels, lr_mlp (what produced w and decodes it)
    models        [{"name", "role", "sha256"}, ...]: every model file that produced the export
    arrays        {field: {"shape": per-record shape, "dtype": numpy dtype name}}
    chunk_size    records per chunk (target)
    chunks        [{"file", "records", "first_record", "frames": [first, last], "tracks": [...],
                   "sha256", "bytes"}, ...] in record order: the completed chunks
    n_records     sum of the chunks' records
    images        {"crops": bool, "recon": bool, "pattern": "images/{kind}/f{frame:08d}_t{track}.png"}
    extra         free-form JSON from the caller (alignment/smoothing settings, command line)
    tuned_generator  optional (``vidinv invert --tune pti``): {"file": "tuned_generator.pt", "sha256",
                  "bytes", "tune": {"mode", "steps", "updates", "faces", "seconds", "seconds_per_update",
                  "first_loss", "last_loss"}}: a generator tuned on this clip's faces (STIT's pivotal tuning,
                  :mod:`vidinv.pipeline.tuning`), written atomically before the manifest names it;
                  ``vidinv edit --from-inversion`` renders with it. Absent in older exports (same version).
    error         present when the writer stopped on an exception: its text

**Writing and crashes.** Every file is written to a temporary name in the same folder, flushed to
disk and renamed over its final name (atomic on POSIX and Windows). The writer writes a chunk
first, then the manifest that lists it, so the manifest only ever lists complete, hashed chunks.
After a crash (power loss, kill) the folder holds: a valid manifest with ``complete: false``, the
chunks it lists (all readable), and possibly one unlisted chunk or temporary ``.*.part*`` file
(:func:`vidinv.io.outputs.atomic_write`), which readers ignore and :meth:`InversionWriter.resume`
deletes. Records not yet in a chunk (at most one chunk's worth) are lost; PNGs of lost records may
remain and are ignored. :class:`InversionReader` refuses an incomplete export unless
``allow_incomplete=True`` (then it reads the completed chunks); :meth:`InversionWriter.resume`
reopens it to continue from :attr:`InversionWriter.next_frame`.

**Reading.** :class:`InversionReader` loads one chunk at a time (memory: one chunk, ~8 MB for 32
records at 1024), checks its sha256 against the manifest and that ``w``, ``F``, ``quad`` and
``landmarks`` are finite (a chunk edited and re-hashed by hand cannot smuggle NaN into a render;
:meth:`InversionReader.check` does it for every chunk up front), and yields :class:`FrameRecord` s; random
access by record index loads only the chunk that holds it.

**Versioning.** ``version`` changes whenever a field, dtype or layout changes meaning; a reader
accepts only the versions in :data:`SUPPORTED_VERSIONS`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vidinv import __version__
from vidinv.io.outputs import TEMP_NAME_RE, atomic_write_bytes, json_safe, sha256_file

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "MANIFEST",
    "NO_PTS",
    "InversionFormatError",
    "InversionVersionError",
    "IncompleteInversionError",
    "ModelFile",
    "FrameRecord",
    "FrameBatch",
    "InversionWriter",
    "InversionReader",
    "model_file",
    "source_info",
    "generator_config",
    "image_path",
]

FORMAT_NAME = "vidinv-inversion"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
#: ``pts`` value meaning "no timestamp".
NO_PTS = np.iinfo(np.int64).min
_IMAGE_PATTERN = "images/{kind}/f{frame:08d}_t{track}.png"
_RECORD_FIELDS = ("w", "F", "quad", "landmarks", "track_id", "frame_index", "pts", "time", "has_crop", "has_recon")


class InversionFormatError(ValueError):
    """The folder is not a readable inversion export (no/corrupted manifest, missing or damaged chunk)."""


class InversionVersionError(InversionFormatError):
    """The export has another format version than this vidinv reads.

    Attributes:
        found: the version in the manifest (None when it has none).
        expected: the supported versions.
    """

    def __init__(self, path: Path, found: Any, expected: Sequence[int] = SUPPORTED_VERSIONS):
        self.found = found
        self.expected = tuple(expected)
        exp = " or ".join(str(v) for v in self.expected)
        if found is None:
            msg = f"{path}: manifest has no format version (expected version {exp} of {FORMAT_NAME})"
        else:
            newer = isinstance(found, int) and found > max(self.expected)
            hint = (" It was written by a newer vidinv: upgrade vidinv." if newer else
                    " Re-run `vidinv invert` to export it again with this vidinv.")
            msg = f"{path}: format version {found!r} found, this vidinv reads version {exp}.{hint}"
        super().__init__(msg)


class IncompleteInversionError(InversionFormatError):
    """The writer did not finish (crash, kill, or an error); the completed chunks are readable.

    Attributes:
        n_records: records readable from the completed chunks.
    """

    def __init__(self, path: Path, n_records: int, error: str | None):
        self.n_records = n_records
        why = f" It stopped on an error: {error}." if error else " The writer crashed or was stopped."
        super().__init__(f"{path}: the export is incomplete (complete: false).{why} {n_records} record(s) in "
                         "completed chunks are readable with allow_incomplete=True; `InversionWriter.resume` "
                         "continues it.")


# ------------------------------------------------------------------------------------------ metadata

@dataclass(frozen=True)
class ModelFile:
    """A model file that produced an export: registry/file name, role and sha256 (hex)."""

    name: str
    role: str
    sha256: str

    def to_json(self) -> dict:
        """``{"name", "role", "sha256"}`` as stored in the manifest."""
        return {"name": self.name, "role": self.role, "sha256": self.sha256}


def model_file(path: str | os.PathLike, role: str, name: str | None = None, sha256: str | None = None) -> ModelFile:
    """Describe a model file: its name (default: the file name), role (``"encoder"``, ``"generator"``,
    ``"landmarks"``, ...) and sha256 (computed when not given; ~1 s per 500 MB)."""
    p = Path(path)
    return ModelFile(name=name or p.name, role=role, sha256=(sha256 or sha256_file(p)).lower())


def source_info(info: Any) -> dict:
    """The ``source`` header from a :class:`vidinv.io.video.VideoInfo` (or any dataclass / mapping with its
    fields): JSON-safe, Fractions as ``"num/den"`` strings (``fps``, ``time_base``)."""
    if info is None:
        return {}
    if dataclasses.is_dataclass(info) and not isinstance(info, type):
        d = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    elif isinstance(info, Mapping):
        d = dict(info)
    else:
        raise TypeError(f"source info must be a VideoInfo, a dataclass or a mapping, got {type(info).__name__}")
    return json_safe(d, infinity="null")


def generator_config(G: Any) -> dict:
    """The ``generator`` header from a :class:`vidinv.models.stylegan2.Generator` (or a mapping):
    size, style_dim, n_latent, num_layers, n_mlp, channel_multiplier, max_channels, lr_mlp."""
    if isinstance(G, Mapping):
        return json_safe(dict(G), infinity="null")
    keys = ("size", "style_dim", "n_latent", "num_layers", "n_mlp", "channel_multiplier", "max_channels", "lr_mlp")
    return {k: json_safe(getattr(G, k), infinity="null") for k in keys if hasattr(G, k)}


def image_path(root: str | os.PathLike, kind: str, frame_index: int, track_id: int) -> Path:
    """Path of a record's PNG: ``root/images/<kind>/f<frame:08d>_t<track>.png`` (kind ``crops`` or ``recon``)."""
    return Path(root) / _IMAGE_PATTERN.format(kind=kind, frame=int(frame_index), track=int(track_id))


def _differences(key: str, have: Any, want: Any) -> list[str]:
    """``"key.sub: X in the export, Y now"`` for every leaf where two JSON values differ."""
    if isinstance(have, dict) and isinstance(want, dict):
        return [d for k in sorted(set(have) | set(want), key=str)
                for d in _differences(f"{key}.{k}", have.get(k), want.get(k))]
    if have != want:
        return [f"{key}: {json.dumps(have)} in the export, {json.dumps(want)} now"]
    return []


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _to_uint8_image(img: Any, what: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a uint8 (H, W, 3) array, or a float (3, H, W) / (1, 3, H, W) array or
    tensor in [-1, 1] (generator output)."""
    if hasattr(img, "detach"):
        img = img.detach().float().cpu().numpy()
    a = np.asarray(img)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 3 and a.shape[0] == 3:
            return np.ascontiguousarray((np.clip(a, -1, 1) * 127.5 + 127.5).round().astype(np.uint8).transpose(1, 2, 0))
    raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB image or a (3, H, W) float image in [-1, 1], "
                     f"got {a.dtype} {a.shape}")


# -------------------------------------------------------------------------------------------- records

@dataclass
class FrameRecord:
    """One face in one frame, as read back.

    Attributes:
        index: record index in the export (0-based).
        frame_index, track_id: frame (presentation order) and face track.
        pts: timestamp in ``source.time_base`` units, or None; time: seconds, or None.
        w: (n_latent, style_dim) float32 W+ code; F: (C, H, W) float16 feature code or None.
        quad: (4, 2) float64; landmarks: (L, 2) float64 (frame pixels, x then y).
        crop_path, recon_path: the record's PNGs, or None when not written.
    """

    index: int
    frame_index: int
    track_id: int
    pts: int | None
    time: float | None
    w: np.ndarray
    F: np.ndarray | None
    quad: np.ndarray
    landmarks: np.ndarray
    crop_path: Path | None = None
    recon_path: Path | None = None


@dataclass
class FrameBatch:
    """The records of one chunk as stacked arrays (fields as in the module doc, leading dim n).

    ``first_record`` is the export-wide index of row 0.
    """

    first_record: int
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.arrays["frame_index"].shape[0])

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None


# --------------------------------------------------------------------------------------------- writer

class InversionWriter:
    """Write an inversion export incrementally (see the module doc for the layout).

    Args:
        path: the export folder (created; must not hold an export unless ``overwrite``).
        encoder: the encoder kind, a name of the inverter registry (:data:`vidinv.inverters.INVERTERS`,
            e.g. ``"fs"``, ``"psp"``), stored as data: this I/O module does not know the kinds; the pipeline
            passes what its inverter produces (``feature_shape``, ``feature_index``) and checks the kind
            against the registry when it reads an export back.
        generator: generator config (a Generator or a mapping, see :func:`generator_config`).
        models: :class:`ModelFile` s (or mappings with name/role/sha256) of every model used.
        source: the video's :class:`vidinv.io.video.VideoInfo` (or a mapping); None when unknown.
        feature_shape: (C, H, W) of the feature code F the records carry (``(512, 16, 16)`` for the
            Feature-Style inverter: :attr:`vidinv.inverters.Inverter.feature_shape`); None: no F (pSp).
        feature_index: layer K of F (:attr:`vidinv.inverters.Inverter.feature_index`, 5); required with
            ``feature_shape``.
        n_landmarks: landmarks per record (68).
        chunk_size: records per chunk (target; chunks end on frame boundaries).
        save_crops, save_recon: store the PNGs passed to :meth:`add`.
        extra: free-form JSON-safe dict stored in the header.
        overwrite: replace an existing export in ``path``.

    Use as a context manager; :meth:`close` marks the export complete. Leaving the ``with`` block on
    an exception writes the records added so far and leaves ``complete: false`` with the error.

    Raises:
        FileExistsError: ``path`` holds an export and ``overwrite`` is False.
        ValueError: an encoder kind that is not a name, F without its layer, bad shapes.
    """

    def __init__(self, path: str | os.PathLike, *, encoder: str, generator: Any, models: Sequence[Any] = (),
                 source: Any = None, feature_shape: Sequence[int] | None = None,
                 feature_index: int | None = None,
                 n_landmarks: int = 68, chunk_size: int = 32, save_crops: bool = False, save_recon: bool = False,
                 extra: Mapping | None = None, overwrite: bool = False):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.path = Path(path)
        if (self.path / MANIFEST).exists() and not overwrite:
            raise FileExistsError(f"{self.path} already holds an inversion export; pass overwrite=True to replace it "
                                  "or InversionWriter.resume to continue it")
        header = self._header(encoder=encoder, generator=generator, models=models, source=source,
                              feature_shape=feature_shape, feature_index=feature_index, n_landmarks=n_landmarks,
                              save_crops=save_crops, save_recon=save_recon, extra=extra)
        if overwrite and self.path.exists():
            self._clear()
        (self.path / "chunks").mkdir(parents=True, exist_ok=True)
        now = _now()

        self.manifest: dict[str, Any] = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "complete": False, "created": now, "updated": now,
            "writer": {"vidinv": __version__}, "source": header["source"], "encoder": header["encoder"],
            "generator": header["generator"], "models": header["models"], "arrays": header["arrays"],
            "chunk_size": int(chunk_size), "chunks": [], "n_records": 0, "images": header["images"],
            "extra": header["extra"],
        }
        self._init_state()
        self._write_manifest()

    @staticmethod
    def _header(*, encoder: str, generator: Any, models: Sequence[Any] = (), source: Any = None,
                feature_shape: Sequence[int] | None = None, feature_index: int | None = None,
                n_landmarks: int = 68,
                save_crops: bool = False, save_recon: bool = False, extra: Mapping | None = None) -> dict[str, Any]:
        """The manifest fields that describe what the records are (see the module doc): source,
        encoder, generator, models, arrays, images, extra. Raises ValueError as the constructor."""
        if not isinstance(encoder, str) or not encoder.isidentifier():
            raise ValueError(f"encoder kind must be a name such as 'fs' or 'psp', got {encoder!r}")
        gen = generator_config(generator)
        n_latent, style_dim = int(gen.get("n_latent", 18)), int(gen.get("style_dim", 512))
        if feature_shape is not None and feature_index is None:
            raise ValueError(f"a feature code F of shape {tuple(feature_shape)} needs its layer: pass feature_index")
        arrays = {"w": {"shape": [n_latent, style_dim], "dtype": "float32"}}
        if feature_shape is not None:
            arrays["F"] = {"shape": [int(s) for s in feature_shape], "dtype": "float16"}
        arrays.update({
            "quad": {"shape": [4, 2], "dtype": "float64"},
            "landmarks": {"shape": [int(n_landmarks), 2], "dtype": "float64"},
            "track_id": {"shape": [], "dtype": "int64"},
            "frame_index": {"shape": [], "dtype": "int64"},
            "pts": {"shape": [], "dtype": "int64"},
            "time": {"shape": [], "dtype": "float64"},
            "has_crop": {"shape": [], "dtype": "bool"},
            "has_recon": {"shape": [], "dtype": "bool"},
        })
        models_json = []
        for m in models:
            m = m.to_json() if isinstance(m, ModelFile) else dict(m)
            if not {"name", "sha256"} <= set(m):
                raise ValueError(f"a model entry needs 'name' and 'sha256': {m}")
            models_json.append({"name": str(m["name"]), "role": str(m.get("role", "")), "sha256": str(m["sha256"])})
        return {
            "source": source_info(source),
            "encoder": {"kind": encoder, "feature_index": int(feature_index)
                        if feature_shape is not None and feature_index is not None else None},
            "generator": gen, "models": models_json, "arrays": arrays,
            "images": {"crops": bool(save_crops), "recon": bool(save_recon), "pattern": _IMAGE_PATTERN},
            "extra": json_safe(dict(extra or {}), infinity="null"),
        }

    # -------------------------------------------------------------- state
    def _init_state(self) -> None:
        self._pending: list[dict[str, np.ndarray | np.generic]] = []
        self._keys: set[tuple[int, int]] = set()
        self._last_frame: int | None = None
        self._closed = False
        chunks = self.manifest["chunks"]
        if chunks:
            self._last_frame = int(chunks[-1]["frames"][1])
        tb = self.manifest["source"].get("time_base")
        self._time_base = Fraction(tb) if tb else None

    def _clear(self) -> None:
        for sub in ("chunks", "images/crops", "images/recon"):
            d = self.path / sub
            if d.is_dir():
                for p in d.iterdir():
                    if p.is_file():
                        p.unlink()
        (self.path / MANIFEST).unlink(missing_ok=True)

    @classmethod
    def resume(cls, path: str | os.PathLike, **settings: Any) -> InversionWriter:
        """Reopen an incomplete export to append to it (after a crash, a kill or Ctrl-C).

        The header is kept (``chunk_size`` included); chunks the manifest does not list (a chunk
        written just before the crash) and temporary files are deleted. Continue with frames from
        :attr:`next_frame` on, made exactly as the first run made them (``vidinv invert --resume``
        re-runs the face tracking from the start of the window and encodes from ``next_frame``).

        Args:
            path: the export folder.
            settings: optionally the constructor's keyword arguments of the resumed run (``encoder``
                and ``generator`` required then; ``models``, ``source``, ``feature_shape``,
                ``feature_index``, ``n_landmarks``, ``save_crops``, ``save_recon``, ``extra``): the
                export's header must describe the same records, else nothing is touched and ValueError
                names every field that differs. ``chunk_size`` and ``overwrite`` are not accepted.

        Raises:
            InversionFormatError / InversionVersionError: no export, unreadable manifest or other version.
            ValueError: the export is already complete, or was made with other settings.
        """
        self = cls.__new__(cls)
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if self.manifest.get("complete"):
            raise ValueError(f"{self.path}: the export is complete; nothing to resume")
        if settings:
            bad = sorted(set(settings) - {"encoder", "generator", "models", "source", "feature_shape", "feature_index",
                                          "n_landmarks", "save_crops", "save_recon", "extra"})
            if bad or not {"encoder", "generator"} <= set(settings):
                raise TypeError(f"resume settings: unknown {bad}" if bad
                                else "resume settings need encoder and generator")
            want = json.loads(json.dumps(cls._header(**settings)))  # compared as stored (JSON)
            keys = ["encoder", "generator", "arrays"] + [k for k, arg in (("models", "models"), ("source", "source"),
                                                                           ("extra", "extra")) if arg in settings]
            if "save_crops" in settings or "save_recon" in settings:
                keys.append("images")
            diffs = [d for k in keys for d in _differences(k, self.manifest.get(k), want[k])]
            if diffs:
                shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
                raise ValueError(f"{self.path}: cannot resume: the export was made with other settings ({shown}); "
                                 "resume with the export's settings, or start again with --overwrite")
        listed = {c["file"] for c in self.manifest["chunks"]}
        for p in (self.path / "chunks").iterdir():
            if p.is_file() and f"chunks/{p.name}" not in listed:
                p.unlink()
        for p in self.path.iterdir():  # temporary files of interrupted writes (``*.tmp``: older vidinv)
            if p.is_file() and (TEMP_NAME_RE.match(p.name) or (p.name.startswith(".") and p.name.endswith(".tmp"))):
                p.unlink()
        self.manifest.pop("error", None)
        self._init_state()
        return self

    @property
    def n_records(self) -> int:
        """Records written to chunks plus records pending."""
        return int(self.manifest["n_records"]) + len(self._pending)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`abort` ran (the export is final or marked incomplete)."""
        return self._closed

    @property
    def next_frame(self) -> int:
        """The first frame index not (completely) stored in a chunk: where a resumed run continues."""
        chunks = self.manifest["chunks"]
        return int(chunks[-1]["frames"][1]) + 1 if chunks else 0

    # -------------------------------------------------------------- writing
    def add(self, *, w: Any, quad: Any, landmarks: Any, track_id: int, frame_index: int, F: Any = None,
            pts: int | None = None, time: float | None = None, crop: Any = None, recon: Any = None) -> int:
        """Add one record (one face in one frame).

        Args:
            w: (n_latent, style_dim) or (1, n_latent, style_dim) W+ code (numpy or torch, any float).
            quad: (4, 2) crop corners in frame pixels; landmarks: (L, 2) smoothed landmarks.
            track_id, frame_index: ints; frame_index must not decrease between calls.
            F: feature code (C, H, W) or (1, C, H, W), required for ``fs``, must be None for ``psp``;
                stored as float16 (values beyond ±65504 raise ValueError).
            pts: timestamp in ``source.time_base`` units or None; time: seconds or None (computed
                from pts and the time base when None).
            crop, recon: optional images (uint8 (H, W, 3) RGB, or float (3, H, W) in [-1, 1]),
                written as PNGs when the writer stores that kind.

        Returns:
            The record's index in the export.

        Raises:
            ValueError: wrong shapes, a decreasing frame index, a duplicate (frame, track), F
                missing/unexpected or out of float16 range, non-finite values.
            RuntimeError: the writer is closed.
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: the writer is closed")
        arrays = self.manifest["arrays"]
        frame_index, track_id = int(frame_index), int(track_id)
        if self._last_frame is not None and frame_index < self._last_frame:
            raise ValueError(f"frame_index {frame_index} after {self._last_frame}: records must come in "
                             "non-decreasing frame order")
        if (frame_index, track_id) in self._keys:
            raise ValueError(f"duplicate record for frame {frame_index}, track {track_id}")
        rec: dict[str, np.ndarray | np.generic] = {}
        where = f"frame {frame_index}, track {track_id}"
        rec["w"] = self._field(w, "w", np.float32, where)
        if "F" in arrays:
            if F is None:
                raise ValueError("this export stores the feature code F (encoder 'fs'): pass F")
            f = self._field(F, "F", np.float32, where)
            fmax = float(np.abs(f).max()) if f.size else 0.0
            if fmax > float(np.finfo(np.float16).max):
                raise ValueError(f"{where}: feature code F exceeds the float16 range (max |F| = {fmax:.4g} > 65504)")
            rec["F"] = f.astype(np.float16)
        elif F is not None:
            raise ValueError("this export has no feature code (encoder 'psp'): F must be None")
        rec["quad"] = self._field(quad, "quad", np.float64, where)
        rec["landmarks"] = self._field(landmarks, "landmarks", np.float64, where)
        if time is None and pts is not None and self._time_base is not None:
            time = float(int(pts) * self._time_base)
        rec["track_id"] = np.int64(track_id)
        rec["frame_index"] = np.int64(frame_index)
        rec["pts"] = np.int64(NO_PTS if pts is None else int(pts))
        rec["time"] = np.float64(np.nan if time is None else float(time))
        imgs = self.manifest["images"]
        rec["has_crop"] = np.bool_(bool(imgs["crops"] and crop is not None))
        rec["has_recon"] = np.bool_(bool(imgs["recon"] and recon is not None))
        for kind, img, flag in (("crops", crop, "has_crop"), ("recon", recon, "has_recon")):
            if rec[flag]:
                self._write_png(kind, img, frame_index, track_id)
        # chunks end on frame boundaries: flush before a record of a new frame once the chunk is full
        if len(self._pending) >= self.manifest["chunk_size"] and frame_index != self._last_frame:
            self.flush()
        self._pending.append(rec)
        self._keys.add((frame_index, track_id))
        self._last_frame = frame_index
        return self.n_records - 1

    def _field(self, value: Any, name: str, dtype, where: str = "") -> np.ndarray:
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        a = np.asarray(value, dtype=np.float64 if dtype == np.float64 else np.float32)
        want = tuple(self.manifest["arrays"][name]["shape"])
        if a.shape != want and a.shape == (1,) + want:
            a = a[0]
        if a.shape != want:
            raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{where + ': ' if where else ''}{name}: holds NaN or infinite values")
        return np.ascontiguousarray(a.astype(dtype, copy=False))

    def _write_png(self, kind: str, img: Any, frame_index: int, track_id: int) -> None:
        from PIL import Image

        a = _to_uint8_image(img, kind)
        p = image_path(self.path, kind, frame_index, track_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(a, "RGB").save(buf, format="PNG")
        atomic_write_bytes(p, buf.getvalue())

    def flush(self) -> None:
        """Write the pending records as one chunk, then the manifest listing it (no-op when none).

        :meth:`add` calls it at frame boundaries; call it yourself only between frames (after the last
        face of a frame), so that every chunk holds whole frames and :attr:`next_frame` is exact.
        """
        if not self._pending:
            return
        idx = len(self.manifest["chunks"])
        name = f"chunks/chunk_{idx:06d}.npz"
        stacked = {k: np.stack([r[k] for r in self._pending]) for k in self._pending[0]}
        buf = io.BytesIO()
        np.savez(buf, **stacked)  # type: ignore[arg-type]  # mypy matches ** against savez's allow_pickle: bool
        data = buf.getvalue()
        atomic_write_bytes(self.path / name, data)
        frames = stacked["frame_index"]
        self.manifest["chunks"].append({
            "file": name, "records": int(frames.shape[0]), "first_record": int(self.manifest["n_records"]),
            "frames": [int(frames.min()), int(frames.max())],
            "tracks": sorted({int(t) for t in stacked["track_id"]}),
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        })
        self.manifest["n_records"] = int(self.manifest["n_records"]) + int(frames.shape[0])
        self._pending = []
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.manifest["updated"] = _now()
        atomic_write_bytes(self.path / MANIFEST, (json.dumps(self.manifest, indent=1) + "\n").encode("utf-8"))

    def close(self) -> None:
        """Flush and mark the export complete (idempotent)."""
        if self._closed:
            return
        self.flush()
        self.manifest["complete"] = True
        self._write_manifest()
        self._closed = True

    def abort(self, error: str) -> None:
        """Stop on an error: write the pending records of every frame but the last (which may lack
        faces), record ``error`` and leave the export incomplete (resumable)."""
        if self._closed:
            return
        # the last frame may be incomplete (more faces were to come): drop it so that a resumed run
        # redoes it whole from next_frame
        self._pending = [r for r in self._pending if int(r["frame_index"]) != self._last_frame]
        self.flush()
        self.manifest["error"] = str(error)
        self._write_manifest()
        self._closed = True

    def attach(self, key: str, entry: Mapping) -> None:
        """Record a file written into the export folder by the caller (e.g. ``"tuned_generator"``) under
        ``key`` of the manifest and rewrite the manifest atomically. Write the file first (atomically), then
        attach it, so that the manifest never names a missing or partial file.

        Raises:
            RuntimeError: the writer is closed. ValueError: ``key`` is a field of the format, or the entry
                has no ``file`` inside the export.
        """
        if self._closed:
            raise RuntimeError(f"{self.path}: the writer is closed")
        if key in _RESERVED or not key.isidentifier():
            raise ValueError(f"{key!r} cannot be attached to the manifest")
        name = str(entry.get("file", ""))
        if not name or not (self.path / name).is_file() or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"{self.path}: attached entry {key!r} must name a file inside the export, got {name!r}")
        self.manifest[key] = json_safe(dict(entry), infinity="null")
        self._write_manifest()

    def __enter__(self) -> InversionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(f"{exc_type.__name__}: {exc}")


# --------------------------------------------------------------------------------------------- reader

#: Fields whose values must be finite in every record (``time`` may be NaN: unknown).
_FINITE_FIELDS = ("w", "F", "quad", "landmarks")
_REQUIRED = ("format", "version", "complete", "arrays", "chunks", "n_records", "encoder", "generator", "models")
#: Manifest fields of the format itself (not attachable).
_RESERVED = _REQUIRED + ("created", "updated", "writer", "source", "chunk_size", "images", "extra", "error")


def _read_manifest(path: Path) -> dict:
    mp = path / MANIFEST
    if not path.is_dir():
        raise InversionFormatError(f"{path}: no such inversion export folder")
    if not mp.is_file():
        raise InversionFormatError(f"{path}: not an inversion export (no {MANIFEST})")
    try:
        man = json.loads(mp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InversionFormatError(f"{mp}: the manifest is corrupted ({exc}); the export cannot be read. "
                                   "Run `vidinv invert` again.") from exc
    if not isinstance(man, dict):
        raise InversionFormatError(f"{mp}: the manifest is corrupted (a JSON {type(man).__name__}, not an object)")
    if man.get("format") != FORMAT_NAME:
        raise InversionFormatError(f"{mp}: not a {FORMAT_NAME} manifest (format {man.get('format')!r})")
    if "version" not in man:
        raise InversionVersionError(path, None)
    if man["version"] not in SUPPORTED_VERSIONS:
        raise InversionVersionError(path, man["version"])
    missing = [k for k in _REQUIRED if k not in man]
    if missing:
        raise InversionFormatError(f"{mp}: the manifest is corrupted: missing field(s) {missing}")
    chunks = man["chunks"]
    if not isinstance(chunks, list) or not all(isinstance(c, dict) and {"file", "records", "sha256"} <= set(c)
                                               for c in chunks):
        raise InversionFormatError(f"{mp}: the manifest is corrupted: bad 'chunks' list")
    if sum(int(c["records"]) for c in chunks) != int(man["n_records"]):
        raise InversionFormatError(f"{mp}: the manifest is corrupted: n_records {man['n_records']} differs from "
                                   f"the chunks' total {sum(int(c['records']) for c in chunks)}")
    return man


class InversionReader:
    """Read an inversion export lazily, chunk by chunk.

    Args:
        path: the export folder.
        allow_incomplete: read an export whose writer did not finish (its completed chunks).
        verify: check each chunk's sha256 against the manifest when it is loaded.

    Attributes:
        manifest: the parsed manifest (see the module doc); also exposed as ``version``,
            ``complete``, ``source``, ``encoder``, ``generator``, ``models``, ``extra``.

    Raises:
        InversionFormatError: no or corrupted manifest.
        InversionVersionError: another format version (names the found and expected versions).
        IncompleteInversionError: ``complete`` is false and ``allow_incomplete`` is False.
    """

    def __init__(self, path: str | os.PathLike, *, allow_incomplete: bool = False, verify: bool = True):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if not self.manifest["complete"] and not allow_incomplete:
            raise IncompleteInversionError(self.path, int(self.manifest["n_records"]), self.manifest.get("error"))
        self.verify = verify
        self._starts = np.cumsum([0] + [int(c["records"]) for c in self.manifest["chunks"]])
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    # -------------------------------------------------------------- header
    version = property(lambda self: int(self.manifest["version"]))
    complete = property(lambda self: bool(self.manifest["complete"]))
    source = property(lambda self: self.manifest.get("source", {}))
    encoder = property(lambda self: self.manifest["encoder"])
    generator = property(lambda self: self.manifest["generator"])
    models = property(lambda self: [ModelFile(m["name"], m.get("role", ""), m["sha256"])
                                    for m in self.manifest["models"]])
    extra = property(lambda self: self.manifest.get("extra", {}))

    @property
    def tuned_generator(self) -> Path | None:
        """The export's tuned generator file (manifest ``tuned_generator``), or None when it has none.

        Raises:
            InversionFormatError: the manifest names a file that is missing or whose sha256 differs.
        """
        entry = self.manifest.get("tuned_generator")
        if not isinstance(entry, dict) or not entry.get("file"):
            return None
        p = self.path / str(entry["file"])
        if not p.is_file():
            raise InversionFormatError(f"{self.path}: the tuned generator {entry['file']} named in the manifest is "
                                       "missing")
        if self.verify and entry.get("sha256") and sha256_file(p) != entry["sha256"]:
            raise InversionFormatError(f"{p}: sha256 does not match the manifest: the tuned generator is damaged")
        return p

    @property
    def time_base(self) -> Fraction | None:
        """The source's time base (seconds per ``pts`` tick), or None when unknown."""
        tb = self.source.get("time_base")
        return Fraction(tb) if tb else None

    @property
    def has_features(self) -> bool:
        """True when records hold a feature code F."""
        return "F" in self.manifest["arrays"]

    def __len__(self) -> int:
        return int(self.manifest["n_records"])

    @property
    def n_chunks(self) -> int:
        """Number of completed chunks listed in the manifest."""
        return len(self.manifest["chunks"])

    def tracks(self) -> list[int]:
        """Every track id in the export (from the manifest, no chunk read)."""
        return sorted({int(t) for c in self.manifest["chunks"] for t in c.get("tracks", [])})

    def check_models(self, files: Mapping[str, str | os.PathLike]) -> None:
        """Check that model files are those that produced the export.

        Args:
            files: ``{name: path}`` of files about to be used with this export (e.g. the generator).

        Raises:
            InversionFormatError: a named file is not in the header, or its sha256 differs (the
                message gives both hashes).
        """
        known = {m.name: m for m in self.models}
        for name, p in files.items():
            if name not in known:
                raise InversionFormatError(f"{self.path}: {name} did not produce this export (models: "
                                           f"{', '.join(known) or 'none'})")
            got = sha256_file(p)
            if got != known[name].sha256:
                raise InversionFormatError(f"{self.path}: {name} at {p} has sha256 {got}, the export was made with "
                                           f"{known[name].sha256}")

    # -------------------------------------------------------------- chunks
    def _load_chunk(self, ci: int) -> dict[str, np.ndarray]:
        if self._cached is not None and self._cached[0] == ci:
            return self._cached[1]
        c = self.manifest["chunks"][ci]
        p = self.path / c["file"]
        if not p.is_file():
            raise InversionFormatError(f"{self.path}: chunk {c['file']} listed in the manifest is missing")
        data = p.read_bytes()
        if self.verify and hashlib.sha256(data).hexdigest() != c["sha256"]:
            raise InversionFormatError(f"{p}: sha256 does not match the manifest: the chunk is damaged")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile/format errors
            raise InversionFormatError(f"{p}: cannot read the chunk ({type(exc).__name__}: {exc})") from exc
        n = int(c["records"])
        for name, spec in self.manifest["arrays"].items():
            a = arrays.get(name)
            want = (n, *spec["shape"])
            if a is None or a.shape != want or a.dtype != np.dtype(spec["dtype"]):
                got = "missing" if a is None else f"{a.dtype} {a.shape}"
                raise InversionFormatError(f"{p}: array {name!r} is {got}, the manifest says {spec['dtype']} {want}")
        for name in _FINITE_FIELDS:
            a = arrays.get(name)
            if a is None or a.dtype.kind != "f":
                continue
            ok = np.isfinite(a.reshape(n, -1)).all(axis=1)
            if not ok.all():
                j = int(np.argmin(ok))
                raise InversionFormatError(
                    f"{p}: {name!r} of record {int(self._starts[ci]) + j} (frame {int(arrays['frame_index'][j])}, "
                    f"track {int(arrays['track_id'][j])}) holds NaN or infinite values ({int((~ok).sum())} record(s) "
                    "of this chunk); the export cannot be used. Run `vidinv invert` again.")
        self._cached = (ci, arrays)
        return arrays

    def check(self) -> None:
        """Read every chunk once and check it (sha256 when ``verify``, shapes and dtypes, finite codes),
        without keeping them: what ``vidinv edit --from-inversion`` does before any other work.

        Raises:
            InversionFormatError: a missing or damaged chunk, or NaN / inf in ``w``, ``F``, ``quad`` or
                ``landmarks`` (naming the record, frame and track).
        """
        for ci in range(self.n_chunks):
            self._load_chunk(ci)
        self._cached = None

    def iter_batches(self) -> Iterator[FrameBatch]:
        """Yield each chunk's records as a :class:`FrameBatch` of stacked arrays (one chunk in memory)."""
        for ci in range(self.n_chunks):
            yield FrameBatch(int(self._starts[ci]), self._load_chunk(ci))

    def _record(self, ci: int, j: int) -> FrameRecord:
        a = self._load_chunk(ci)
        fi, tid = int(a["frame_index"][j]), int(a["track_id"][j])
        pts = int(a["pts"][j])
        t = float(a["time"][j])
        return FrameRecord(
            index=int(self._starts[ci]) + j, frame_index=fi, track_id=tid,
            pts=None if pts == NO_PTS else pts, time=None if math.isnan(t) else t,
            w=a["w"][j].copy(), F=a["F"][j].copy() if "F" in a else None, quad=a["quad"][j].copy(),
            landmarks=a["landmarks"][j].copy(),
            crop_path=image_path(self.path, "crops", fi, tid) if bool(a["has_crop"][j]) else None,
            recon_path=image_path(self.path, "recon", fi, tid) if bool(a["has_recon"][j]) else None)

    def __iter__(self) -> Iterator[FrameRecord]:
        for ci in range(self.n_chunks):
            for j in range(int(self.manifest["chunks"][ci]["records"])):
                yield self._record(ci, j)

    def __getitem__(self, i: int) -> FrameRecord:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record {i} out of range (export has {n})")
        ci = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self._record(ci, i - int(self._starts[ci]))

    def frames(self, track_id: int | None = None) -> Iterator[FrameRecord]:
        """Records in order, optionally of one track only (chunks without that track are skipped)."""
        for ci, c in enumerate(self.manifest["chunks"]):
            if track_id is not None and "tracks" in c and int(track_id) not in c["tracks"]:
                continue
            a = self._load_chunk(ci)
            for j in range(int(c["records"])):
                if track_id is None or int(a["track_id"][j]) == int(track_id):
                    yield self._record(ci, j)

    def load_image(self, record: FrameRecord, kind: str = "crops") -> np.ndarray | None:
        """The record's crop (``"crops"``) or reconstruction (``"recon"``) as (H, W, 3) uint8 RGB, or None."""
        from PIL import Image

        p = record.crop_path if kind == "crops" else record.recon_path if kind == "recon" else None
        if kind not in ("crops", "recon"):
            raise ValueError(f"kind must be 'crops' or 'recon', got {kind!r}")
        if p is None:
            return None
        if not p.is_file():
            raise InversionFormatError(f"{p}: image listed for record {record.index} is missing")
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
