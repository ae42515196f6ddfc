"""Before / after, in one run on one machine: the generator forward and one full per-face edit at a git revision
against the working tree, alternating.

Both sides load the same official-size networks (StyleGAN2 1024 config-f and the Feature-Style encoder, with the
deterministic weights of ``../shared/parity/fill.py``, written once in the official file formats as
``benchmarks/edit_throughput.py`` does) through their own loaders. The revision ``--base`` is extracted with
``git archive`` into a temporary folder; each measurement runs in a fresh subprocess whose ``sys.path`` starts
with that side's tree, and the two sides alternate (base, work, base, work, ...) so that a load change on a
shared machine hits both. Per subprocess: one warm-up, then ``--repeats`` timed calls of

* ``forward``: ``G.synthesis(w)`` at batch 1 (constant noise);
* ``edit``: one aligned 256x256 face through the encoder and the edit rule (``inverter.encode`` +
  ``inverter.edit`` with a random Δw: ``F' = F + G^5(w') - G^5(w)``, ``G(w', F')``).

It prints every measurement, then per row the median over rounds of each side's best, and the speed-up.

    .venv/bin/python benchmarks/before_after.py [--base 594772c] [--threads 1] [--rounds 3] [--repeats 2]
        [--clock wall|cpu] [--backend eager|onnx|openvino]

Run it on a quiet machine; ``--clock cpu`` (process CPU time) is steadier on a shared one at 1 thread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: the environment this script was started with, before anything here imports vidinv (whose import sets
#: THP_MEM_ALLOC_ENABLE): each side's subprocess starts from it, so that each side's own code decides.
START_ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]
PARITY = REPO.parent / "shared" / "parity"


def write_weights(home: Path) -> dict[str, str]:
    """psp_ffhq_encode.pt (decoder + latent_avg) and 143_enc.pth at official size, filled by fill.py."""
    import torch

    sys.path.insert(0, str(PARITY))
    sys.path.insert(0, str(REPO))
    from fill import fill_state_dict

    from vidinv.models.fs_encoder import FeatureStyleEncoder
    from vidinv.models.stylegan2 import Generator

    home.mkdir(parents=True, exist_ok=True)
    G = Generator(1024, 512, 8, channel_multiplier=2)
    sd = fill_state_dict(G.state_dict(), mode="equalized")
    gen = home / "psp_ffhq_encode.pt"
    torch.save({"state_dict": {f"decoder.{k}": v for k, v in sd.items()}, "latent_avg": torch.zeros(18, 512),
                "opts": {"output_size": 1024}}, gen)
    del G, sd
    enc = home / "143_enc.pth"
    torch.save(fill_state_dict(FeatureStyleEncoder().state_dict(), mode="standard"), enc)
    return {"psp_ffhq_encode.pt": str(gen), "143_enc.pth": str(enc)}


def extract(rev: str, dest: Path) -> Path:
    """``git archive REV`` of this repository, unpacked into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(tar), rev], check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def worker(args) -> None:
    """One side, one round: load, warm up, time; print one JSON line."""
    sys.path.insert(0, args.root)
    import time

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    from vidinv.inverters import build_inverter

    paths = {k: Path(v) for k, v in json.loads(args.paths).items()}
    inv = build_inverter("fs", paths)
    G = inv.generator
    assert Path(sys.modules["vidinv"].__file__).is_relative_to(args.root), "imported the wrong tree"
    if args.backend != "eager":
        from vidinv.models.export import attach_backend

        attach_backend(G, args.backend, cache_dir=args.cache)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, G.n_latent, G.style_dim, generator=g)
    crop = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    dw = 0.5 * torch.randn(1, G.n_latent, G.style_dim, generator=g)

    def forward():
        with torch.inference_mode():
            G.synthesis(w)

    def edit():
        wc, F = inv.encode(crop)
        with torch.inference_mode():
            inv.edit(wc, F, dw)

    out = {}
    for name, fn in (("forward", forward), ("edit", edit)):
        fn()
        times = []
        for _ in range(args.repeats):
            t0 = clock()
            fn()
            times.append(clock() - t0)
        out[name] = min(times)
    print(json.dumps(out), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="594772c", help="git revision to compare the working tree with")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating subprocess pairs")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per subprocess (best is kept)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--backend", choices=["eager", "onnx", "openvino"], default="eager",
                    help="the working tree's back-end")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--paths", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="vidinv_before_after_") as tmp:
        tmpd = Path(tmp)
        base = extract(args.base, tmpd / "base")
        paths = json.dumps(write_weights(tmpd / "weights"))
        sides = {f"base {args.base}": (base, "eager"), "work tree": (REPO, args.backend)}
        warm = 1 if args.backend != "eager" else 0  # a first round exports, untimed (first-call cost: bound.py)
        results: dict[str, list[dict]] = {k: [] for k in sides}
        env = {**START_ENV, "PYTHONPATH": ""}
        for r in range(warm + args.rounds):
            for label, (root, backend) in sides.items():
                cmd = [sys.executable, __file__, "--worker", "--root", str(root), "--paths", paths, "--threads",
                       str(args.threads), "--repeats", str(args.repeats), "--clock", args.clock, "--backend", backend,
                       "--cache", str(tmpd / "onnx")]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmpd))
                if p.returncode != 0:
                    sys.exit(f"{label} failed:\n{p.stderr[-3000:]}")
                rec = json.loads(p.stdout.strip().splitlines()[-1])
                if r < warm:
                    continue  # the round that exported: not timed
                results[label].append(rec)
                print(f"round {r}: {label:>16}: " + "  ".join(f"{k} {v:.2f} s" for k, v in rec.items()), flush=True)
        (b_label, b), (w_label, wk) = list(results.items())
        print(f"\n{args.threads} thread(s), {args.clock} clock, median over {len(b)} rounds of the best of "
              f"{args.repeats}; work tree back-end {args.backend}")
        for row in ("forward", "edit"):
            tb = statistics.median(x[row] for x in b)
            tw = statistics.median(x[row] for x in wk)
            print(f"{row:>8}: {b_label} {tb:.2f} s   {w_label} {tw:.2f} s   speed-up {tb / tw:.2f}x")


if __name__ == "__main__":
    main()
