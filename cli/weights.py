"""``vidinv weights list | fetch | verify | path``: the official files vidinv uses."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import fail, format_table, one_line_errors
from vidinv.weights import cache, registry, resolver
from vidinv.weights import fetch as fetch_mod
from vidinv.weights.registry import RESTRICTED_TERMS, TERMS, USES, UnknownWeightError, WeightFile
from vidinv.weights.resolver import ENV_ALLOW_HASH_MISMATCH, MissingWeightsError, WeightHashMismatchError

_KINDS = ("weights", "direction", "external")

weights_dir_option = click.option(
    "--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of files placed by hand, searched before the cache (DIR/<file>; directions as "
         "DIR/<folder>/<file>).")


#: Where vidinv's own licence is (none of the weight files is covered by it).
OWN_LICENCE = ("vidinv's own code is MIT: see the LICENSE file of the vidinv repository; the files above are not "
               "covered by it.")


def _expand(names: tuple[str, ...]) -> list[str]:
    try:
        expanded = registry.expand_names(names)
    except UnknownWeightError as exc:
        fail(str(exc))
    return expanded


@click.group("weights")
def weights() -> None:
    """List, fetch and verify the official weights and directions.

    Files are cached in $VIDINV_HOME (default ~/.cache/vidinv): weights/<name> and
    directions/<folder>/<file>. Set $VIDINV_MIRROR to a base URL to download from a mirror laid out
    like the cache.

    Licences: every file keeps its source's licence (`vidinv weights list` shows them; --long quotes
    them). The Feature-Style encoder (143_enc.pth) and its boundaries are under InterDigital's evaluation
    licence (fundamental research only); the STIT directions are CC BY-NC 4.0 (Yandex LLC); the
    FFHQ-derived models (StyleGAN2 FFHQ, pSp) are non-commercial. vidinv's own code is MIT (LICENSE).
    """


@weights.command("list")
@weights_dir_option
@click.option("--kind", type=click.Choice(_KINDS), default=None, help="Only this kind of file.")
@click.option("--for", "use", type=click.Choice(list(USES)), default=None, help="Only files needed for this use.")
@click.option("-l", "--long", "long_", is_flag=True, help="One block per file: source URL, sha256, licence notes.")
def list_cmd(weights_dir: Path | None, kind: str | None, use: str | None, long_: bool) -> None:
    """Table of every file vidinv can use: status, path, size, licence, what needs it."""
    entries = registry.files_for(use) if use else registry.all_files()
    if kind:
        entries = [e for e in entries if e.kind == kind]
    home = cache.vidinv_home()
    click.echo(f"cache: {home}" + (f"   weights-dir: {weights_dir}" if weights_dir else ""))
    rows = []
    for e in entries:
        st, path = resolver.status(e, weights_dir)
        rows.append([e.name, st, e.size_text, e.licence, ", ".join(e.uses), str(path) if path else "-"])
        if long_:
            click.echo("")
            click.echo(f"{e.name}  [{e.kind}]  {st}")
            click.echo(f"  what:       {e.description}")
            click.echo(f"  needed by:  {e.needed_by}  (uses: {', '.join(e.uses)})")
            click.echo(f"  size:       {e.size_text}" + ("" if e.size_exact or e.size is None
                                                          else " (approximate)"))
            click.echo(f"  licence:    {e.licence}")
            click.echo(f"  terms:      {e.terms}{' (restricted)' if e.restricted else ''}: {TERMS[e.terms]}")
            if e.licence_note:
                click.echo(f"              {e.licence_note}")
            if e.licence_file or e.licence_url:
                click.echo(f"  licence file: {e.licence_file or '-'}  {e.licence_url or ''}".rstrip())
            if e.source_url:
                click.echo(f"  source:     {e.source_url}")
            if e.sha256:
                click.echo(f"  sha256:     {e.sha256}")
            elif e.sha256_prefix:
                click.echo(f"  sha256:     {e.sha256_prefix}... (prefix from the file name)")
            else:
                click.echo("  sha256:     not published (checked by its structure check)")
            if e.check:
                chk = e.check if isinstance(e.check, str) else getattr(e.check, "__name__", repr(e.check))
                click.echo(f"  check:      {chk}")
            click.echo(f"  path:       {path if path else '-'}  (cache path: {cache.cache_path(e)})")
            if e.kind == "external" and e.hint:
                click.echo(f"  note:       {e.hint}")
    if not long_:
        click.echo(format_table(rows, ["NAME", "STATUS", "SIZE", "LICENCE", "NEEDED BY", "PATH"]))
    n_present = sum(1 for r in rows if r[1] == "present")
    click.echo("")
    click.echo(f"{n_present} of {len(rows)} present." + ("" if long_ else " Sizes with ~ are approximate."))
    if not long_:
        shown = {u for r in rows for u in r[4].split(", ")}
        click.echo("NEEDED BY:")
        for k, v in USES.items():
            if k in shown:
                click.echo(f"  {k:<16} {v}")
    click.echo(licence_summary(entries))


def licence_summary(entries: list[WeightFile]) -> str:
    """The licence lines under `vidinv weights list`: how many of ``entries`` are restricted
    (``entry.restricted``: terms in :data:`vidinv.weights.registry.RESTRICTED_TERMS`), how many have
    terms to check, and where vidinv's own licence is."""
    restricted = [e for e in entries if e.restricted]
    check = [e for e in entries if e.terms == "check-terms"]
    lines = []
    if restricted:
        lines.append(f"{len(restricted)} of {len(entries)} file(s) are {' or '.join(sorted(RESTRICTED_TERMS))} "
                     "(LICENCE column; `vidinv weights list --long` quotes each licence).")
    if check:
        lines.append(f"{len(check)} more have a permissive code licence but training-data or weight terms of their "
                     "own: read their notes (--long) and sources.")
    lines.append(OWN_LICENCE)
    return "\n".join(lines)


