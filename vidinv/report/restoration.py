"""Restoration metrics of a face video against its high-resolution original (``vidinv report --reference``).

:func:`restoration_metrics` measures a restored (e.g. super-resolved) video against the high-resolution
*reference* it should reproduce, on FFHQ-aligned face crops, with the numbers face super-resolution
papers report: PSNR, SSIM, LPIPS and identity similarity to the high-resolution original. Optionally the
low-resolution *source* (the restorer's input) up-scaled bicubically to the reference size is measured
the same way, as the baseline every restored number should beat.

Protocol (pSp, Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation",
CVPR 2021, Sec. 5 super-resolution; evaluation scripts ``scripts/calc_losses_on_images.py`` and
``scripts/calc_id_loss_parallel.py`` of eladrich/pixel2style2pixel): the restored face and the ground-truth
high-resolution face are compared as FFHQ-aligned 256x256 images; LPIPS uses the AlexNet backbone on the
two 256x256 images; identity similarity is the cosine similarity of face-recognition embeddings of the two
faces. Differences from pSp's scripts, so the values are not the paper's numbers: pSp's identity network
is CurricularFace IR-101 on MTCNN-aligned 112x112 crops, ours is the report's identity network(s) (dlib's
face-recognition ResNet-29, and ArcFace IResNet-50 when ``backbone.pth`` is present; see
:mod:`vidinv.metrics.identity`); pSp's scripts report L2 (MSE on [-1, 1]) where we report PSNR and SSIM
(the standard super-resolution pixel metrics); and the faces here come from video frames, tracked and
aligned by our front-end.

Geometry: faces are tracked on the *reference* only (the existing front-end, :class:`FaceFrontEnd` with a
:class:`~vidinv.face.tracking.Tracker` in ``mode="all"``: every face track, smoothed quads), and every
comparison uses the reference's FFHQ quad (:func:`vidinv.face.align.quad_from_landmarks`), so the crops of
the reference, the restored output and the bicubic baseline cover the same region of the face even where
the restored output's own landmarks would differ.

* The restored output may be a different size than the reference (e.g. an x4 restorer run on a source that
  was already the reference size). Its crop is cut from the output frame with the reference quad *scaled*
  to the output's pixel grid (per axis, pixel-centre convention: ``q_out = s * (q_ref + 0.5) - 0.5`` with
  ``s = (W_out / W_ref, H_out / H_ref)``), instead of resizing the output frame to the reference size
  first. Why: :func:`vidinv.face.align.align_crop` then resamples the output exactly once, by the same warp
  (in continuous coordinates) as the reference, with its own anti-aliasing when it shrinks; a prior resize
  of the whole frame would add a second interpolation (a blur, or aliasing) to the output only and bias
  every number against it. When the sizes are equal both are the same.
* The bicubic baseline is, by definition, the source frame up-scaled with bicubic interpolation to the
  reference size (PIL ``Image.resize(..., BICUBIC)``: Keys' cubic convolution with a = -0.5, as MATLAB's
  ``imresize``, the usual super-resolution baseline); its crop is cut from that image with the reference
  quad.

Correspondence: frame ``start + i * stride`` of the reference (and of the source) is compared with frame
``output_start + i * stride`` of the output. The videos must correspond: same aspect ratio (within
:func:`aspect_tolerance`, which absorbs the rounding of frame sizes to whole/even pixels when a video is
scaled), the same frame rate (within 0.5 %), the same number of frames in the compared windows, and the
presentation times of compared frames (each relative to the first compared frame of its video) may differ
by at most half a reference frame period. Otherwise :class:`RestorationInputError` is raised with one line
saying which; :func:`check_restoration_inputs` does the container-level part of these checks without
decoding (before any network is loaded).

Metrics, per (frame, face) *sample*, on 256x256 uint8 RGB crops (``crop_size``):

* ``psnr``: ``10 log10(255^2 / MSE)`` dB, MSE over all pixels and channels of the 8-bit crops (data range
  255; :func:`vidinv.metrics.image.psnr`); identical crops give ``inf`` (written ``"inf"`` in report.json;
  a mean containing ``inf`` is ``inf``);
* ``ssim``: Wang et al. 2004, 11x11 Gaussian window, sigma 1.5, per channel, mean over channels and valid
  window positions (:func:`vidinv.metrics.image.ssim`); 1 for identical crops;
* ``lpips``: LPIPS v0.1 with the AlexNet backbone (:class:`vidinv.metrics.image.LPIPSMetric`, local weights
  only); 0 for identical crops; None when its weights are not available (the reason is recorded);
* ``identity`` (per identity network key): cosine similarity of the network's embeddings of the reference
  face and the restored face, each cut from its own frame by the network's own alignment
  (:meth:`IdentityEmbedder.align`) with the reference geometry (scaled for the output); 1 = same
  direction.

Aggregates: per track (mean etc. over that track's frames) and overall (over all samples: with one face per
frame, the mean over frames) with :func:`vidinv.report.document.stats`; overall PSNR also as
``from_mean_mse`` (PSNR of the mean MSE).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidinv.face import align
from vidinv.face.frontend import FaceFrontEnd
from vidinv.face.tracking import Tracker
from vidinv.io.video import Frame, probe
from vidinv.metrics import image as im
from vidinv.metrics.identity import IdentityEmbedder, cosine_similarity, select_embedders
from vidinv.metrics.image import LPIPSMetric, LPIPSUnavailable
from vidinv.report.compute import BatchedEmbedding, FaceRecord, face_record, iter_frames
from vidinv.report.document import stats

__all__ = ["RestorationInputError", "RestorationResult", "restoration_metrics", "check_restoration_inputs",
           "aspect_tolerance", "scale_face", "bicubic_upscale", "RESTORATION_METRICS", "RESTORATION_DEFINITION",
           "FPS_TOLERANCE"]

#: Pixel metrics of every sample (identity is per network, see :func:`restoration_metrics`).
RESTORATION_METRICS = ("psnr", "ssim", "lpips")

#: Largest relative difference of the frame rates of corresponding videos.
FPS_TOLERANCE = 0.005

#: How the numbers are defined (``restoration[].definition`` in report.json).
RESTORATION_DEFINITION = (
    "Per face and frame, FFHQ-aligned crops of the reference (high-resolution original), of the restored output "
    "and of the bicubic baseline (source up-scaled with PIL bicubic to the reference size), all cut with the "
    "reference's tracked quad (scaled per axis to the output's pixel grid when its size differs). PSNR = "
    "10 log10(255^2 / MSE) dB on the 8-bit crops (inf for identical crops); SSIM: 11x11 Gaussian window, "
    "sigma 1.5, mean over channels; LPIPS v0.1 AlexNet; identity = cosine similarity of the named network's "
    "embeddings of reference and restored face. Means over all (frame, face) samples and per face track. "
    "Protocol after pSp (Richardson et al., CVPR 2021): 256x256 aligned faces vs the ground-truth faces, LPIPS "
    "(alex), identity similarity; pSp used CurricularFace on MTCNN crops and L2 instead of PSNR/SSIM, so the "
    "values are not the paper's numbers.")


class RestorationInputError(ValueError):
    """The reference, output and source videos do not correspond (aspect ratio, frame rate, frame count or
    timestamps); the one-line message says which and how."""


@dataclass
class RestorationResult:
    """What :func:`restoration_metrics` measured.

    Attributes:
        reference, output, source: the video files (``source`` None without a baseline).
        sizes: ``{"reference": (W, H), "output": (W, H), "source": (W, H) or None}`` display sizes.
        scale: ``{"output": (sx, sy), "source": (sx, sy) or None}``: size of each relative to the reference.
        window: ``{"start", "stop", "output_start", "stride", "max_frames"}`` as used.
        frame_index: original reference frame index of every analysed frame (``K`` entries).
        frames_with_face: analysed frames with at least one tracked face.
        sample_frame: ``(S,)`` int, original reference frame index of each sample (one per face and frame).
        sample_track: ``(S,)`` int, track id of each sample.
        sample_interpolated: ``(S,)`` bool, the tracker bridged a detection gap there.
        sample_qsize: ``(S,)`` float64, side of the face's crop square in reference pixels.
        restored: metric -> ``(S,)`` float64 (``"mse"`` on [0, 1], ``"psnr"`` dB, ``"ssim"``, ``"lpips"``
            (NaN when LPIPS is unavailable), ``"identity:<key>"`` cosine similarity).
        bicubic: same for the bicubic baseline, or None without ``source``.
        identity: descriptions (:meth:`IdentityEmbedder.describe`) of the identity networks used.
        lpips: description of the LPIPS network, or None.
        lpips_reason: why LPIPS is missing (None when computed).
        crop_size: side of the aligned crops.
        baseline_reason: why there is no bicubic baseline (None when there is one).
        timing: ``seconds`` and ``ms_per_frame``.
    """

    reference: Path
    output: Path
    source: Path | None
    sizes: dict
    scale: dict
    window: dict
    crop_size: int = 256
    frame_index: list[int] = field(default_factory=list)
    frames_with_face: int = 0
    sample_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_track: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_interpolated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    sample_qsize: np.ndarray = field(default_factory=lambda: np.zeros(0))
    restored: dict[str, np.ndarray] = field(default_factory=dict)
    bicubic: dict[str, np.ndarray] | None = None
    identity: list[dict] = field(default_factory=list)
    lpips: dict | None = None
    lpips_reason: str | None = None
    baseline_reason: str | None = None
    timing: dict = field(default_factory=dict)

    @property
    def identity_keys(self) -> list[str]:
        return [d["key"] for d in self.identity]

    def summary(self, which: str = "restored") -> dict:
        """Means over all samples of ``which`` (``"restored"`` / ``"bicubic"``): metric -> float (NaN when
        not computed; ``inf`` PSNR when every crop is identical or any is)."""
        vals = self.restored if which == "restored" else self.bicubic
        if vals is None:
            raise ValueError("no bicubic baseline (restoration_metrics was run without source)")
        return {k: stats(v)["mean"] for k, v in vals.items()}

    def as_dict(self) -> dict:
        """The report's ``restoration`` entry for this pair (before :func:`vidinv.io.outputs.json_safe`;
        schema ``$defs/restoration``), without the ``id`` / ``output`` / ``source`` ids the document adds."""
        def aggregate(vals: dict[str, np.ndarray] | None, sel: np.ndarray | None = None) -> dict | None:
            if vals is None:
                return None
            v = {k: (a if sel is None else a[sel]) for k, a in vals.items()}
            psnr = stats(v["psnr"])
            mm = v["mse"][np.isfinite(v["mse"])]
            mean_mse = float(mm.mean()) if mm.size else math.nan
            psnr["from_mean_mse"] = (math.inf if mean_mse == 0 else
                                     (-10.0 * math.log10(mean_mse) if math.isfinite(mean_mse) else math.nan))
            return {"psnr": psnr, "ssim": stats(v["ssim"]),
                    "lpips": stats(v["lpips"]) if self.lpips is not None else None,
                    "identity": {k: stats(v[f"identity:{k}"]) for k in self.identity_keys}}

        def per_frame(vals: dict[str, np.ndarray] | None) -> dict | None:
            if vals is None:
                return None
            return {"psnr": vals["psnr"], "ssim": vals["ssim"],
                    "lpips": vals["lpips"] if self.lpips is not None else None,
                    "identity": {k: vals[f"identity:{k}"] for k in self.identity_keys}}

        tracks = []
        for t in sorted({int(x) for x in self.sample_track}):
            sel = self.sample_track == t
            fr = self.sample_frame[sel]
            tracks.append({"track_id": t, "samples": int(sel.sum()), "first_frame": int(fr.min()),
                           "last_frame": int(fr.max()), "interpolated": int(self.sample_interpolated[sel].sum()),
                           "qsize_mean": float(self.sample_qsize[sel].mean()),
                           "restored": aggregate(self.restored, sel), "bicubic": aggregate(self.bicubic, sel)})
        return {
            "reference": {"path": str(self.reference), "label": self.reference.name,
                          "width": self.sizes["reference"][0], "height": self.sizes["reference"][1]},
            "output_size": list(self.sizes["output"]),
            "source_size": None if self.sizes["source"] is None else list(self.sizes["source"]),
            "scale": {"output": list(self.scale["output"]),
                      "source": None if self.scale["source"] is None else list(self.scale["source"])},
            "window": dict(self.window),
            "crop_size": self.crop_size,
            "geometry": ("reference front-end quads (all face tracks); output crops cut with the quad scaled per "
                         "axis to its pixel grid (one resampling); baseline = source up-scaled with PIL bicubic "
                         "to the reference size, cut with the reference quad"),
            "frames": {"analysed": len(self.frame_index), "with_face": self.frames_with_face,
                       "samples": int(self.sample_frame.size), "frame_index": list(self.frame_index)},
            "identity_networks": [{"key": d["key"], "summary": d.get("summary", d.get("network"))}
                                  for d in self.identity],
            "lpips": {"available": self.lpips is not None, "reason": self.lpips_reason,
                      **({"net": self.lpips.get("net")} if self.lpips else {})},
            "restored": aggregate(self.restored),
            "bicubic": aggregate(self.bicubic),
            "baseline_reason": self.baseline_reason,
            "tracks": tracks,
            "per_sample": {"frame": self.sample_frame, "track_id": self.sample_track,
                           "restored": per_frame(self.restored), "bicubic": per_frame(self.bicubic)},
            "definition": RESTORATION_DEFINITION,
            "timing": dict(self.timing),
        }


# ------------------------------------------------------------------------------------------------ checks

def aspect_tolerance(size_a: tuple[int, int], size_b: tuple[int, int]) -> float:
    """Largest accepted relative difference of the aspect ratios ``W/H`` of two frame sizes: two pixels of the
    shorter side of the smaller frame (the rounding of a scaled size to whole, often even, pixels), at least
    0.5 %. E.g. 1280x720 vs 426x240 (1/3, rounded to even) differ by 0.16 % and pass; 16:9 vs 4:3 differ by
    33 % and do not."""
    small = min(min(size_a), min(size_b))
    return max(0.005, 2.0 / max(1, small))


def _aspect_ok(ref: tuple[int, int], other: tuple[int, int]) -> bool:
    a = (other[0] / other[1]) / (ref[0] / ref[1])
    return abs(a - 1.0) <= aspect_tolerance(ref, other)


def _window_count(n: int | None, start: int, stop: int | None) -> int | None:
    if n is None:
        return None
    end = n if stop is None else min(int(stop), n)
    return max(0, end - int(start))


def check_restoration_inputs(reference: str | os.PathLike, output: str | os.PathLike,
                             source: str | os.PathLike | None = None, *, start: int = 0, stop: int | None = None,
                             output_start: int = 0) -> dict:
    """Container-level checks that the videos correspond (no frame is decoded, no network loaded).

    Checked: each opens (:func:`vidinv.io.video.probe`); the aspect ratio of the output and of the source
    equals the reference's (within :func:`aspect_tolerance`); the frame rates agree within
    :data:`FPS_TOLERANCE`; where the containers state their frame counts, the output window
    ``[output_start, output_start + n)`` and the source window ``[start, stop)`` hold as many frames as the
    reference window ``[start, stop)`` (``n`` its length). Timestamps are checked per frame by
    :func:`restoration_metrics`.

    Returns:
        ``{"reference": (W, H), "output": (W, H), "source": (W, H) or None, "frames": n or None}``.

    Raises:
        RestorationInputError: they do not correspond (one line saying which).
        FileNotFoundError / ValueError: a video cannot be opened.
    """
    ref_i = probe(reference)
    rs = (int(ref_i.display_size[0]), int(ref_i.display_size[1]))
    out: dict = {"reference": rs, "output": None, "source": None, "frames": None}
    n_ref = _window_count(ref_i.num_frames, start, stop)
    if n_ref == 0:
        raise RestorationInputError(f"the reference {Path(reference).name} has no frame in the window "
                                    f"[{start}, {'end' if stop is None else stop})")
    out["frames"] = n_ref
    for role, path, first, last in (("output", output, output_start, None), ("source", source, start, stop)):
        if path is None:
            continue
        info = probe(path)
        sz = (int(info.display_size[0]), int(info.display_size[1]))
        out[role] = sz
        name = Path(path).name
        if not _aspect_ok(rs, sz):
            raise RestorationInputError(
                f"the {role} {name} ({sz[0]}x{sz[1]}) does not have the aspect ratio of the reference "
                f"{Path(reference).name} ({rs[0]}x{rs[1]}): {sz[0] / sz[1]:.4f} vs {rs[0] / rs[1]:.4f}; a restored "
                f"video must be the reference scaled by one factor")
        if ref_i.fps and info.fps and abs(float(info.fps) / float(ref_i.fps) - 1.0) > FPS_TOLERANCE:
            raise RestorationInputError(f"the {role} {name} runs at {float(info.fps):.3f} fps, the reference "
                                        f"{Path(reference).name} at {float(ref_i.fps):.3f} fps: frames do not "
                                        f"correspond")
        if role == "output":
            n = _window_count(info.num_frames, first, None if n_ref is None else first + n_ref)
            full = _window_count(info.num_frames, first, None)
            if n_ref is not None and full is not None and stop is None and full != n_ref:
                raise RestorationInputError(
                    f"frame counts differ: the output {name} has {full} frames from frame {first}, the reference "
                    f"{Path(reference).name} {n_ref} from frame {start}")
            if n_ref is not None and n is not None and n < n_ref:
                raise RestorationInputError(
                    f"frame counts differ: the output {name} has {n} frames from frame {first}, the reference window "
                    f"[{start}, {start + n_ref}) has {n_ref}")
        else:
            n = _window_count(info.num_frames, first, last)
            if n_ref is not None and n is not None and n != n_ref:
                win = f"[{start}, {stop})" if stop is not None else f"from frame {start}"
                raise RestorationInputError(
                    f"frame counts differ: the source {name} has {n} frames {win}, the reference "
                    f"{Path(reference).name} {n_ref}")
    return out


# ------------------------------------------------------------------------------------------------ geometry

def _scale_points(p: np.ndarray, s: tuple[float, float]) -> np.ndarray:
    """Index coordinates on a grid scaled by ``s = (sx, sy)`` (pixel centres: ``s (p + 0.5) - 0.5``)."""
    p = np.asarray(p, dtype=np.float64)
    sc = np.asarray(s, dtype=np.float64)
    return (p.reshape(-1, 2) + 0.5) * sc - 0.5


def scale_face(rec: FaceRecord, s: tuple[float, float]) -> FaceRecord:
    """``rec`` on a frame whose size is the reference's times ``s = (sx, sy)``: landmarks, quad and box
    mapped with the pixel-centre convention ``s * (p + 0.5) - 0.5`` per axis; ``qsize`` scaled by the mean of
    ``sx, sy``. ``s = (1, 1)`` returns an equal record."""
    return FaceRecord(track_id=rec.track_id, interpolated=rec.interpolated,
                      landmarks=_scale_points(rec.landmarks, s), quad=_scale_points(rec.quad, s),
                      qsize=float(rec.qsize) * 0.5 * (s[0] + s[1]),
                      box=_scale_points(rec.box, s).reshape(4))


def bicubic_upscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The bicubic baseline frame: ``image`` ((h, w, 3) uint8 RGB) resized to ``size = (W, H)`` with PIL's
    bicubic filter (Keys cubic convolution, a = -0.5, as MATLAB ``imresize``), rounded to uint8. An image
    already of that size is returned unchanged."""
    from PIL import Image

    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    wh = (int(size[0]), int(size[1]))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(wh, Image.Resampling.BICUBIC))


