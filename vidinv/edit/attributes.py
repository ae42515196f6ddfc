"""Named attributes (``smile``, ``age``, ``yaw``, ...) and their directions from several sources.

An attribute is named ``NAME`` (its default source) or ``SOURCE:NAME`` (``fs:smile``,
``stit:smile``, ``e4e:smile``, ``ganspace:smile``, ``ganspace:pc12``). Each entry points at a
direction file of the weight registry (:mod:`vidinv.weights`; fetched and sha256-checked there) and
says how that file is turned into a :class:`~vidinv.edit.directions.Direction`.

Sources
-------
``fs``        Feature-Style encoder boundaries (Yao et al., ECCV 2022; ``boundaries_ours/``):
              InterFaceGAN boundaries fitted in the encoder's own W+ inversions, (1, 9216) float32,
              unit norm. Convention ``fs``: ``w' = w + 15·s·d.reshape(18, 512)``, exactly as their
              video script (``alpha = s``). Default source of smile, eyeglasses, makeup.
``stit``      Stitch-it-in-Time W directions (Tzaban et al., SIGGRAPH Asia 2022;
              ``editings/w_directions/``, from StyleGAN2-distillation), (18, 512) float64 with 18
              equal rows, not unit norm. Convention ``unit``. Default source of every other name.
``e4e``       InterFaceGAN directions in W released with e4e (Tov et al., SIGGRAPH 2021;
              ``editings/interfacegan_directions/``): age and smile (1, 512), pose (1, 18, 512), unit
              norm per row. Convention ``unit``.
``ganspace``  GANSpace PCA of W (Härkönen et al., NeurIPS 2020) as shipped by e4e
              (``ganspace_pca/ffhq_pca.pt``: mean (1, 512), comp (80, 1, 512) orthonormal, std (80)).
              ``ganspace:pc<k>`` is component k on every row; the named edits are the (component,
              rows, sign) triples of e4e's examples. Convention ``unit`` on those rows.

What ``--strength 1`` means
---------------------------
Every source is put on one scale: **strength s moves the W+ code (18 x 512) by an L2 distance of
15·|s|**, i.e. 3.54·|s| per style row when all rows are edited. This is the Feature-Style scripts'
own step (unit-norm boundary times 15, kept exact), and the other sources are rescaled to it
(convention ``unit``: ``w' = w + 15·s·d/||d||_F``). See :func:`strength_table` for the table that
``vidinv edit --help`` shows, with each source's native factor for s = 1.

Why equal step length: the sources' own factors are not comparable (STIT's directions have norms
from 0.88 to 4.3 over W+, and STIT halves the factor it is given; InterFaceGAN normals are unit
length; GANSpace counts in per-component standard deviations; Feature-Style multiplies by 15). A
common W+ distance is the one quantity that can be stated for all, and at s = 1 it lands close to
the edits the authors demonstrate: Feature-Style alpha = 1 is s = 1; e4e's InterFaceGAN age example
(factor -3) is s = -0.85; STIT's README examples age -8 and gender -6 are s = -0.83 and -0.82
(their smile examples 2 and -3: s = 0.28 and -0.43); e4e's GANSpace examples eye_openness 20,
smile -20, trimmed_beard 20, white_hair -24, lipstick 20 are s = 0.66, -0.69, 0.91, -1.30, 0.81.
So s = 1 is a strong, still natural edit, and |s| <= 1.5 covers the demonstrated range.

Limits: equal W+ distance is not equal visual change. Measured against the InterFaceGAN smile
normal n (e4e ``interfacegan_smile.pt``), the mean over rows of ``n·Δw_row`` at s = 1 is 3.54 for
``e4e:smile``, 2.18 for ``stit:smile`` (cosine 0.62 with n) and 0.46 for ``fs:smile`` (0.76 over
rows 0-7; its boundary was fitted on the Feature-Style encoder's own W+ inversions, where most of
the step is orthogonal to W's smile normal). We keep the Feature-Style rule exact (its scripts and
the parity fixtures use it) and do not rescale per attribute: no perceptual measure is available
offline, and a per-attribute factor tuned by eye would be a hidden constant. Tune with
``--strength``.

Signs: every file keeps its published sign, except ``e4e:yaw`` (= -``e4e:pose``, flipped to agree
with ``stit:yaw``: cosine +0.44 after the flip) and the GANSpace named edits (sign of e4e's example
strength, e.g. ``ganspace:smile`` = -pc46 on row 4).

GANSpace convention: vidinv *adds* ``15·s·c_k/√n`` to the n rows of the edit (frame-independent, so
temporally consistent). e4e's ``ganspace.edit`` instead *sets* the component coordinate of row 0 to
``strength·std_k`` (``delta = (strength - coord)·std_k·c_k``); for a face whose coordinate is within
a few std of 0 the two agree up to that offset.
"""
from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from vidinv.edit.directions import (
    FS_SCALE,
    N_LATENT,
    STYLE_DIM,
    Direction,
    DirectionError,
    EditTerm,
    LatentEdit,
    check_strength,
    format_layers,
    load_direction_file,
    parse_layers,
    read_array,
)
from vidinv.weights import resolve, resolver

