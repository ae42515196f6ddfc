"""How far the StyleGAN2 generator forward is from this CPU's compute bound, in one run.

For each thread count it measures, in ``--rounds`` interleaved rounds (each round: the bound, the conv floor, then
one forward per back-end, so that all of them see the machine at the same speed), and prints:

* the FLOPs of one generator forward at batch 1 (PyTorch's FLOP counter, ``torch.utils.flop_counter.
  FlopCounterMode``: 2 FLOPs per multiply-add of the convolutions and matrix products, at their real shapes);
* ``best conv GFLOP/s``: this machine's best dense convolution throughput (the fastest of plain 3x3 / 1x1
  ``conv2d`` at the generator's channel widths and resolutions, batch 1), median over rounds;
* ``bound s`` = FLOPs / best GFLOP/s, and ``floor s``: the generator's 3x3 convolutions alone, as plain dense convs
  at their real shapes in their faster layout (:func:`real_shape_convs_s`), with ``floor/bound``;
* per back-end: the median forward (``median s``), ``ratio`` = the median over rounds of forward / bound of the
  same round, its range, ``best ratio`` (the fastest forward over the fastest bound of all rounds) and ``/ floor``
  (the median over rounds of forward / floor).

Each measurement in a round is the best of ``--repeats`` calls (default 1). The per-round ratio is the figure to
quote on a machine whose speed drifts: the bound and the forward are measured seconds apart. The official 1024
config-f generator is built with random weights (timing does not depend on their values).

With ``--backend eager onnx openvino`` one row per back-end and thread count: ``onnx`` / ``openvino`` run the
same forward through ONNX Runtime / OpenVINO (:mod:`vidinv.models.export`; exported into a temporary folder, so
the first compiled row's ``first call`` column is the real cost a new weights file pays: export + start, then
the runtime's start alone for the other rows).

    .venv/bin/python benchmarks/bound.py [--size 1024] [--threads 1 2] [--rounds 5] [--repeats 1]
        [--backend eager onnx openvino] [--clock wall|cpu]

Run it on a quiet machine: other processes on the cores inflate every time. ``--clock cpu`` times with the
process's CPU time instead of the wall clock (less sensitive to a shared machine, meaningful at 1 thread).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import vidinv  # noqa: E402,F401  (before torch allocates: huge-page CPU buffers, see vidinv's module doc)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vidinv.models.stylegan2 import Generator  # noqa: E402  (after the path set-up, as a script)


def generator_flops(G: Generator) -> int:
    """FLOPs of one ``G.synthesis`` at batch 1 with the constant noise (PyTorch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    w = torch.randn(1, G.n_latent, G.style_dim)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        G.synthesis(w)
    return int(counter.get_total_flops())


def dense_conv_shapes(G: Generator) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, kernel, resolution) of the generator's plain 3x3 convolutions and 1x1 ToRGBs."""
    shapes = []
    layers = [G.conv1, *G.convs]
    for j, layer in enumerate(layers, start=1):
        conv = layer.conv
        shapes.append((conv.in_channel, conv.out_channel, conv.kernel_size, G.feature_shape(j)[1]))
    for rgb, j in zip([G.to_rgb1, *G.to_rgbs], range(1, G.num_layers + 1, 2)):
        shapes.append((rgb.conv.in_channel, 3, 1, G.feature_shape(j)[1]))
    return sorted(set(shapes))


CLOCK = time.perf_counter


