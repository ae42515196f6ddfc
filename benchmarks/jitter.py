"""Crop jitter of the face front-end on the shared test videos.

For every video: the face front-end runs once with the dlib detector (largest face); the edited face's
track is then smoothed in several ways from the same raw landmarks, and the table reports

* ``J raw``      — quads from the raw landmarks (FFHQ quad rule);
* ``J gauss``    — the front-end's default streaming smoothing (landmarks G_3, quads G_6, FFHQ quads);
* ``J FS ref``   — the Feature-Style reference smoothing by the fixture's rule (offline scipy
  ``gaussian_filter1d`` sigma 3 on the landmarks, FS-video quads, sigma 6 on quads and qsize;
  ``../shared/parity/temporal_smoothing/README.md``), on the same raw landmarks;
* ``J gauss fs`` — the streaming smoothing with the FS-video quad rule (equals ``J FS ref``);
* ``J 1euro``    — the causal One-Euro filter on the landmarks;
* ``trail``      — max over the 10 % fastest frames of |smoothed - raw| corner distance / qsize (gaussian);
* detection speed (frames/s, dlib HOG on this machine).

J is the mean |second temporal difference| of the crop corners divided by the crop size
(x 1024 = pixels of an aligned 1024² crop). Usage::

    python benchmarks/jitter.py [--videos-dir ../shared/videos] [--only talking_wink] [--max-frames N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scipy.ndimage import gaussian_filter1d  # noqa: E402

from vidinv.face import align, smoothing  # noqa: E402
from vidinv.face.detect import LandmarkDetector, get_detector  # noqa: E402
from vidinv.face.frontend import FaceFrontEnd  # noqa: E402
from vidinv.io.video import VideoReader  # noqa: E402

VIDEOS = ["greenscreen_frontal", "talking_wink", "interview_720p", "selfie_portrait", "crowd_1080p"]


class _Recording(LandmarkDetector):
    name = "recording"

    def __init__(self, inner):
        self.inner, self.detections = inner, []

    def detect(self, frames):
        out = self.inner.detect(frames)
        self.detections.extend(out)
        return out


class _Replay(LandmarkDetector):
    name = "replay"

    def __init__(self, detections):
        self.detections, self.pos = detections, 0

    def detect(self, frames):
        out = self.detections[self.pos:self.pos + len(frames)]
        self.pos += len(frames)
        return out


def _main_track(results):
    tracks: dict[int, list] = {}
    for _, faces in results:
        for f in faces:
            tracks.setdefault(f.track_id, []).append(f)
    return max(tracks.values(), key=len) if tracks else []


def _fs_reference(raw, variant="fs_video"):
    lm = gaussian_filter1d(raw, 3.0, axis=0).astype(np.float32).astype(np.float64)
    quad, qsize = align.quad_from_landmarks(lm, variant)
    return gaussian_filter1d(quad, 6.0, axis=0), gaussian_filter1d(qsize, 6.0)


def _j(track, attr="quad", size="qsize"):
    return smoothing.jitter(np.stack([getattr(f, attr) for f in track]), np.array([getattr(f, size) for f in track]))


def measure(path: Path, max_frames: int | None) -> dict:
    rec = _Recording(get_detector("dlib"))
    t0 = time.perf_counter()
    results = [(ff.index, ff.faces) for ff in FaceFrontEnd(rec).process(VideoReader(path, stop=max_frames))]
    elapsed = time.perf_counter() - t0
    tr = _main_track(results)
    if len(tr) < 3:
        return {"frames": len(results), "track": len(tr), "fps": len(results) / elapsed}

    def rerun(**kw):
        fe = FaceFrontEnd(_Replay(rec.detections), **kw)
        return _main_track([(ff.index, ff.faces) for ff in fe.process(VideoReader(path, stop=max_frames))])

    raw = np.stack([f.landmarks_raw for f in tr])
    q_raw, s_raw = np.stack([f.quad_raw for f in tr]), np.array([f.qsize_raw for f in tr])
    q_sm = np.stack([f.quad for f in tr])
    speed = np.r_[0.0, np.linalg.norm(np.diff(q_raw.mean(axis=1), axis=0), axis=1)] / s_raw
    fast = speed >= np.percentile(speed, 90)
    return {
        "frames": len(results), "track": len(tr), "fps": len(results) / elapsed,
        "J raw": _j(tr, "quad_raw", "qsize_raw"), "J gauss": _j(tr),
        "J FS ref": smoothing.jitter(*_fs_reference(raw)), "J gauss fs": _j(rerun(variant="fs_video")),
        "J 1euro": _j(rerun(smoothing="one_euro")),
        "trail": float(smoothing.lag_per_frame(q_raw, q_sm, s_raw)[fast].max()),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos-dir", type=Path, default=REPO.parent / "shared" / "videos")
    ap.add_argument("--only", nargs="*", default=None, help="video names (without .mp4)")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args(argv)
    names = args.only or VIDEOS
    cols = ["frames", "track", "J raw", "J gauss", "J FS ref", "J gauss fs", "J 1euro", "trail", "fps"]
    print(f"{'video':<20}" + "".join(f"{c:>12}" for c in cols))
    for name in names:
        path = args.videos_dir / f"{name}.mp4"
        if not path.exists():
            print(f"{name:<20}  missing: {path}")
            continue
        r = measure(path, args.max_frames)
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{'-':>12}" if v is None else f"{v:>12d}" if isinstance(v, int) else
                         f"{v:>12.2f}" if c == "fps" else f"{v:>12.6f}")
        print(f"{name:<20}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
