"""``vidinv directions list | info | sefa``: the editing directions vidinv knows and SeFa directions."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import fail, format_table, one_line_errors
from vidinv.edit import attributes as attr_mod
from vidinv.edit.directions import CONVENTIONS, DirectionError, format_layers, load_direction_file

weights_dir_option = click.option(
    "--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of files placed by hand, searched before the cache (DIR/featurestyle/..., DIR/stit_w/..., "
         "DIR/e4e/...).")


@click.group("directions")
def directions() -> None:
    """Latent editing directions: named attributes, their sources and conventions, SeFa.

    An edit is NAME (default source) or SOURCE:NAME (fs:smile, stit:smile, e4e:smile,
    ganspace:smile, ganspace:pc12), with a strength and optionally style rows: smile=1@0-7.
    """


@directions.command("list")
@weights_dir_option
@click.option("--source", type=click.Choice(list(attr_mod.SOURCES)), default=None, help="Only this source.")
def list_cmd(weights_dir: Path | None, source: str | None) -> None:
    """Every attribute with its sources, files, conventions and what --strength 1 means."""
    rows = [r for r in attr_mod.listing(weights_dir) if source is None or r["spec"].startswith(source + ":")]
    table = [[r["spec"], r["default"], r["convention"], r["rows"], r["factor"], r["status"], r["file"], r["upstream"]]
             for r in rows]
    headers = ["NAME", "DEFAULT", "CONV", "ROWS", "S=1 NATIVE", "STATUS", "FILE", "AUTHORS' SETTING"]
    click.echo(format_table(table, headers))
    click.echo("")
    click.echo("DEFAULT *: the source a bare NAME uses. ganspace:pc0 .. ganspace:pc79: GANSpace component k on all "
               "rows (convention unit).")
    click.echo("S=1 NATIVE: the factor f of the source's own w + f*d at strength 1 (GANSpace: std units).")
    click.echo("Conventions:")
    for k, v in CONVENTIONS.items():
        click.echo(f"  {k:<5} {v}")
    click.echo("")
    click.echo(attr_mod.strength_table())
    missing = sum(1 for r in rows if r["status"] != "present")
    if missing:
        click.echo(f"\n{missing} direction file(s) not present yet: `vidinv weights fetch featurestyle stit_w e4e`.")


@directions.command("info")
@click.argument("name")
@click.option("--convention", type=click.Choice(list(CONVENTIONS)), default=None,
              help="NAME is a file of your own (.npy/.pt) with this convention.")
@click.option("--layers", default=None, help="Style rows, e.g. 0-7 (inclusive ranges, comma-separated).")
@click.option("--strength", type=float, default=1.0, show_default=True)
@weights_dir_option
@click.option("--fetch", is_flag=True, help="Download the direction file if it is missing.")
def info_cmd(name: str, convention: str | None, layers: str | None, strength: float, weights_dir: Path | None,
             fetch: bool) -> None:
    """Shape, convention and size of the W+ step of NAME (an attribute, or a FILE with --convention)."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.weights import MissingWeightsError, WeightHashMismatchError

    try:
        if convention is not None:
            d = load_direction_file(name, convention)
        else:
            d = attr_mod.load_attribute(name, weights_dir=weights_dir, fetch=fetch)
        st = d.stats(strength, layers)
    except DirectionError as exc:
        fail(str(exc))
    except (MissingWeightsError, WeightHashMismatchError) as exc:
        fail(exc)
    click.echo(f"{d.name}: {d.description}")
    click.echo(f"  file:        {d.path}")
    stored = "one vector per style row" if d.per_row else "one W vector, every row"
    click.echo(f"  stored:      {tuple(d.vector.shape)} ({stored})")
    click.echo(f"  convention:  {d.convention}: {CONVENTIONS[d.convention]}")
    click.echo(f"  strength {strength:g}: native factor {d.native_factor(strength):.4g}; |dw| over W+ "
               f"{st['frobenius']:.3f}, per edited row mean {st['row_mean']:.3f} (max {st['row_max']:.3f}), "
               f"{st['rows']} row(s)")


@directions.command("sefa")
@click.option("--top", type=click.IntRange(1, 512), default=10, show_default=True, help="Number of directions N.")
@click.option("--layers", default=None,
              help="W+ rows whose style layers are factorized, e.g. 0-3 (default: all styled conv rows, 0-16 at "
                   "1024).")
@click.option("--torgb", is_flag=True, help="Also factorize the ToRGB style layers of those rows.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Generator checkpoint (pSp .pt, rosinality .pt or a plain state_dict); default: the decoder "
                   "of psp_ffhq_encode.pt (the Feature-Style encoder's generator).")
@weights_dir_option
@click.option("--fetch", is_flag=True, help="Download psp_ffhq_encode.pt if it is missing.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder for sefa_<i>.npy and sefa.json.")
@click.option("--prefix", default="sefa", show_default=True, help="File name prefix.")
@one_line_errors
def sefa_cmd(top: int, layers: str | None, torgb: bool, checkpoint: Path | None, weights_dir: Path | None,
             fetch: bool, out_dir: Path, prefix: str) -> None:
    """Write the top-N SeFa directions (Shen & Zhou, CVPR 2021) as --direction files.

    Each sefa_<i>.npy is (18, 512) float32: the unit eigenvector on the factorized rows, 0 elsewhere.
    Use it with `vidinv edit --direction FILE` and convention raw (strength = SeFa distance on each
    of those rows) or unit (|dw| = 15*strength). sefa.json lists the eigenvalues and rows.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.edit.sefa import sefa
    from vidinv.io.checkpoints import CheckpointError
    from vidinv.io.outputs import check_output, check_torch_file
    from vidinv.models.stylegan2 import load_generator
    from vidinv.weights import MissingWeightsError, resolve

    members = (f"{prefix}_*.npy", f"{prefix}.json")
    try:
        # the files first: nothing is loaded or downloaded for a bad checkpoint or output folder
        if checkpoint is not None:
            check_torch_file(checkpoint, "checkpoint")
        check_output(out_dir, [checkpoint], kind="dir", members=members)
        if checkpoint is None:
            checkpoint = resolve(["psp_ffhq_encode.pt"], weights_dir=weights_dir, fetch=fetch)["psp_ffhq_encode.pt"]
            check_output(out_dir, [checkpoint], kind="dir", members=members)
        G, _ = load_generator(checkpoint)
        res = sefa(G, top=top, rows=layers, include_torgb=torgb, source=str(checkpoint))
    except (MissingWeightsError, CheckpointError, DirectionError, ValueError) as exc:
        fail(exc)
    paths = res.save(out_dir, prefix=prefix)
    ev = ", ".join(f"{float(v):.3g}" for v in res.eigenvalues[: min(5, len(res))])
    click.echo(f"wrote {len(paths)} direction(s) to {out_dir} (rows {format_layers(res.rows)}, "
               f"{len(res.modules)} style layer(s); eigenvalues {ev}{', ...' if len(res) > 5 else ''})")
    click.echo(f"use: vidinv edit --direction {paths[0]} (convention raw: strength = SeFa distance)")
