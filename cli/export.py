"""``vidinv export onnx``: export the StyleGAN2 generator for the ONNX Runtime back-end (``--backend onnx``)."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import one_line_errors

SUMMARY = ("Export the StyleGAN2 generator to ONNX (cached under $VIDINV_HOME/onnx) for --backend onnx, and time "
           "it against the eager forward.")


@click.group("export", help=SUMMARY)
def export() -> None:
    pass


@export.command("onnx")
@click.option("--generator", "generator", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Generator checkpoint (default: psp_ffhq_encode.pt from --weights-dir or the cache).")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of weight files, searched before the cache.")
@click.option("--k", "k", type=int, default=5, show_default=True,
              help="Feature index the edit injects at (5 for the Feature-Style encoder).")
@click.option("--threads", type=int, default=None, help="Torch / ONNX Runtime threads (default: torch's).")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Time one forward eagerly and through ONNX Runtime; --backend auto uses the record.")
@one_line_errors
def onnx_cmd(generator: Path | None, weights_dir: Path | None, k: int, threads: int | None, measure: bool) -> None:
    """Export the generator's coarse (layers 1..K) and fine (K+1..) parts to ONNX for --backend onnx.

    The export is cached under $VIDINV_HOME/onnx/<key> (key: the weights' contents and the export settings), so
    jobs with --backend onnx only pay the ONNX Runtime session start. With --measure (default) one batch-1 forward
    is timed both ways and recorded; --backend auto uses ONNX Runtime only where that record says it is faster.
    """
    # torch and the exporter load only when the command runs (`vidinv --help` stays light)
    from vidinv.models.export import build_backend, measure_backend, require_onnx
    from vidinv.models.stylegan2 import load_generator
    from vidinv.weights.cache import vidinv_home

    require_onnx()
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if generator is None:
        # the registry's generator file (official psp_ffhq_encode.pt)
        from vidinv.inverters import GENERATOR_FILE
        from vidinv.weights import resolve

        generator = resolve([GENERATOR_FILE], weights_dir=weights_dir)[GENERATOR_FILE]
    G, _ = load_generator(generator)
    be = build_backend(G, k, cache_dir=vidinv_home() / "onnx")
    folder = be.folder
    assert folder is not None  # build_backend sets it
    click.echo(f"export: {folder}")
    if measure:
        rec = measure_backend(G, be, folder, sessions_s=be.sessions_s)
        click.echo(f"batch-1 forward with {rec['threads']} thread(s): eager {rec['eager_s']:.2f} s, onnx "
                   f"{rec['onnx_s']:.2f} s; sessions start {rec['sessions_s']:.1f} s")
