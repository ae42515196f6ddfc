"""``vidinv export onnx``: export the StyleGAN2 generator for the compiled back-ends (``--backend onnx`` /
``openvino``)."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import one_line_errors

SUMMARY = ("Export the StyleGAN2 generator to ONNX (cached under $VIDINV_HOME/onnx) for --backend onnx / "
           "openvino, and time it against the eager forward.")


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
@click.option("--threads", type=int, default=None, help="Torch / runtime threads (default: torch's).")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Time one forward eagerly and through each installed runtime; --backend auto uses the record.")
@one_line_errors
def onnx_cmd(generator: Path | None, weights_dir: Path | None, k: int, threads: int | None, measure: bool) -> None:
    """Export the generator's coarse (layers 1..K) and fine (K+1..) parts to ONNX for --backend onnx / openvino.

    The export is cached under $VIDINV_HOME/onnx/<key> (key: the weights' contents and the export settings), so
    jobs with --backend onnx or openvino only pay the runtime's start. With --measure (default) one batch-1
    forward is timed eagerly and through each installed runtime (ONNX Runtime: the onnx extra; OpenVINO: the
    openvino extra) and recorded; --backend auto uses a runtime only where that record says it is faster.
    """
    # torch and the exporter load only when the command runs (`vidinv --help` stays light)
    from vidinv.models.export import RUNTIMES, build_backend, measure_backend, onnx_available, require_onnx
    from vidinv.models.stylegan2 import load_generator
    from vidinv.weights.cache import vidinv_home

    runtimes = [name for name in RUNTIMES if onnx_available(name)]
    if not runtimes:
        require_onnx()  # names the onnx extra
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if generator is None:
        # the registry's generator file (official psp_ffhq_encode.pt)
        from vidinv.inverters import GENERATOR_FILE
        from vidinv.weights import resolve

        generator = resolve([GENERATOR_FILE], weights_dir=weights_dir)[GENERATOR_FILE]
    G, _ = load_generator(generator)
    for i, name in enumerate(runtimes):
        be = build_backend(G, k, cache_dir=vidinv_home() / "onnx", runtime=name)
        folder = be.folder
        assert folder is not None  # build_backend sets it
        if i == 0:
            click.echo(f"export: {folder}")
        if measure:
            rec = measure_backend(G, be, folder, sessions_s=be.sessions_s)
            click.echo(f"batch-1 forward with {rec['threads']} thread(s): eager {rec['eager_s']:.2f} s, {name} "
                       f"{rec[name + '_s']:.2f} s; {name} start {rec[name + '_sessions_s']:.1f} s")