# ------------------------------------------------------------------------------------------------ streams

class _Lockstep:
    """Frames of a second video pulled in step with the reference, with the timestamp check."""

    def __init__(self, role: str, path: Path, stride: int, max_frames: int | None, start: int, stop: int | None,
                 ref_name: str, half_period: float):
        self.role, self.path, self.ref_name = role, path, ref_name
        self.half_period = half_period
        self.notes: list[str] = []
        self.stream: Iterator[tuple[Frame, int]] = iter_frames(path, stride, max_frames, self.notes, start, stop)
        self.t0: float | None = None
        self.count = 0

    def get(self, j: int, ref_time_rel: float | None) -> np.ndarray:
        try:
            fr, k = next(self.stream)
        except StopIteration:
            raise RestorationInputError(
                f"frame counts differ: the {self.role} {self.path.name} ends after {self.count} compared frames, "
                f"the reference {self.ref_name} has more") from None
        if fr.index != j:  # pragma: no cover - both count from 0 in step
            raise RuntimeError(f"{self.role} stream out of step ({fr.index} != {j})")
        self.count += 1
        if fr.time is not None:
            if self.t0 is None:
                self.t0 = fr.time
            rel = fr.time - self.t0
            if ref_time_rel is not None and abs(rel - ref_time_rel) > self.half_period:
                raise RestorationInputError(
                    f"timestamps do not correspond: {self.role} {self.path.name} frame {k} is at {rel:.3f} s from its "
                    f"first compared frame, the reference frame at {ref_time_rel:.3f} s")
        return fr.image

    def check_end(self) -> None:
        extra = next(self.stream, None)
        self.stream.close()  # type: ignore[attr-defined]
        if extra is not None:
            raise RestorationInputError(
                f"frame counts differ: the {self.role} {self.path.name} has more frames than the reference "
                f"{self.ref_name} in the compared window")