__all__ = [
    "AttributeSource",
    "SOURCES",
    "SOURCE_ALIASES",
    "ATTRIBUTES",
    "DEFAULT_SOURCE",
    "DOCUMENTED_FACTORS",
    "DEMONSTRATED_EDITS",
    "DEMONSTRATED_MAX_STRENGTH",
    "STRENGTH_WARNING",
    "demonstrated_strength",
    "equivalent_strength",
    "GANSPACE_FILE",
    "attribute_names",
    "lookup",
    "load_attribute",
    "load_attributes",
    "direction_from_file",
    "parse_edit_spec",
    "build_edit",
    "strength_table",
    "listing",
]

#: The sources, one line each.
SOURCES: dict[str, str] = {
    "fs": "Feature-Style encoder W+ boundaries (InterDigitalInc/FeatureStyleEncoder boundaries_ours/)",
    "stit": "Stitch-it-in-Time W directions (rotemtzaban/STIT editings/w_directions/)",
    "e4e": "InterFaceGAN W directions released with e4e (omertov/encoder4editing editings/interfacegan_directions/)",
    "ganspace": "GANSpace PCA of W released with e4e (omertov/encoder4editing editings/ganspace_pca/ffhq_pca.pt)",
}
#: Other spellings accepted before the colon.
SOURCE_ALIASES: dict[str, str] = {"featurestyle": "fs", "feature-style": "fs", "interfacegan": "e4e", "gs": "ganspace"}
#: Other spellings accepted for attribute names.
ATTRIBUTE_ALIASES: dict[str, str] = {
    "smiling": "smile", "glasses": "eyeglasses", "heavy_makeup": "makeup", "eye_openness": "eyes_open",
    "trimmed_beard": "beard",
}
GANSPACE_FILE = "e4e/ganspace_ffhq_pca.pt"
_STIT_SHAPE = ("eyes_open", "mouth_open", "eye_distance", "eye_eyebrow_distance", "eye_ratio", "lip_ratio",
               "mouth_ratio", "nose_mouth_distance", "nose_ratio", "nose_tip")
_N_PCA = 80


@dataclass(frozen=True)
class AttributeSource:
    """Where one attribute's direction comes from in one source.

    Attributes:
        attribute: vidinv name (``"smile"``).
        source: ``"fs"``, ``"stit"``, ``"e4e"`` or ``"ganspace"``.
        weight: registry name of the file (``"featurestyle/Smiling_boundary.npy"``).
        convention: ``"fs"`` or ``"unit"`` (see :mod:`vidinv.edit.directions`).
        sign: +1 or -1 applied to the file's direction.
        component: GANSpace component index, else None.
        rows: (first, last) style rows, inclusive, of a GANSpace edit; None = all rows.
        upstream: the authors' own name and setting of this edit.
    """

    attribute: str
    source: str
    weight: str
    convention: str
    sign: float = 1.0
    component: int | None = None
    rows: tuple[int, int] | None = None
    upstream: str = ""

    @property
    def spec(self) -> str:
        """``"source:attribute"``."""
        return f"{self.source}:{self.attribute}"

    @property
    def rows_text(self) -> str:
        """The rows as text: ``"all"``, ``"4"``, ``"7-9"``."""
        return "all" if self.rows is None else format_layers(range(self.rows[0], self.rows[1] + 1))


