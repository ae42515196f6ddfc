"""Latent editing: directions, their strength conventions, SeFa, and the edit rule (Feature-Style eq. 1).

Typical use (the ``vidinv edit`` pipeline)::

    from vidinv.edit import apply_edit, build_edit
    edit = build_edit(["smile=1", "stit:age=-0.8@0-7"], weights_dir=opts.weights_dir, fetch=True)
    # once per video: every file resolved/fetched up front (one MissingWeightsError listing all)
    for w, F in frames:                    # w (B, 18, 512), F (B, 512, 16, 16) or None (pSp)
        image = apply_edit(G, w, F, edit)  # F' = F + G^K(w') - G^K(w), image = G(w', F')

Modules:

* :mod:`~vidinv.edit.directions`: :class:`Direction` (``w' = w + strength·scale·d``; conventions
  ``fs`` / ``unit`` / ``raw``; layer ranges), user files (:func:`load_direction_file`),
  :class:`LatentEdit` (several directions summed, Δw computed once).
* :mod:`~vidinv.edit.attributes`: named attributes (``smile``, ``age``, ...) and their sources
  (``fs:``, ``stit:``, ``e4e:``, ``ganspace:``), what ``--strength 1`` means
  (:func:`strength_table`), :func:`build_edit` from ``NAME[=S][@ROWS]`` strings.
* :mod:`~vidinv.edit.sefa`: SeFa closed-form directions from the generator's modulation weights.
* :mod:`~vidinv.edit.keyframes`: strengths over time and per face track: :class:`Keyframes`
  (``--keyframes "0:0,1.0:2"``, smoothstep-eased), :class:`EditSchedule` (the edit of each face by track
  and time; per-sample Δw for :func:`apply_edit`).
* :mod:`~vidinv.edit.frame`: :func:`apply_edit`, the one function that applies a built edit to inverted
  frames (Feature-Style eq. 1 through the generator's coarse/fine path; ``G(w')`` without a feature code).
"""
from vidinv.edit.attributes import (
    ATTRIBUTES,
    DEFAULT_SOURCE,
    DEMONSTRATED_EDITS,
    DEMONSTRATED_MAX_STRENGTH,
    DOCUMENTED_FACTORS,
    SOURCES,
    STRENGTH_WARNING,
    AttributeSource,
    attribute_names,
    build_edit,
    demonstrated_strength,
    direction_from_file,
    equivalent_strength,
    listing,
    load_attribute,
    load_attributes,
    lookup,
    parse_edit_spec,
    strength_table,
)
from vidinv.edit.directions import (
    CONVENTIONS,
    FS_SCALE,
    N_LATENT,
    STYLE_DIM,
    USER_SHAPES,
    Direction,
    DirectionError,
    DirectionShapeError,
    EditTerm,
    LatentEdit,
    accepted_shapes,
    check_strength,
    format_layers,
    load_direction_file,
    parse_layers,
)
from vidinv.edit.frame import apply_edit, edited_latent
from vidinv.edit.keyframes import EditSchedule, Keyframes, parse_keyframes
from vidinv.edit.sefa import SefaResult, sefa

__all__ = [
    "ATTRIBUTES", "DEFAULT_SOURCE", "DEMONSTRATED_EDITS", "DEMONSTRATED_MAX_STRENGTH", "DOCUMENTED_FACTORS",
    "SOURCES", "STRENGTH_WARNING", "AttributeSource", "attribute_names", "build_edit", "demonstrated_strength",
    "direction_from_file", "equivalent_strength", "listing", "load_attribute", "load_attributes", "lookup",
    "parse_edit_spec", "strength_table",
    "CONVENTIONS", "FS_SCALE", "N_LATENT", "STYLE_DIM", "USER_SHAPES", "Direction", "DirectionError",
    "DirectionShapeError", "EditTerm", "LatentEdit", "accepted_shapes", "check_strength", "format_layers",
    "load_direction_file",
    "parse_layers",
    "apply_edit", "edited_latent",
    "EditSchedule", "Keyframes", "parse_keyframes",
    "SefaResult", "sefa",
]