def _check_cache_writable(names: list[str]) -> None:
    """Every cache folder the download of ``names`` writes to can be written, before any download."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.outputs import OutputPathError, check_output

    seen = set()
    for n in names:
        dst = cache.cache_path(registry.get(n))
        if dst.parent in seen:
            continue
        seen.add(dst.parent)
        try:
            check_output(dst, what="cache file")
        except OutputPathError as exc:
            fail(f"{exc} (set $VIDINV_HOME to a writable folder)")


@weights.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every weight file and direction (several GB).")
@click.option("--for", "use", type=click.Choice(list(USES)), default=None,
              help="The files a use needs, e.g. --for edit.")
@weights_dir_option
@click.option("--mirror", default=None, metavar="URL",
              help="Download from this base URL (laid out like the cache) instead of the official sources "
                   "(default: $VIDINV_MIRROR).")
@click.option("--force", is_flag=True, help="Download again even when the file is cached.")
@click.option("--no-check", is_flag=True, help="Skip the structure check (sha256 is still checked where known).")
@click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True,
              help="Resumptions after an interrupted download.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@one_line_errors
def fetch_cmd(names: tuple[str, ...], all_: bool, use: str | None, weights_dir: Path | None, mirror: str | None,
              force: bool, no_check: bool, retries: int, quiet: bool) -> None:
    """Download NAMES (or --all, or --for USE) into the cache, resumably, checking each file.

    NAMES are registry names (see `vidinv weights list`), bare direction file names, or direction
    folders (featurestyle, stit_w, e4e).
    """
    if not (names or all_ or use):
        raise click.UsageError("give file NAMES, --all or --for USE (e.g. --for edit)")
    wanted: list[str] = _expand(names)
    if all_:
        wanted += [e.name for e in registry.all_files() if e.fetchable and e.name not in wanted]
    external: list[WeightFile] = []
    if use:
        for e in registry.files_for(use):
            if e.fetchable and e.name not in wanted:
                wanted.append(e.name)
            elif e.kind == "external":
                external.append(e)
    for n in list(wanted):
        e = registry.get(n)
        if e.kind == "external":
            wanted.remove(n)
            external.append(e)
    _check_cache_writable(wanted)
    failures: list[resolver.MissingFile] = []
    for n in wanted:
        e = registry.get(n)
        if weights_dir is not None:
            st, path = resolver.status(e, weights_dir)
            by_hand = path is not None and path != cache.cache_path(e)
            if st == "present" and by_hand and not force:
                click.echo(f"present  {n}  {path}")
                continue
            if st == "bad" and by_hand:
                click.echo(f"bad      {n}  {path}: differs from the registry's size or sha256; it is left as is "
                           "and will be refused (`vidinv weights verify` shows both hashes)", err=True)
        try:
            path = fetch_mod.fetch(e, mirror=mirror, quiet=quiet, force=force, retries=retries,
                                   structure=not no_check)
        except fetch_mod.FetchError as exc:
            click.echo(f"FAILED   {n}: {str(exc).splitlines()[0]}", err=True)
            failures.append(resolver.describe_missing(e, weights_dir, None, str(exc).splitlines()[0],
                                                   fetch_mod.mirror_url(e, mirror)))
            continue
        click.echo(f"ok       {n}  {path}")
    for e in external:
        st, path = resolver.status(e, weights_dir)
        if st == "present":
            click.echo(f"present  {e.name}  {path}  (external)")
        else:
            click.echo(f"missing  {e.name}  (external, not fetched by vidinv: {e.hint})", err=True)
    if failures:
        fail(str(MissingWeightsError(failures, fetch_attempted=True)))


@weights.command("verify")
@click.argument("names", nargs=-1)
@weights_dir_option
@click.option("--no-structure", is_flag=True, help="Only sizes and sha256 (no strict loads).")
def verify_cmd(names: tuple[str, ...], weights_dir: Path | None, no_structure: bool) -> None:
    """Check present files: exact size and sha256 where known, then the structure check (strict load).

    Without NAMES, every present file is checked. Exit status 1 when a file fails or a named
    file is missing.
    """
    wanted = _expand(names) if names else registry.names()
    bad = 0
    checked = 0
    for n in wanted:
        e = registry.get(n)
        path = cache.locate(e, weights_dir)
        if path is None:
            if names:
                click.echo(f"MISSING  {n}  (expected at {cache.cache_path(e)})", err=True)
                bad += 1
            continue
        checked += 1
        rep = cache.verify(e, path, structure=not no_structure)
        detail = f"sha256 {rep.sha_status}, structure {rep.structure_status}"
        if rep.ok:
            click.echo(f"OK       {n}  ({detail})  {path}")
        else:
            bad += 1
            first = rep.messages[0].splitlines()[0] if rep.messages else detail
            click.echo(f"BAD      {n}  ({detail})  {path}: {first}", err=True)
            for m in rep.messages:
                for line in m.splitlines()[1:]:
                    click.echo(f"         {line}", err=True)
    if bad:
        fail(f"{bad} file(s) failed verification or are missing")
    if not checked:
        click.echo("no files present to verify (see `vidinv weights list`)")


@weights.command("path")
@click.argument("name")
@weights_dir_option
@click.option("--allow-hash-mismatch", is_flag=True, default=False,
              help=f"Accept a --weights-dir file whose size or sha256 differs from the registry's (with a warning); "
                   f"also ${ENV_ALLOW_HASH_MISMATCH}=1.")
def path_cmd(name: str, weights_dir: Path | None, allow_hash_mismatch: bool) -> None:
    """Print the path of NAME (exit status 1, with where to get it, when it is missing).

    A file in --weights-dir that differs from the registry's size or sha256 is an error naming both
    hashes (not replaced by the cached copy) unless --allow-hash-mismatch.
    """
    try:
        entry = registry.get(name)
        paths = resolver.resolve([entry.name], weights_dir=weights_dir, allow_hash_mismatch=allow_hash_mismatch or None)
    except UnknownWeightError as exc:
        fail(str(exc))
    except WeightHashMismatchError as exc:
        fail(str(exc))
    except MissingWeightsError as exc:
        fail(str(exc))
    click.echo(str(paths[entry.name]))