def _entries() -> list[AttributeSource]:
    e: list[AttributeSource] = []
    for name, fname in (("smile", "Smiling"), ("eyeglasses", "Eyeglasses"), ("makeup", "Heavy_Makeup")):
        e.append(AttributeSource(name, "fs", f"featurestyle/{fname}_boundary.npy", "fs",
                                 upstream=f"{fname}_boundary.npy, w + 15*alpha*d"))
    for name in ("smile", "age", "gender", "yaw", "pitch", "roll") + _STIT_SHAPE:
        e.append(AttributeSource(name, "stit", f"stit_w/{name}.npy", "unit",
                                 upstream=f"--edit_name {name}, w + (value/2)*d"))
    e.append(AttributeSource("age", "e4e", "e4e/interfacegan_age.pt", "unit", upstream="interfacegan age, w + f*n"))
    e.append(AttributeSource("smile", "e4e", "e4e/interfacegan_smile.pt", "unit",
                             upstream="interfacegan smile, w + f*n"))
    e.append(AttributeSource("pose", "e4e", "e4e/interfacegan_pose.pt", "unit", upstream="interfacegan pose, w + f*n"))
    e.append(AttributeSource("yaw", "e4e", "e4e/interfacegan_pose.pt", "unit", sign=-1.0,
                             upstream="-(interfacegan pose), sign of stit:yaw"))
    # e4e's GANSpace examples (component, start, end exclusive, strength) -> rows inclusive, sign
    for name, comp, a, b, strength, up in (("eyes_open", 54, 7, 8, 20, "eye_openness"),
                                           ("smile", 46, 4, 5, -20, "smile"),
                                           ("beard", 58, 7, 9, 20, "trimmed_beard"),
                                           ("white_hair", 57, 7, 10, -24, "white_hair"),
                                           ("lipstick", 34, 10, 11, 20, "lipstick")):
        e.append(AttributeSource(name, "ganspace", GANSPACE_FILE, "unit", sign=math.copysign(1.0, strength),
                                 component=comp, rows=(a, b - 1),
                                 upstream=f"'{up}': ({comp}, {a}, {b}, {strength})"))
    return e


#: ``{attribute: {source: AttributeSource}}`` (``ganspace:pc<k>`` entries are made on demand).
ATTRIBUTES: dict[str, dict[str, AttributeSource]] = {}
for _a in _entries():
    ATTRIBUTES.setdefault(_a.attribute, {})[_a.source] = _a
del _a

#: The source a bare attribute name uses.
DEFAULT_SOURCE: dict[str, str] = {
    name: ("fs" if "fs" in srcs else "stit" if "stit" in srcs else "e4e" if "e4e" in srcs else "ganspace")
    for name, srcs in ATTRIBUTES.items()
}

#: Native factor of s = 1 for each direction (the ``f`` of the source's own ``w + f·d``; for
#: GANSpace, std units of the component), as measured on the official files and shown by
#: :func:`strength_table`. The tests recompute every value from the files.
DOCUMENTED_FACTORS: dict[str, float] = {
    "fs:smile": 15.0, "fs:eyeglasses": 15.0, "fs:makeup": 15.0,
    "stit:age": 4.84, "stit:gender": 3.64, "stit:smile": 3.51, "stit:yaw": 3.78, "stit:pitch": 6.82,
    "stit:roll": 12.69, "stit:eyes_open": 17.10, "stit:mouth_open": 17.14, "stit:eye_distance": 16.41,
    "stit:eye_eyebrow_distance": 15.68, "stit:eye_ratio": 15.91, "stit:lip_ratio": 11.67,
    "stit:mouth_ratio": 15.43, "stit:nose_mouth_distance": 15.61, "stit:nose_ratio": 15.93,
    "stit:nose_tip": 15.45,
    "e4e:age": 3.54, "e4e:smile": 3.54, "e4e:pose": 3.54, "e4e:yaw": -3.54,
    "ganspace:eyes_open": 30.5, "ganspace:smile": -29.2, "ganspace:beard": 22.1, "ganspace:white_hair": -18.5,
    "ganspace:lipstick": 24.5,
}


