"""Strengths that change over time and per face track: keyframes and edit schedules.

Keyframes (``--keyframes "0:0,1.0:2,4.5:2,5.0:0"``) are ``TIME:VALUE`` pairs, times in seconds on the
video's timeline (the frames' presentation times, :attr:`vidinv.io.video.Frame.time`, the clock of
``--start`` / ``--end``), strictly increasing. The value at time ``t``:

* before the first key: the first value; after the last key: the last value (held constant);
* between keys ``(t0, v0)`` and ``(t1, v1)``: ``(1 - e) v0 + e v1`` with ``u = (t - t0) / (t1 - t0)`` and
  the ease ``e = smoothstep(u) = 3u² - 2u³`` (the cubic Hermite ease-in-out: zero slope at both keys,
  so a ramp starts and ends without a jump in speed; ``ease="linear"``: ``e = u``);
* exactly ``v0`` on a flat segment (``v0 == v1``) and at each key, so a held strength equals the
  constant-strength edit bit for bit.

The value multiplies every strength of the edit it applies to (``--strength`` / ``NAME=S``, default 1):
with one attribute at the default strength the keyframe value *is* the strength. Because a direction's
offset is linear in its strength (``Δw = s · scale · d``, :class:`~vidinv.edit.directions.Direction`),
the per-face offset is ``Δw(t) = Σ_i k(t) s_i scale_i d_i``; :class:`EditSchedule` builds it as a
:class:`~vidinv.edit.directions.LatentEdit` at the strengths ``k(t) s_i``, so that a time where
``k(t) = 1`` (or any held value) gives exactly the offset of the constant edit at those strengths.

An :class:`EditSchedule` says which edit each face gets: a default edit for every track (or only the
tracks listed), per-track edits that replace it for their track, and keyframes (a default set and
per-track sets). Track ids are the tracker's (:class:`vidinv.face.tracking.Tracker`): a scene cut ends
every track and the faces after it get new ids, so settings given per track id stop at the cut.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from vidinv.edit.directions import DirectionError, EditTerm, LatentEdit

__all__ = ["EASES", "Keyframes", "parse_keyframes", "smoothstep", "ease", "EditSchedule", "group_track_items"]

#: Eases between two keyframes.
EASES = ("smoothstep", "linear")


def smoothstep(u: float) -> float:
    """``3u² - 2u³`` for ``u`` clipped to [0, 1] (0 -> 0, 0.5 -> 0.5, 1 -> 1; zero slope at 0 and 1)."""
    u = min(1.0, max(0.0, float(u)))
    return u * u * (3.0 - 2.0 * u)


def ease(u: float, kind: str = "smoothstep") -> float:
    """The ease ``kind`` (:data:`EASES`) at ``u`` clipped to [0, 1].

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "smoothstep":
        return smoothstep(u)
    if kind == "linear":
        return min(1.0, max(0.0, float(u)))
    raise ValueError(f"unknown ease {kind!r}: expected one of {', '.join(EASES)}")


