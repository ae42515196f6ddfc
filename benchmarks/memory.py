"""Peak resident memory of ``vidinv edit`` for a 300-frame vs a 60-frame clip (must be within 20%).

Runs the real CLI in a fresh subprocess per clip length (tiny model bundle of tests/tiny_bundle.py in a
temporary VIDINV_HOME; the first N frames of a shared real video via --end) and reads the child's peak
RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, one child at a time).

    .venv/bin/python benchmarks/memory.py [--video ../shared/videos/talking_wink.mp4] [--frames 60 300]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def peak_rss_mb(cmd: list[str], env: dict) -> float:
    """Run ``cmd`` in a wrapper process and return its peak RSS in MiB."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], env=env, cwd=REPO, check=True, capture_output=True,
                         text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(REPO.parent / "shared" / "videos" / "talking_wink.mp4"))
    ap.add_argument("--frames", type=int, nargs=2, default=(60, 300))
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    from tiny_bundle import write_tiny_bundle

    from vidinv.io.video import probe

    fps = probe(args.video).fps or Fraction(30)
    with tempfile.TemporaryDirectory() as home:
        write_tiny_bundle(home)
        env = dict(os.environ, VIDINV_HOME=home, PYTHONPATH=str(REPO))
        rows = []
        for n in args.frames:
            end = (n - 0.5) / float(fps)
            cmd = [sys.executable, "-m", "vidinv.cli", "edit", args.video, "-o", f"{home}/out_{n}.mp4", "--attr", "smile",
                   "--end", f"{end:.4f}", "--batch-size", str(args.batch_size), "--device", "cpu", "-q"]
            rows.append((n, peak_rss_mb(cmd, env)))
    print(f"video: {args.video}")
    print("frames   peak RSS (MiB)")
    for n, mb in rows:
        print(f"{n:6d}   {mb:10.1f}")
    (n0, a), (n1, b) = rows
    ratio = b / a
    print(f"ratio {n1}/{n0} frames: {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.2 else 'NOT within'} 20%)")


if __name__ == "__main__":
    main()
