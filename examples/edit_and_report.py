"""Edit a video from Python and write its identity/quality report.

    python examples/edit_and_report.py IN.mp4 OUT.mp4 [--attr smile=2 --attr stit:age=-0.5]

The same as ``vidinv edit IN.mp4 -o OUT.mp4 --attr ... --report OUT_report/``, through the library API:
:class:`vidinv.pipeline.edit.EditOptions` / :func:`~vidinv.pipeline.edit.run_edit` and
:func:`vidinv.report.run_report`. The official weights must be in ``$VIDINV_HOME`` (``vidinv weights
fetch --for edit``); otherwise the run stops before reading the video with the list of missing files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vidinv.pipeline.edit import EditOptions, run_edit
from vidinv.report import run_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--attr", action="append", default=None, help="NAME[=S][@ROWS], repeatable (default smile=2)")
    ap.add_argument("--face", choices=["largest", "all"], default="largest")
    args = ap.parse_args()

    opts = EditOptions(src=args.src, dst=args.dst, attrs=args.attr or ["smile=2"], face=args.face)
    res = run_edit(opts)
    print(f"{args.dst}: {res.frames} frames, {res.frames_edited} edited faces in {len(res.tracks)} track(s)")

    report_dir = args.dst.with_name(args.dst.stem + "_report")
    doc = run_report([args.src], [args.dst], report_dir)
    for cmp in doc["comparisons"]:
        for network, ident in cmp["identity"].items():  # one entry per identity network (dlib, ArcFace)
            print(f"{network}: identity similarity {ident['similarity']}, "
                  f"consistency source {ident['consistency_source']} -> output {ident['consistency_output']}")
    print(f"report: {report_dir / 'report.html'}")


if __name__ == "__main__":
    main()