# ------------------------------------------------------------------------------------------------ API

def restoration_metrics(reference: str | os.PathLike, output: str | os.PathLike, *,
                        source: str | os.PathLike | None = None, start: int = 0, stop: int | None = None,
                        output_start: int = 0, stride: int = 1, max_frames: int | None = None,
                        crop_size: int = 256, embedders: Sequence[IdentityEmbedder] | None = None,
                        embedder_keys: Sequence[str] = ("auto",), lpips_metric=None, lpips: bool | None = None,
                        lpips_reason: str | None = None,
                        weights_dir: str | os.PathLike | None = None, device: str | None = None, frontend=None,
                        progress: bool = False) -> RestorationResult:
    """PSNR, SSIM, LPIPS and identity similarity of a restored video against its high-resolution reference
    (and of the bicubic-upscaled source, the baseline), per face and frame, on FFHQ-aligned crops.

    The protocol, geometry and metric definitions are in the module docstring (pSp's super-resolution
    evaluation: 256x256 aligned faces against the ground-truth faces).

    Args:
        reference: the high-resolution original video (faces are tracked on it).
        output: the restored video; any size with the reference's aspect ratio (crops are cut with the
            reference quad scaled to its pixel grid).
        source: optional low-resolution input of the restorer (same aspect ratio, same frames as the
            reference window): adds the bicubic baseline (``result.bicubic``).
        start, stop: reference (and source) frames ``[start, stop)`` to compare (stop None = to the end).
        output_start: output frame compared with reference frame ``start`` (0 when the output was made from
            that window).
        stride: compare every ``stride``-th frame of the windows.
        max_frames: compare at most this many frames (after the stride); the frame-count checks then cover
            only these frames (plus the container counts, :func:`check_restoration_inputs`).
        crop_size: side of the aligned crops (256 as pSp).
        embedders: ready identity networks (default: ``select_embedders(embedder_keys)``).
        embedder_keys: identity networks by key when ``embedders`` is None (``"auto"`` = dlib, plus ArcFace
            when ``backbone.pth`` is present).
        lpips_metric: a ready :class:`vidinv.metrics.image.LPIPSMetric`; otherwise one is built with
            ``net="alex"`` when ``lpips`` is not False.
        lpips: True = LPIPS required (raise if unavailable), False = skip, None = when available.
        lpips_reason: with ``lpips=False``, why LPIPS is skipped (recorded; default "disabled (--no-lpips)").
        weights_dir: folder of hand-placed weights (identity networks, LPIPS backbone), searched first.
        device: torch device of ArcFace / LPIPS (default CPU).
        frontend: a :class:`vidinv.face.frontend.FaceFrontEnd` to track the reference (default: dlib with a
            ``Tracker(mode="all")``, every face).
        progress: tqdm progress bar on stderr.

    Returns:
        :class:`RestorationResult`: per-sample arrays, and :meth:`RestorationResult.as_dict` /
        :meth:`RestorationResult.summary` for the aggregates.

    Raises:
        RestorationInputError: the videos do not correspond (aspect ratio, frame rate, frame count,
            timestamps).
        FileNotFoundError / ValueError: a video cannot be opened; bad arguments.
        vidinv.metrics.identity.EmbedderUnavailable: a requested identity network is missing.
        vidinv.metrics.image.LPIPSUnavailable: ``lpips=True`` and LPIPS cannot run.
    """
    from tqdm import tqdm

    reference, output = Path(reference), Path(output)
    source = Path(source) if source is not None else None
    if stride < 1 or start < 0 or output_start < 0 or (stop is not None and stop <= start) or crop_size < 16:
        raise ValueError(f"bad window: start={start}, stop={stop}, output_start={output_start}, stride={stride}, "
                         f"crop_size={crop_size}")
    sizes = check_restoration_inputs(reference, output, source, start=start, stop=stop, output_start=output_start)
    rs, os_, ss = sizes["reference"], sizes["output"], sizes["source"]
    s_out = (os_[0] / rs[0], os_[1] / rs[1])
    s_src = None if ss is None else (ss[0] / rs[0], ss[1] / rs[1])
    fps = probe(reference).fps
    half = 0.5 / float(fps) if fps else math.inf

    if embedders is None:
        embedders, _ = select_embedders(embedder_keys, weights_dir=weights_dir, device=device)
    embedders = list(embedders)
    lp_reason = None
    if lpips is False:
        lpips_metric = None
        lp_reason = lpips_reason or "disabled (--no-lpips)"
    elif lpips_metric is None:
        try:
            lpips_metric = LPIPSMetric(net="alex", weights_dir=weights_dir, device=device)
        except LPIPSUnavailable as e:
            if lpips:
                raise
            lp_reason = str(e).splitlines()[0]
    fe = frontend if frontend is not None else FaceFrontEnd(tracker=Tracker(mode="all"))

    res = RestorationResult(reference=reference, output=output, source=source,
                            sizes={"reference": rs, "output": os_, "source": ss},
                            scale={"output": s_out, "source": s_src},
                            window={"start": start, "stop": stop, "output_start": output_start, "stride": stride,
                                    "max_frames": max_frames},
                            crop_size=int(crop_size), identity=[e.describe() for e in embedders],
                            lpips=lpips_metric.describe() if lpips_metric is not None else None,
                            lpips_reason=lp_reason,
                            baseline_reason=None if source is not None else "no source (low-resolution input) given")
    out_stop = None if stop is None else output_start + (stop - start)
    outs = _Lockstep("output", output, stride, max_frames, output_start, out_stop, reference.name, half)
    srcs = (_Lockstep("source", source, stride, max_frames, start, stop, reference.name, half)
            if source is not None else None)
    ref_notes: list[str] = []
    orig: list[int] = []
    times: list[float | None] = []

    def ref_frames():
        for fr, k in iter_frames(reference, stride, max_frames, ref_notes, start, stop):
            orig.append(k)
            times.append(fr.time)
            yield fr

    which = ["restored"] + (["bicubic"] if srcs is not None else [])
    vals: dict[str, dict[str, list[float]]] = {w: {m: [] for m in ("mse", *RESTORATION_METRICS)} for w in which}
    emb = {w: [BatchedEmbedding(e, 16) for e in embedders] for w in ["reference", *which]}
    s_frame: list[int] = []
    s_track: list[int] = []
    s_interp: list[bool] = []
    s_qsize: list[float] = []
    with_face = 0
    t0 = time.perf_counter()
    bar = tqdm(desc=f"restoration {output.name}", unit="frame", disable=not progress, leave=False,
               dynamic_ncols=True, total=max_frames)
    try:
        for ff in fe.process(ref_frames()):
            j = ff.index
            tj, t0_ = times[j], times[0]
            trel = None if tj is None or t0_ is None else tj - t0_
            ref_img = ff.frame.image
            imgs = {"restored": outs.get(j, trel)}
            if srcs is not None:
                imgs["bicubic"] = bicubic_upscale(srcs.get(j, trel), rs)
            with_face += bool(ff.faces)
            for face in ff.faces:
                rec = face_record(face)
                recs = {"restored": scale_face(rec, s_out), "bicubic": rec}
                n = len(s_frame)
                s_frame.append(orig[j])
                s_track.append(rec.track_id)
                s_interp.append(rec.interpolated)
                s_qsize.append(rec.qsize)
                rc = align.align_crop(ref_img, rec.quad, crop_size)
                for em in emb["reference"]:
                    em.add(n, ref_img, rec)
                for w in which:
                    oc = align.align_crop(imgs[w], recs[w].quad, crop_size)
                    v = vals[w]
                    mse = im.mse(rc, oc)
                    v["mse"].append(mse)
                    v["psnr"].append(float(im.psnr_from_mse(mse)))
                    v["ssim"].append(im.ssim(rc, oc))
                    v["lpips"].append(float(lpips_metric(rc, oc)) if lpips_metric is not None else math.nan)
                    for em in emb[w]:
                        em.add(n, imgs[w], recs[w])
            bar.update(1)
        outs.check_end()
        if srcs is not None:
            srcs.check_end()
    finally:
        bar.close()
        outs.stream.close()  # type: ignore[attr-defined]
        if srcs is not None:
            srcs.stream.close()  # type: ignore[attr-defined]
    n = len(s_frame)
    ref_e = {em.embedder.key: em.matrix(n) for em in emb["reference"]}
    results: dict[str, dict[str, np.ndarray]] = {}
    for w in which:
        r = {m: np.asarray(x, dtype=np.float64) for m, x in vals[w].items()}
        for em in emb[w]:
            a, b = ref_e[em.embedder.key], em.matrix(n)
            r[f"identity:{em.embedder.key}"] = (np.asarray(cosine_similarity(a, b), np.float64).reshape(n)
                                               if n else np.zeros(0))
        results[w] = r
    res.restored = results["restored"]
    res.bicubic = results.get("bicubic")
    res.frame_index = orig[:len(times)]
    res.frames_with_face = with_face
    res.sample_frame = np.asarray(s_frame, np.int64)
    res.sample_track = np.asarray(s_track, np.int64)
    res.sample_interpolated = np.asarray(s_interp, bool)
    res.sample_qsize = np.asarray(s_qsize, np.float64)
    secs = time.perf_counter() - t0
    k = len(res.frame_index)
    res.timing = {"seconds": secs, "ms_per_frame": 1000.0 * secs / k if k else None}
    if ref_notes or outs.notes or (srcs is not None and srcs.notes):
        raise RestorationInputError("; ".join(ref_notes + outs.notes + (srcs.notes if srcs is not None else [])))
    return res
