"""CPU (or GPU) seconds per pivotal-tuning update and per stitching-tuning update at the official size.

The generator is StyleGAN2 1024 config-f with random weights (timing does not depend on their values);
LPIPS uses an AlexNet backbone with random weights written to a temporary file (the pretrained file is not
needed for timing). One face, batch 1, STIT's losses (:mod:`vidinv.pipeline.tuning`).

    .venv/bin/python benchmarks/tuning_step.py [--threads 2] [--updates 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidinv.metrics.image import LPIPSMetric  # noqa: E402  (after the path set-up, as a script)
from vidinv.models.stylegan2 import Generator  # noqa: E402
from vidinv.pipeline.tuning import TuneOptions, TuneSample, run_pti, stitch_face  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--updates", type=int, default=2, help="updates timed (the first includes set-up)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    G = Generator(1024, 512, 8, channel_multiplier=2).eval().to(dev)
    avg = G.mean_latent(64)[0].repeat(G.n_latent, 1)
    feats = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    backbone = Path(tempfile.mkdtemp()) / "alexnet-owt-7be5be79.pth"
    torch.save(feats, backbone)
    lpips_net = LPIPSMetric(net="alex", backbone_path=backbone, device=dev).model
    rng = np.random.default_rng(0)
    w = (avg.cpu() + 0.1 * torch.randn(G.n_latent, 512)).numpy()
    sample = TuneSample(0, 0, np.zeros((4, 2)), np.zeros((68, 2)), w, None,
                        rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    times = []
    for n in (1, 1 + args.updates):
        t0 = time.perf_counter()
        run_pti(G, avg, None, [sample], lpips_net, TuneOptions(mode="pti", steps=n))
        times.append(time.perf_counter() - t0)
    print(f"PTI: {(times[1] - times[0]) / args.updates:.2f} s per update (1024, batch 1, {args.threads} threads)")
    wt = torch.from_numpy(w)[None].to(dev)
    with torch.no_grad():
        img = G.synthesis(wt)
    inner = torch.zeros(1, 1, 1024, 1024, device=dev)
    inner[..., 100:900, 100:900] = 1
    times = []
    for n in (1, 1 + args.updates):
        t0 = time.perf_counter()
        stitch_face(G, wt, None, None, img, img, 1 - inner, inner, steps=n)
        times.append(time.perf_counter() - t0)
    print(f"stitching: {(times[1] - times[0]) / args.updates:.2f} s per update")


if __name__ == "__main__":
    main()
