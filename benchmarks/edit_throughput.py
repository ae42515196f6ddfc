"""Throughput of ``vidinv edit`` at the official 1024 configuration: frames/s per stage and end to end,
peak RSS, and generator layers run per edited frame, at several batch sizes (and fp16/bf16 on CUDA).

The official networks are built at full size (StyleGAN2 1024 config-f, Feature-Style IResNet-50
encoder) with the deterministic weights of ``../shared/parity/fill.py`` (the official files are not
needed), written in the official file formats into a temporary VIDINV_HOME and loaded through the
real loaders. Each row edits the first ``--frames`` frames of a shared real clip.

    .venv/bin/python benchmarks/edit_throughput.py [--frames 4] [--batch-sizes 1 4 8] [--device cpu]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PARITY = REPO.parent / "shared" / "parity"


def write_official_bundle(home: Path) -> None:
    """psp_ffhq_encode.pt (decoder + latent_avg) and 143_enc.pth at official size, filled by fill.py."""
    sys.path.insert(0, str(PARITY))
    from fill import fill_state_dict

    from vidinv.models.fs_encoder import FeatureStyleEncoder
    from vidinv.models.stylegan2 import Generator

    w = home / "weights"
    w.mkdir(parents=True, exist_ok=True)
    G = Generator(1024, 512, 8, channel_multiplier=2)
    sd = fill_state_dict(G.state_dict(), mode="equalized")
    torch.save({"state_dict": {f"decoder.{k}": v for k, v in sd.items()}, "latent_avg": torch.zeros(18, 512),
                "opts": {"output_size": 1024}}, w / "psp_ffhq_encode.pt")
    del G, sd
    enc = FeatureStyleEncoder()
    torch.save(fill_state_dict(enc.state_dict(), mode="standard"), w / "143_enc.pth")
    import shutil

    shutil.copytree(REPO.parent / "shared" / "directions", home / "directions", dirs_exist_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(REPO.parent / "shared" / "videos" / "greenscreen_frontal.mp4"))
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import os

    from vidinv.pipeline import EditOptions, run_edit
    from vidinv.io.video import probe

    fps = float(probe(args.video).fps or Fraction(25))
    cuda = torch.cuda.is_available() and args.device != "cpu"
    precisions = ["fp32", "fp16", "bf16"] if cuda else ["fp32"]
    rows = []
    with tempfile.TemporaryDirectory() as home:
        write_official_bundle(Path(home))
        os.environ["VIDINV_HOME"] = home
        for prec in precisions:
            for bs in args.batch_sizes:
                n = max(args.frames, bs)
                res = run_edit(EditOptions(args.video, f"{home}/out.mp4", attrs=["smile"], end=(n - 0.5) / fps,
                                           batch_size=bs, device=args.device, precision=prec, mask="landmarks"),
                               quiet=True)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows.append((prec, bs, res, rss))
    dev = "cuda" if cuda else "cpu"
    stages = list(rows[0][2].stage_s)
    head = f"{'device':<6} {'prec':<5} {'batch':>5} " + " ".join(f"{s:>9}" for s in stages) + \
        f" {'e2e fps':>8} {'peakRSS MiB':>12} {'layers/frame':>12}"
    print(f"video {args.video}, frames/s per stage (busy time) and end to end")
    print(head)
    for prec, bs, res, rss in rows:
        cells = " ".join(f"{res.frames / s if s > 0 else float('inf'):9.2f}" for s in res.stage_s.values())
        print(f"{dev:<6} {prec:<5} {bs:>5} {cells} {res.frames / res.wall_s:8.3f} {rss:12.0f} "
              f"{res.layers_per_face or 0:12.0f}")
    print("layers/frame = styled conv layers per edited frame: one full synthesis (17) + one coarse pass (5)")


if __name__ == "__main__":
    main()