def best_conv_gflops(shapes, repeats: int) -> tuple[float, tuple]:
    """The fastest GFLOP/s of plain ``conv2d`` (batch 1, float32, default layout) over ``shapes``."""
    best, arg = 0.0, None
    for cin, cout, k, res in shapes:
        x = torch.randn(1, cin, res, res)
        wt = torch.randn(cout, cin, k, k)
        flops = 2 * cin * cout * k * k * res * res
        F.conv2d(x, wt, padding=k // 2)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = CLOCK()
            F.conv2d(x, wt, padding=k // 2)
            times.append(CLOCK() - t0)
        g = flops / min(times) / 1e9
        if g > best:
            best, arg = g, (cin, cout, k, res)
    return best, arg


def real_shape_convs_s(G: Generator, repeats: int) -> float:
    """Seconds of the generator's 3x3 convolutions run as plain dense convs at their real shapes (batch 1; the
    upsampling ones as stride-2 transposed convs), each in its faster layout (default or channels-last), best of
    ``repeats``: what a forward would cost if it were only its convolutions, at the rate oneDNN reaches at
    those shapes (the narrow high-resolution layers run far below the best-shape rate of the bound)."""
    total = 0.0
    for j, layer in enumerate([G.conv1, *G.convs], start=1):
        conv, res = layer.conv, G.feature_shape(j)[1]
        if conv.upsample:
            x = torch.randn(1, conv.in_channel, res // 2, res // 2)
            wt = torch.randn(conv.in_channel, conv.out_channel, 3, 3)
        else:
            x, wt = torch.randn(1, conv.in_channel, res, res), torch.randn(conv.out_channel, conv.in_channel, 3, 3)
        best = float("inf")
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf, wf = x.contiguous(memory_format=fmt), wt.contiguous(memory_format=fmt)
            for i in range(repeats + 1):  # the first call is a warm-up
                t0 = CLOCK()
                if conv.upsample:
                    F.conv_transpose2d(xf, wf, stride=2)
                else:
                    F.conv2d(xf, wf, padding=1)
                if i:
                    best = min(best, CLOCK() - t0)
        total += best
    return total


def time_forward(G: Generator, repeats: int, warmup: bool = True) -> tuple[float, float]:
    """(median, best) seconds of ``G.synthesis`` at batch 1 over ``repeats`` calls (after one warm-up forward
    unless ``warmup`` is False)."""
    w = torch.randn(1, G.n_latent, G.style_dim)
    with torch.inference_mode():
        if warmup:
            G.synthesis(w)
        times = []
        for _ in range(repeats):
            t0 = CLOCK()
            G.synthesis(w)
            times.append(CLOCK() - t0)
    return statistics.median(times), min(times)


def _build(G: Generator, name: str, folder: str) -> tuple[object, str]:
    """Back-end ``name`` for ``G`` (None for eager) and its first-call cost as printed (export + start, wall
    clock; the export is cached in ``folder``, so a later thread count pays the runtime's start alone)."""
    if name == "eager":
        return None, "-"
    from vidinv.models.export import build_backend

    t0 = time.perf_counter()
    backend = build_backend(G, cache_dir=folder, log=None, runtime=name)
    return backend, f"{time.perf_counter() - t0:.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="generator resolution (1024 = official)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds: each measures the bound, the conv floor and every back-end once")
    ap.add_argument("--repeats", type=int, default=1, help="calls per measurement within a round (best kept)")
    ap.add_argument("--backend", nargs="+", default=["eager"], choices=["eager", "onnx", "openvino"],
                    help="generator back-ends to time (onnx: ONNX Runtime, openvino: OpenVINO; their extras)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall clock, or the process's CPU time (steadier on a shared machine at 1 thread)")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    torch.manual_seed(0)
    G = Generator(args.size, 512, 8, channel_multiplier=2).eval()
    flops = generator_flops(G)
    shapes = dense_conv_shapes(G)
    print(f"generator {args.size}: {flops / 1e9:.1f} GFLOP per forward (batch 1, PyTorch FLOP counter); "
          f"{args.rounds} interleaved rounds, {args.clock} clock")
    print(f"{'threads':>7}  {'best conv GFLOP/s':>17}  {'bound s':>7}  {'floor s':>7}  {'floor/bound':>11}  "
          f"{'backend':>8}  {'median s':>8}  {'ratio':>5}  {'ratio range':>11}  {'best ratio':>10}  "
          f"{'/ floor':>7}  first call s")
    tmp = tempfile.TemporaryDirectory(prefix="vidinv_bound_")
    for n in args.threads:
        torch.set_num_threads(n)
        backends, first = {}, {}
        for name in args.backend:  # export / start, then one warm-up forward each
            backends[name], first[name] = _build(G, name, tmp.name)
            G.backend = backends[name]
            time_forward(G, 1)
        G.backend = None
        gflops, bounds, floors = [], [], []
        fwd: dict[str, list[float]] = {name: [] for name in args.backend}
        for _ in range(args.rounds):
            best, _arg = best_conv_gflops(shapes, args.repeats)
            gflops.append(best)
            bounds.append(flops / (best * 1e9))
            floors.append(real_shape_convs_s(G, args.repeats))
            for name in args.backend:
                G.backend = backends[name]
                fwd[name].append(time_forward(G, args.repeats, warmup=False)[1])
            G.backend = None
        for name in args.backend:
            ratios = [t / b for t, b in zip(fwd[name], bounds)]
            per_floor = [t / f for t, f in zip(fwd[name], floors)]
            rng = f"{min(ratios):.2f}-{max(ratios):.2f}"
            print(f"{n:>7}  {statistics.median(gflops):>17.1f}  {statistics.median(bounds):>7.2f}  "
                  f"{statistics.median(floors):>7.2f}  {statistics.median([f / b for f, b in zip(floors, bounds)]):>11.2f}  "
                  f"{name:>8}  {statistics.median(fwd[name]):>8.2f}  {statistics.median(ratios):>5.2f}  {rng:>11}  "
                  f"{min(fwd[name]) / min(bounds):>10.2f}  {statistics.median(per_floor):>7.2f}  {first[name]}",
                  flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
