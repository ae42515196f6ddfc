"""Throughput of ``vidinv edit`` at the official 1024 configuration: frames/s per stage and end to end,
peak memory (RSS; on CUDA also the peak GPU memory of ``torch.cuda.max_memory_allocated`` /
``max_memory_reserved``), and generator layers run per edited frame, at several batch sizes and
precisions (fp16 / bf16 on CUDA only: on the CPU vidinv runs them in fp32).

The official networks are built at full size (StyleGAN2 1024 config-f, Feature-Style IResNet-50
encoder) with the deterministic weights of ``../shared/parity/fill.py`` (the official files are not
needed), written in the official file formats into a temporary VIDINV_HOME and loaded through the
real loaders. Each row edits the first ``max(--frames, batch)`` frames of a shared real clip
(``--attr smile``, landmark masks, the largest face) in a fresh :func:`vidinv.pipeline.run_edit` (weights
loaded, video decoded, faces detected every time). On CUDA one untimed 2-frame edit per precision comes
first (CUDA context, cuDNN algorithm choice).

Per-stage frames/s are frames / the stage's busy seconds, measured on the host: on CUDA a stage also
waits there for the GPU work it synchronises on (a copy to the host), so GPU time queued by one stage
may be counted in a later one; the end-to-end column is exact either way.

    .venv/bin/python benchmarks/edit_throughput.py [--frames 4] [--batch-sizes 1 4 8] [--device cpu]
    .venv/bin/python benchmarks/edit_throughput.py --device cuda --precisions fp32 fp16 bf16 \\
        --video ../shared/videos/crowd_1080p.mp4 --frames 16 --batch-sizes 1 8 32 --budget-s 170 --markdown t.md

``--budget-s``: a row is skipped (the table says so) when the seconds since the start plus its predicted
time (its frames x the slowest seconds per frame of the rows so far) exceed this. The markdown file is
rewritten after every row, so a run stopped from outside leaves the rows it finished.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
PARITY = SHARED / "parity"
PRECISIONS = ("fp32", "fp16", "bf16")


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
    shutil.copytree(SHARED / "directions", home / "directions", dirs_exist_ok=True)


@dataclass
class Row:
    """One measured (or skipped) setting. ``res``: the :class:`vidinv.pipeline.EditResult`; peaks in MiB."""

    precision: str
    batch: int
    frames: int
    res: object | None = None
    rss_mib: float = 0.0
    gpu_alloc_mib: float | None = None
    gpu_reserved_mib: float | None = None
    skipped: str = ""


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module doc). Errors (argparse): a precision other than fp32/fp16/bf16, a
    batch size or frame count < 1, a negative budget."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(SHARED / "videos" / "greenscreen_frontal.mp4"))
    ap.add_argument("--frames", type=int, default=4, help="frames per row (at least the batch size)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=None,
                    help="default: fp32 fp16 bf16 on CUDA, fp32 elsewhere")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip the rows that would end after this many seconds (predicted)")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown to this file")
    args = ap.parse_args(argv)
    if args.frames < 1 or min(args.batch_sizes) < 1:
        ap.error("--frames and --batch-sizes must be >= 1")
    if args.budget_s is not None and args.budget_s < 0:
        ap.error("--budget-s must be >= 0")
    return args


def run_row(video: str, home: str, row: Row, device: str, fps: float, cuda: bool) -> None:
    """Edit ``row.frames`` frames at ``row.batch`` / ``row.precision`` and fill in the measurements."""
    from vidinv.pipeline import EditOptions, run_edit

    if cuda:  # the peaks of this row only: the previous rows' networks freed, the allocator's cache emptied
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    row.res = run_edit(EditOptions(video, f"{home}/out.mp4", attrs=["smile"], end=(row.frames - 0.5) / fps,
                                   batch_size=row.batch, device=device, precision=row.precision, mask="landmarks"),
                       quiet=True)
    row.rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        torch.cuda.synchronize(device)
        row.gpu_alloc_mib = torch.cuda.max_memory_allocated(device) / 2 ** 20
        row.gpu_reserved_mib = torch.cuda.max_memory_reserved(device) / 2 ** 20


def environment(device: torch.device) -> str:
    """One line: device (GPU name and memory on CUDA), torch / CUDA versions, CPU count."""
    parts = [f"torch {torch.__version__}", f"python {platform.python_version()}", f"{os.cpu_count()} CPUs"]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        parts = [f"{p.name} ({p.total_memory / 2 ** 30:.0f} GiB)", f"CUDA {torch.version.cuda}",
                 f"cuDNN {torch.backends.cudnn.version()}",
                 f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32} / cuDNN {torch.backends.cudnn.allow_tf32}"
                 ] + parts
    else:
        parts = [platform.processor() or platform.machine()] + parts
    return ", ".join(parts)


def fmt_fps(frames: int, seconds: float) -> str:
    return f"{frames / seconds:.2f}" if seconds > 0 else "-"


def markdown(rows: list[Row], stages: list[str], video: str, env: str, cuda: bool) -> str:
    """The table as markdown (one row per setting; skipped rows say why)."""
    cols = (["precision", "batch", "frames", "faces edited"] + [f"{s} fps" for s in stages]
            + ["end-to-end fps", "peak RSS MiB"])
    if cuda:
        cols += ["peak GPU alloc MiB", "peak GPU reserved MiB"]
    cols += ["G layers/frame"]
    out = [f"`vidinv edit` throughput, official 1024 networks (fill.py weights), {Path(video).name}; {env}", "",
           "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r.precision, str(r.batch), str(r.frames)]
        if r.res is None:
            cells += [f"skipped: {r.skipped}"] + [""] * (len(cols) - 4)
        else:
            res = r.res
            cells += [str(res.faces_edited)]
            cells += [fmt_fps(res.frames, res.stage_s.get(s, 0.0)) for s in stages]
            cells += [fmt_fps(res.frames, res.wall_s), f"{r.rss_mib:.0f}"]
            if cuda:
                cells += [f"{r.gpu_alloc_mib:.0f}", f"{r.gpu_reserved_mib:.0f}"]
            cells += [f"{res.layers_per_face or 0:.0f}"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Per-stage fps: frames / the stage's busy seconds on the host (on CUDA a stage's GPU work may be "
            "counted where it is next synchronised); end-to-end fps: frames / wall time of the whole run "
            "(weights loading, decoding and dlib detection on the CPU included); G layers/frame: styled conv "
            "layers the generator ran per edited face (the edit itself: one full synthesis, 17, plus one coarse "
            "pass, 5)."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    from vidinv.device import resolve_device
    from vidinv.io.video import probe

    try:
        dev = resolve_device(args.device)
    except ValueError as e:  # DeviceUnavailableError: CUDA asked for on a machine without it
        print(f"edit_throughput: error: {e}", file=sys.stderr)
        return 2
    cuda = dev.type == "cuda"
    precisions = args.precisions or (list(PRECISIONS) if cuda else ["fp32"])
    if not cuda and precisions != ["fp32"]:
        print(f"note: {' '.join(p for p in precisions if p != 'fp32')} run in fp32 on {dev} (vidinv autocasts on "
              "CUDA only)", file=sys.stderr)
    fps = float(probe(args.video).fps or Fraction(25))
    # batch-major order: with a budget, every precision gets its small-batch rows before the large ones
    rows = [Row(p, bs, max(args.frames, bs)) for bs in args.batch_sizes for p in precisions]
    env = environment(dev)

    def table() -> str:
        done = [r for r in rows if r.res is not None]
        return markdown(rows, list(done[0].res.stage_s) if done else [], args.video, env, cuda)

    def save() -> None:  # after every row, so that a run stopped from outside still leaves its table
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(table(), encoding="utf-8")

    s_per_frame = 0.0  # wall seconds per frame of the rows so far (the largest), to predict the next row
    with tempfile.TemporaryDirectory() as home:
        write_official_bundle(Path(home))
        os.environ["VIDINV_HOME"] = home
        warmed: set[str] = set()
        for row in rows:
            elapsed = time.perf_counter() - t0
            need = s_per_frame * (row.frames + (2 if cuda and row.precision not in warmed else 0))
            if args.budget_s is not None and elapsed + need > args.budget_s:
                row.skipped = f"time budget ({elapsed:.0f} s + ~{need:.0f} s > {args.budget_s:.0f} s)"
                print(f"{row.precision} batch {row.batch}: {row.skipped}", file=sys.stderr, flush=True)
                save()
                continue
            if cuda and row.precision not in warmed:
                run_row(args.video, home, Row(row.precision, 1, 2), str(dev), fps, cuda)
                warmed.add(row.precision)
            run_row(args.video, home, row, str(dev), fps, cuda)
            s_per_frame = max(s_per_frame, row.res.wall_s / max(row.res.frames, 1))
            print(f"{row.precision} batch {row.batch}: {row.res.frames} frames, "
                  f"{row.res.frames / row.res.wall_s:.3f} fps end to end, {time.perf_counter() - t0:.0f} s so far",
                  file=sys.stderr, flush=True)
            save()
    print(table())
    save()
    if args.markdown:
        print(f"table written to {args.markdown}", file=sys.stderr)
    return 0 if any(r.res is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