#: The authors' own example edits in their native units: ``(spec, value, where)``. Value: STIT's
#: ``--edit_range`` v (applied as ``w + (v/2)·d``), e4e InterFaceGAN's factor f (``w + f·n``), e4e
#: GANSpace's strength (std units of the component), Feature-Style's script ``alpha``. They are the
#: "demonstrated edits" of the ``vidinv edit --help`` table (|s| = 0.3 to 1.3 on vidinv's scale).
DEMONSTRATED_EDITS: tuple[tuple[str, float, str], ...] = (
    ("fs:smile", 1.0, "Feature-Style video script, alpha = 1"),
    ("stit:age", -8.0, "STIT README, --edit_name age --edit_range -8"),
    ("stit:gender", -6.0, "STIT README, --edit_name gender --edit_range -6"),
    ("stit:smile", 2.0, "STIT README, --edit_name smile --edit_range 2"),
    ("stit:smile", -3.0, "STIT README, --edit_name smile --edit_range -3"),
    ("e4e:age", -3.0, "e4e InterFaceGAN age example, factor -3"),
    ("ganspace:eyes_open", 20.0, "e4e GANSpace example eye_openness (54, 7, 8, 20)"),
    ("ganspace:smile", -20.0, "e4e GANSpace example smile (46, 4, 5, -20)"),
    ("ganspace:beard", 20.0, "e4e GANSpace example trimmed_beard (58, 7, 9, 20)"),
    ("ganspace:white_hair", -24.0, "e4e GANSpace example white_hair (57, 7, 10, -24)"),
    ("ganspace:lipstick", 20.0, "e4e GANSpace example lipstick (34, 10, 11, 20)"),
)


def demonstrated_strength(spec: str, value: float) -> float:
    """The vidinv strength s of an author's example edit ``value`` (native units, see
    :data:`DEMONSTRATED_EDITS`), from :data:`DOCUMENTED_FACTORS`: STIT ``(v/2)/factor``, e4e and GANSpace
    ``value/factor``, Feature-Style ``alpha``."""
    src = spec.split(":", 1)[0]
    native = value / 2.0 if src == "stit" else value
    return float(native / DOCUMENTED_FACTORS[spec]) if src != "fs" else float(value)


#: The largest |s| among the demonstrated edits (1.30: e4e's GANSpace white_hair -24).
DEMONSTRATED_MAX_STRENGTH: float = max(abs(demonstrated_strength(sp, v)) for sp, v, _ in DEMONSTRATED_EDITS)
#: ``vidinv edit`` logs a warning for an edit whose equivalent strength (:func:`equivalent_strength`)
#: exceeds this: 3 x :data:`DEMONSTRATED_MAX_STRENGTH` = 3.9. Why 3x: strengths up to about 2-3 are
#: deliberate exaggerations of a demonstrated edit (the README shows ``--strength 2``), while the
#: usual slip is a source's native number typed as s (STIT's ``--edit_range 8`` is s = 0.83 for age
#: but 8 here; GANSpace's 20 std is s = 0.66-0.91), which lands at 4 and beyond: 3 x 1.3 separates
#: the two. The W+ step is then >= 58 (13.8 per style row), far from any code the directions were
#: fitted or shown on. Only a warning: the user may want it.
STRENGTH_WARNING: float = 3.0 * DEMONSTRATED_MAX_STRENGTH

_log = logging.getLogger("vidinv.edit")