def _number(text: str, what: str, source: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DirectionError(f"keyframes {source!r}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise DirectionError(f"keyframes {source!r}: {what} {text.strip()!r} is not a finite number")
    return v


@dataclass(frozen=True)
class Keyframes:
    """Keyframed values: ``times`` (seconds, strictly increasing, >= 0) and ``values`` (finite), at least one
    key; ``kind`` the ease between keys (:data:`EASES`). Evaluate with ``k(t)`` (see the module doc).

    Raises:
        DirectionError: no key, times and values of different lengths, non-finite numbers, negative or
            non-increasing times, an unknown ease.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    kind: str = "smoothstep"

    def __post_init__(self) -> None:
        times = tuple(float(t) for t in self.times)
        values = tuple(float(v) for v in self.values)
        if not times or len(times) != len(values):
            raise DirectionError(f"keyframes need at least one TIME:STRENGTH pair and as many times as values "
                                 f"(got {len(times)} times, {len(values)} values)")
        if not all(math.isfinite(x) for x in times + values):
            raise DirectionError("keyframe times and strengths must be finite numbers")
        if times[0] < 0:
            raise DirectionError(f"keyframe times are seconds on the video timeline (>= 0); got {times[0]:g}")
        for a, b in itertools.pairwise(times):
            if not b > a:
                raise DirectionError(f"keyframe times must increase: {b:g} s comes after {a:g} s")
        if self.kind not in EASES:
            raise DirectionError(f"unknown ease {self.kind!r}: expected one of {', '.join(EASES)}")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values", values)

    def __call__(self, t: float | None) -> float:
        """The value at time ``t`` seconds (None, e.g. a still image: time 0)."""
        t = 0.0 if t is None else float(t)
        ts, vs = self.times, self.values
        if t <= ts[0]:
            return vs[0]
        if t >= ts[-1]:
            return vs[-1]
        i = next(j for j in range(1, len(ts)) if t < ts[j])  # ts[i-1] <= t < ts[i]
        v0, v1 = vs[i - 1], vs[i]
        if v0 == v1:
            return v0
        e = ease((t - ts[i - 1]) / (ts[i] - ts[i - 1]), self.kind)
        return (1.0 - e) * v0 + e * v1

    @property
    def extremes(self) -> tuple[float, float]:
        """(min, max) of the values (the eases never leave the range of the two keys they join)."""
        return min(self.values), max(self.values)

    def describe(self) -> str:
        """``"0:0,1:2"`` (the keys as they parse back)."""
        return ",".join(f"{t:g}:{v:g}" for t, v in zip(self.times, self.values))

    def __str__(self) -> str:
        return self.describe()


def parse_keyframes(text: str, kind: str = "smoothstep") -> Keyframes:
    """Parse ``"T:S,T:S,..."`` (seconds:strength, e.g. ``"0:0,1.0:2,4.5:2,5.0:0"``; spaces allowed).

    Raises:
        DirectionError: an empty text, a pair without ``:``, a number that does not parse or is not
            finite, negative or non-increasing times (one line naming what is wrong).
    """
    src = str(text)
    if not src.strip():
        raise DirectionError("keyframes are empty: expected TIME:STRENGTH pairs, e.g. '0:0,1.0:2'")
    times, values = [], []
    for part in src.split(","):
        if part.count(":") != 1:
            raise DirectionError(f"keyframes {src!r}: {part.strip()!r} is not TIME:STRENGTH (seconds:strength "
                                 "pairs separated by commas, e.g. '0:0,1.0:2')")
        t, v = part.split(":")
        times.append(_number(t, "time", src))
        values.append(_number(v, "strength", src))
    for a, b in itertools.pairwise(times):
        if not b > a:
            raise DirectionError(f"keyframes {src!r}: times must increase (seconds, sorted); {b:g} comes after {a:g}")
    if times[0] < 0:
        raise DirectionError(f"keyframes {src!r}: times are seconds on the video timeline (>= 0); got {times[0]:g}")
    return Keyframes(tuple(times), tuple(values), kind)


def _scaled(edit: LatentEdit, k: float) -> LatentEdit:
    """``edit`` with every strength multiplied by ``k`` (k == 1: ``edit`` itself)."""
    if k == 1.0:
        return edit
    for t in edit.terms:
        if not math.isfinite(k * t.strength):
            raise DirectionError(f"keyframe value {k:g} times the strength {t.strength:g} of {t.direction.name} "
                                 "is not finite")
    return LatentEdit([EditTerm(t.direction, k * t.strength, t.layers) for t in edit.terms])


class EditSchedule:
    """Which latent edit each face gets, by track and time.

    Args:
        default: the edit of every track without its own (``--attr`` / ``--direction``), or None (tracks
            without their own edit are not edited).
        tracks: the tracks the default edit applies to (``--track``); None = every track.
        per_track: ``{track id: edit}`` replacing the default for that track (``--track-attr``).
        keyframes: keyframes of every track without its own (``--keyframes``), or None (constant).
        per_track_keyframes: ``{track id: keyframes}`` (``--track-keyframes``); a track named here is
            edited (with its own edit, else the default one).

    A face of track ``tid`` at time ``t`` gets ``E_tid`` with every strength times ``k_tid(t)``
    (:meth:`edit_at`); a track with no edit (:meth:`edits_track` False) is left out of the render, so its
    pixels stay the input's.

    Raises:
        DirectionError: a negative track id; keyframes or a track named with no edit to apply; an edit
            that overflows at some keyframe value.
    """

    #: Cached scaled edits kept (per track and value) before the cache is cleared.
    CACHE = 512

    def __init__(self, default: LatentEdit | None, *, tracks: Collection[int] | None = None,
                 per_track: Mapping[int, LatentEdit] | None = None, keyframes: Keyframes | None = None,
                 per_track_keyframes: Mapping[int, Keyframes] | None = None):
        self.default = default
        self.tracks = None if tracks is None else frozenset(int(t) for t in tracks)
        self.per_track = {int(k): v for k, v in (per_track or {}).items()}
        self.keyframes = keyframes
        self.per_track_keyframes = {int(k): v for k, v in (per_track_keyframes or {}).items()}
        for tid in sorted(self.named_tracks):
            if tid < 0:
                raise DirectionError(f"track ids are >= 0 (see `vidinv track IN --face all --json`); got {tid}")
        if default is None:
            bad = sorted((set(self.per_track_keyframes) | set(self.tracks or ())) - set(self.per_track))
            if bad:
                raise DirectionError(f"track {bad[0]} is named but has no edit: give --attr for all tracks or "
                                     f"--track-attr {bad[0]} NAME")
        self._cache: dict[tuple[int | None, float], LatentEdit] = {}
        keys: list[int | None] = [None, *self.per_track, *self.per_track_keyframes]
        for key in keys:  # an offset that overflows at the extreme keyframe values fails here, not mid-run
            kf = self._keyframes(key)
            base = self._base(key)
            if kf is not None and base is not None:
                for k in kf.extremes:
                    _scaled(base, k)

    def peak_edits(self) -> list[LatentEdit]:
        """The edits at the extreme keyframe values of every track setting (for strength warnings); empty
        without keyframes."""
        out = []
        for key in [None, *self.per_track, *self.per_track_keyframes]:
            kf, base = self._keyframes(key), self._base(key)
            if kf is not None and base is not None:
                out += [_scaled(base, k) for k in kf.extremes]
        return out

    @property
    def named_tracks(self) -> set[int]:
        """Every track id the schedule names (``--track``, ``--track-attr``, ``--track-keyframes``)."""
        return set(self.tracks or ()) | set(self.per_track) | set(self.per_track_keyframes)

    @property
    def per_track_options(self) -> bool:
        """True when some track is named (the run then follows every face, as ``--face all``)."""
        return bool(self.named_tracks)

    def _base(self, tid: int | None) -> LatentEdit | None:
        if tid is not None and tid in self.per_track:
            return self.per_track[tid]
        if tid is None or self.tracks is None or tid in self.tracks or tid in self.per_track_keyframes:
            return self.default
        return None

    def _keyframes(self, tid: int | None) -> Keyframes | None:
        if tid is not None and tid in self.per_track_keyframes:
            return self.per_track_keyframes[tid]
        return self.keyframes

    def edits_track(self, track_id: int) -> bool:
        """Whether faces of ``track_id`` are edited (rendered) at all."""
        return self._base(int(track_id)) is not None

    def strength_factor(self, track_id: int, time: float | None) -> float:
        """``k(t)`` of ``track_id`` at ``time`` seconds (1 without keyframes)."""
        kf = self._keyframes(int(track_id))
        return 1.0 if kf is None else kf(time)

    def edit_at(self, track_id: int, time: float | None) -> LatentEdit:
        """The edit of a face of ``track_id`` at ``time`` seconds: its track's edit with every strength times
        the keyframe value (the track's edit object itself where the value is 1).

        Raises:
            KeyError: the track is not edited (:meth:`edits_track`).
        """
        tid = int(track_id)
        base = self._base(tid)
        if base is None:
            raise KeyError(f"track {tid} is not edited")
        k = self.strength_factor(tid, time)
        if k == 1.0:
            return base
        key = (tid if tid in self.per_track else None, k)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            hit = self._cache[key] = _scaled(base, k)
        return hit

    def batch_edit(self, faces: Sequence[tuple[int, float | None]]) -> LatentEdit | torch.Tensor:
        """The edit of a batch of faces given as ``(track id, time)``: one :class:`LatentEdit` when every
        face gets the same (today's constant-strength path, exactly), else the per-sample offsets
        Δw (B, n_latent, D) float64 on the CPU (for :func:`vidinv.edit.apply_edit`, which casts them to
        the codes' dtype and device as it does a LatentEdit's offset).

        Raises:
            KeyError: a face of a track that is not edited.
        """
        edits = [self.edit_at(tid, t) for tid, t in faces]
        if edits and all(e is edits[0] for e in edits):
            return edits[0]
        return torch.stack([e.delta(dtype=torch.float64) for e in edits])

    def describe(self) -> str:
        """One line: the default edit, its keyframes and tracks, then each track's own settings."""
        parts = []
        if self.default is not None:
            s = self.default.describe()
            if self.keyframes is not None:
                s += f" x keyframes {self.keyframes}"
            if self.tracks is not None:
                s += f" on track(s) {', '.join(map(str, sorted(self.tracks)))}"
            parts.append(s)
        for tid in sorted(set(self.per_track) | set(self.per_track_keyframes)):
            base = self._base(tid)
            kf = self._keyframes(tid)
            s = f"track {tid}: {base.describe() if base is not None else 'identity'}"
            if kf is not None:
                s += f" x keyframes {kf}"
            parts.append(s)
        return "; ".join(parts) if parts else "identity"


def group_track_items(pairs: Iterable[tuple[int, str]]) -> dict[int, list[str]]:
    """``[(track id, value), ...]`` (repeated ``--track-attr ID SPEC``) grouped by track, in the order given."""
    out: dict[int, list[str]] = {}
    for tid, v in pairs:
        out.setdefault(int(tid), []).append(str(v))
    return out