def equivalent_strength(direction: Direction, strength: float) -> float:
    """|s| on vidinv's scale of an edit: the W+ distance it moves a code over all rows, divided by 15
    (``||Δw||_F / 15`` with every row edited). Equals |strength| for every named attribute and for
    ``fs`` (unit-norm) and ``unit`` files; for ``raw`` files it is ``|s|·||d||_F / 15``."""
    return float(direction.delta64(strength).norm()) / FS_SCALE


def attribute_names() -> list[str]:
    """Every attribute name (``ganspace:pc<k>`` aside), sorted."""
    return sorted(ATTRIBUTES)


def _norm(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def lookup(spec: str) -> AttributeSource:
    """Resolve ``NAME`` or ``SOURCE:NAME`` to its :class:`AttributeSource`.

    ``NAME`` uses :data:`DEFAULT_SOURCE`; ``ganspace:pc<k>`` (k = 0..79) is GANSpace component k on every
    style row (also accepted as bare ``pc<k>``).

    Raises:
        DirectionError: unknown source or name (the message lists close names and, for a name that
            exists in other sources, those sources).
    """
    text = spec.strip()
    if ":" in text:
        src, name = text.split(":", 1)
        src = SOURCE_ALIASES.get(_norm(src), _norm(src))
        if src not in SOURCES:
            raise DirectionError(f"unknown direction source {text.split(':', 1)[0]!r} in {spec!r}; sources: "
                                 f"{', '.join(SOURCES)}")
    else:
        src, name = None, text
    name = _norm(name)
    name = ATTRIBUTE_ALIASES.get(name, name)
    m = re.fullmatch(r"pc(\d+)", name)
    if m and src in (None, "ganspace"):
        k = int(m.group(1))
        if not 0 <= k < _N_PCA:
            raise DirectionError(f"{spec!r}: GANSpace has components pc0..pc{_N_PCA - 1}")
        return AttributeSource(f"pc{k}", "ganspace", GANSPACE_FILE, "unit", component=k, rows=None,
                               upstream=f"component {k}, all rows")
    if name not in ATTRIBUTES:
        close = difflib.get_close_matches(name, list(ATTRIBUTES) + list(ATTRIBUTE_ALIASES), n=4, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DirectionError(f"unknown attribute {spec!r}.{hint} See `vidinv directions list`; for a file of "
                             "your own use --direction FILE.")
    srcs = ATTRIBUTES[name]
    src = src or DEFAULT_SOURCE[name]
    if src not in srcs:
        raise DirectionError(f"{spec!r}: source {src!r} has no {name!r} direction; {name!r} is available as "
                             + ", ".join(f"{s}:{name}" for s in srcs))
    return srcs[src]


def direction_from_file(entry: AttributeSource, path: str | os.PathLike) -> Direction:
    """Build the :class:`Direction` of ``entry`` from its file at ``path``.

    GANSpace: ``{mean (1, 512), comp (80, 1, 512), std (80,)}``; the direction is ``sign·comp[k]`` on
    the entry's rows (zeros elsewhere), convention ``unit``. Other sources: the file's array with the
    entry's convention and sign.

    Raises:
        DirectionError / DirectionShapeError: the file does not have the expected content.
    """
    desc = f"{SOURCES[entry.source].split(' (')[0]}: {entry.upstream}"
    if entry.source == "ganspace":
        pca = read_array(path)
        if not isinstance(pca, Mapping) or not {"comp", "std"} <= set(pca):
            raise DirectionError(f"{path}: expected a GANSpace PCA dict with 'mean', 'comp' and 'std', found "
                                 f"{type(pca).__name__}" + (f" with keys {list(pca)}" if isinstance(pca, Mapping)
                                                            else ""))
        comp, std = torch.as_tensor(pca["comp"]), torch.as_tensor(pca["std"])
        if comp.ndim != 3 or comp.shape[1:] != (1, STYLE_DIM) or std.shape != (comp.shape[0],):
            raise DirectionError(f"{path}: GANSpace 'comp' must be (K, 1, {STYLE_DIM}) and 'std' (K,), found "
                                 f"{tuple(comp.shape)} and {tuple(std.shape)}")
        assert entry.component is not None  # GANSpace entries (ATTRIBUTES, ganspace:pc<k>) name one
        k = int(entry.component)
        if not 0 <= k < comp.shape[0]:
            raise DirectionError(f"{path}: component {k} requested, the file has {comp.shape[0]}")
        vec = torch.zeros(N_LATENT, STYLE_DIM, dtype=torch.float64)
        a, b = entry.rows if entry.rows is not None else (0, N_LATENT - 1)
        vec[a:b + 1] = comp[k, 0].to(torch.float64)
        std_units = FS_SCALE / math.sqrt(b - a + 1) / float(std[k])  # |comp_k| = 1
        return Direction.from_array(vec, "unit", name=entry.spec, source="ganspace", path=path, sign=entry.sign,
                                    description=f"{desc}; s=1 adds {entry.sign * std_units:+.1f} std of pc{k} "
                                                f"on rows {entry.rows_text}")
    arr = read_array(path)
    return Direction.from_array(arr, entry.convention, name=entry.spec, source=entry.source, path=path,
                                sign=entry.sign, description=desc)


def load_attributes(specs: Iterable[str], weights_dir: str | os.PathLike | None = None,
                    fetch: bool = False, *, allow_hash_mismatch: bool | None = None) -> list[Direction]:
    """Load several named directions, resolving all their files in one go.

    Args:
        specs: ``NAME`` / ``SOURCE:NAME`` strings (see :func:`lookup`).
        weights_dir: folder of files placed by hand (``DIR/featurestyle/...``, ``DIR/stit_w/...``,
            ``DIR/e4e/...``), searched before the cache.
        fetch: download missing files into the cache.
        allow_hash_mismatch: accept ``weights_dir`` files whose sha256 differs from the registry's (see
            :func:`vidinv.weights.resolve`; None reads ``VIDINV_ALLOW_HASH_MISMATCH``).

    Returns:
        One :class:`Direction` per spec, in order.

    Raises:
        DirectionError: unknown names (before any file is looked up).
        vidinv.weights.MissingWeightsError: one error listing every missing file, its URL and where
            to put it.
        vidinv.weights.WeightHashMismatchError: a ``weights_dir`` file differs from the registry's sha256.
    """

    entries = [lookup(s) for s in specs]
    paths = resolve(sorted({e.weight for e in entries}), weights_dir=weights_dir, fetch=fetch,
                    allow_hash_mismatch=allow_hash_mismatch) if entries else {}
    return [direction_from_file(e, paths[e.weight]) for e in entries]


def load_attribute(spec: str, weights_dir: str | os.PathLike | None = None, fetch: bool = False) -> Direction:
    """Load one named direction (see :func:`load_attributes`)."""
    return load_attributes([spec], weights_dir=weights_dir, fetch=fetch)[0]


_EDIT_SPEC = re.compile(r"^\s*(?P<name>[^=@]+?)\s*(?:=\s*(?P<s>[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
                        r"|(?i:nan|inf|infinity))))?\s*"
                        r"(?:@\s*(?P<layers>[\d,\-\s]+|all))?\s*$")


def parse_edit_spec(text: str) -> tuple[str, float, tuple[int, ...] | None]:
    """Parse ``NAME[=STRENGTH][@LAYERS]`` (e.g. ``"stit:age=-0.8@0-7"``, ``"smile"``, ``"pc12=0.5@0-3"``).

    Returns:
        ``(name, strength, layers)``: strength defaults to 1.0; layers is a tuple of rows or None (all).

    Raises:
        DirectionError: malformed text or layers; a strength that is not a finite number (``nan``,
            ``inf``, or ``1e400``, which overflows to inf).
    """
    m = _EDIT_SPEC.match(text)
    if not m:
        raise DirectionError(f"cannot parse edit {text!r}: expected NAME[=STRENGTH][@LAYERS], e.g. "
                             "'smile=1', 'stit:age=-0.8@0-7'")
    strength = 1.0
    if m.group("s") is not None:
        strength = check_strength(m.group("s"), f"strength in {text.strip()!r}:")
    return m.group("name").strip(), strength, parse_layers(m.group("layers"))


def build_edit(items: Iterable[str | tuple], weights_dir: str | os.PathLike | None = None, fetch: bool = False,
               *, files: Iterable[tuple[str | os.PathLike, str, float, str | int | Iterable[int] | None]] = (),
               allow_hash_mismatch: bool | None = None) -> LatentEdit:
    """Make one :class:`~vidinv.edit.directions.LatentEdit` (sum of Δw) from named attributes and files.

    Args:
        items: ``"NAME[=S][@LAYERS]"`` strings, or ``(name, strength)`` / ``(name, strength, layers)``
            tuples, or ``(Direction, strength[, layers])`` tuples.
        weights_dir, fetch: as :func:`load_attributes` (every named file is resolved at once).
        files: ``(path, convention, strength, layers)`` for ``--direction FILE`` directions.
        allow_hash_mismatch: as :func:`load_attributes`.

    Every strength is checked (finite) before any file is looked up. An edit whose
    :func:`equivalent_strength` exceeds :data:`STRENGTH_WARNING` is logged once, as one WARNING of
    the ``vidinv.edit`` logger naming every such term.

    Raises:
        DirectionError (non-finite strengths among them), DirectionShapeError,
        vidinv.weights.MissingWeightsError.
    """
    parsed: list[tuple[str | Direction, float, str | int | Iterable[int] | None]] = []
    for it in items:
        if isinstance(it, str):
            parsed.append(parse_edit_spec(it))
        else:
            name, *rest = it
            what = f"strength of {name if isinstance(name, str) else getattr(name, 'name', 'direction')}"
            parsed.append((name, check_strength(rest[0], what) if rest else 1.0, rest[1] if len(rest) > 1 else None))
    files = [(path, conv, check_strength(s, f"strength of --direction {path}"), lay) for path, conv, s, lay in files]
    names = [p[0] for p in parsed if isinstance(p[0], str)]
    loaded = iter(load_attributes(names, weights_dir=weights_dir, fetch=fetch, allow_hash_mismatch=allow_hash_mismatch))
    terms = []
    for name, s, lay in parsed:
        d = next(loaded) if isinstance(name, str) else name
        terms.append(EditTerm(d, s, parse_layers(lay, d.n_latent)))
    for path, conv, s, lay in files:
        d = load_direction_file(path, conv)
        terms.append(EditTerm(d, float(s), parse_layers(lay, d.n_latent)))
    edit = LatentEdit(terms)
    _warn_strong(edit)
    return edit


def _warn_strong(edit: LatentEdit) -> None:
    """One WARNING for the terms of ``edit`` beyond :data:`STRENGTH_WARNING` (none: no log)."""
    strong = [(t, equivalent_strength(t.direction, t.strength)) for t in edit.terms]
    strong = [(t, e) for t, e in strong if e > STRENGTH_WARNING]
    if not strong:
        return
    what = ", ".join(f"{t.direction.name} at strength {t.strength:g}"
                     + (f" (|s| {e:.3g} on vidinv's scale)" if abs(abs(t.strength) - e) > 1e-6 * e else "")
                     for t, e in strong)
    _log.warning("%s: far outside the edits the authors demonstrate (|s| 0.3 to %.1f, see `vidinv edit --help`; "
                 "warning above %.1f), expect an unnatural face. A source's own number is not s: STIT's "
                 "--edit_range -8 for age is s = -0.83.", what, DEMONSTRATED_MAX_STRENGTH, STRENGTH_WARNING)


# ------------------------------------------------------------------------------------- documentation

def strength_table(*, for_click: bool = False) -> str:
    """The ``--strength`` table (plain text, for ``vidinv edit --help`` and ``vidinv directions list``).

    States, per source, the rule ``w' = w + Δw`` and what strength 1 means in the source's own units;
    the numbers are :data:`DOCUMENTED_FACTORS` (checked against the official files by the tests).

    Args:
        for_click: put click's ``\\b`` no-rewrap marker before every paragraph (for a command's help
            text, where click would otherwise re-flow the table).

    Returns:
        Lines of at most 100 characters.
    """
    f = DOCUMENTED_FACTORS

    def fac(src: str, names: Iterable[str], fmt: str = "{:.2f}") -> str:
        return ", ".join(f"{n} " + fmt.format(f[f"{src}:{n}"]) for n in names)

    shape = [f[f"stit:{n}"] for n in _STIT_SHAPE]
    paragraphs = [
        ["--strength s adds s steps to every frame's W+ code (18 x 512). A step has the same length for",
         "every source: |dw| = 15 over the W+ code, 3.54 per style row when all 18 rows are edited",
         "(the Feature-Style scripts' own step). d = the direction as stored in its file."],
        ["source    rule (s = strength)               s = 1 in the source's own units",
         "fs        w + 15*s*d  (d unit norm, exact)  Feature-Style script alpha = 1",
         "stit      w + 15*s*d/|d|                    STIT factor f of w + f*d (its --edit_range value is 2f):",
         "                                            " + fac("stit", ("age", "gender", "smile", "yaw")) + ",",
         "                                            " + fac("stit", ("pitch", "roll")) +
         f", eyes/mouth/nose ones {min(shape):.1f}-{max(shape):.1f}",
         "e4e       w + 3.54*s*n on all rows          InterFaceGAN distance 3.54 (e4e factor)",
         "ganspace  w + 15*s*c/sqrt(R) on its R rows  std units of the component:",
         "                                            " + fac("ganspace", ("eyes_open", "smile", "beard"), "{:+.1f}")
         + ",",
         "                                            " + fac("ganspace", ("white_hair", "lipstick"), "{:+.1f}"),
         "FILE      --direction FILE with convention fs (w + 15*s*d), unit (as stit) or raw (w + s*d)"],
        ["The authors' demonstrated edits fall at |s| = 0.3 to 1.3: STIT age -8 = s -0.83, gender -6 = -0.82,",
         "smile 2 = 0.28; e4e InterFaceGAN age -3 = -0.85; e4e GANSpace smile -20 = -0.69. Equal length is",
         "not equal visual change: along the InterFaceGAN smile normal, fs:smile / stit:smile / e4e:smile",
         "move W by 0.46 / 2.18 / 3.54 per row at s = 1 (fs was fitted in the Feature-Style encoder's W+).",
         "Several edits add up (w + dw1 + dw2); NAME=S@ROWS, e.g. smile=1@0-7, edits only style rows 0-7."],
    ]
    sep = "\n\n\b\n" if for_click else "\n\n"
    head = "\b\n" if for_click else ""
    return head + sep.join("\n".join(p) for p in paragraphs)


def listing(weights_dir: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """Rows for ``vidinv directions list``: every (attribute, source) with its file, convention, rows,
    default marker, native factor of s = 1 and whether the file is present (nothing is downloaded).

    Returns:
        A list of dicts with keys ``name``, ``spec``, ``default``, ``file``, ``convention``, ``rows``,
        ``factor`` (text), ``upstream``, ``status`` (``"present"`` / ``"missing"``).
    """

    rows = []
    for name in attribute_names():
        for src, e in ATTRIBUTES[name].items():
            status, _path = resolver.status(e.weight, weights_dir)
            rows.append({
                "name": name, "spec": e.spec, "default": "*" if DEFAULT_SOURCE[name] == src else "",
                "file": e.weight, "convention": e.convention, "rows": e.rows_text,
                "factor": f"{DOCUMENTED_FACTORS[e.spec]:g}" if e.spec in DOCUMENTED_FACTORS else "-",
                "upstream": e.upstream, "status": "present" if status == "present" else "missing",
            })
    return rows
