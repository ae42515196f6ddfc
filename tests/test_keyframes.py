"""Keyframed and per-track strengths (issue 12, item 4): ``vidinv edit --keyframes``, ``--track``,
``--track-attr``, ``--track-keyframes``; :mod:`vidinv.edit.keyframes`.

Unit tests of the easing (hand-computed values) and of :class:`~vidinv.edit.keyframes.EditSchedule`, then
end to end with the tiny bundle (tests/tiny_bundle.py; the CLI in this process, click's runner):

* a keyframed re-render of an inversion export equals, frame for frame, a constant-strength-0 render
  before the ramp and a constant-strength-2 render after it (outputs written losslessly, ``--crf 0``,
  so "equal" is exact: the held strengths give the constant edit's Δw bit for bit);
* on a side-by-side clip of two people, ``--track-attr ID`` edits the chosen track only, the other face
  keeping the input's pixels (within the codec's round trip), with the id read from ``vidinv track --json``.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from conftest import invoke_cli as _invoke
from conftest import require_shared
from tiny_bundle import write_tiny_bundle

from vidinv.edit import Direction, DirectionError, EditSchedule, LatentEdit, apply_edit, parse_keyframes
from vidinv.edit.keyframes import Keyframes, ease, smoothstep
from vidinv.io.video import VideoWriter, read_frames

# ------------------------------------------------------------------------------------------------ easing


def test_smoothstep_hand_values():
    # 3u^2 - 2u^3
    assert smoothstep(0.0) == 0.0 and smoothstep(1.0) == 1.0
    assert smoothstep(0.5) == 0.5
    assert smoothstep(0.25) == pytest.approx(0.15625, abs=1e-15)  # 3/16 - 2/64 = 10/64
    assert smoothstep(0.75) == pytest.approx(0.84375, abs=1e-15)  # 27/16 - 54/64 = 54/64
    assert smoothstep(0.1) == pytest.approx(0.028, abs=1e-15)  # 0.03 - 0.002
    assert smoothstep(-1.0) == 0.0 and smoothstep(2.0) == 1.0  # clipped
    assert ease(0.25, "linear") == 0.25
    with pytest.raises(ValueError, match="unknown ease"):
        ease(0.5, "bounce")


def test_keyframes_evaluate_with_ease_and_hold():
    k = parse_keyframes("0:0,1.0:2,4.5:2,5.0:0")
    assert k.times == (0.0, 1.0, 4.5, 5.0) and k.values == (0.0, 2.0, 2.0, 0.0)
    assert k(0.0) == 0.0 and k(-3.0) == 0.0  # held before the first key
    assert k(0.25) == pytest.approx(2 * 0.15625, abs=1e-15)
    assert k(0.5) == pytest.approx(1.0, abs=1e-15)
    assert k(0.75) == pytest.approx(2 * 0.84375, abs=1e-15)
    assert k(1.0) == 2.0 and k(2.7) == 2.0 and k(4.5) == 2.0  # flat segment: exactly the value
    assert k(4.625) == pytest.approx(2 * (1 - 0.15625), abs=1e-15)  # u = 0.25 on the way down
    assert k(5.0) == 0.0 and k(60.0) == 0.0  # held after the last key
    assert k(None) == 0.0  # a still image: time 0
    one = parse_keyframes(" 2 : 1.5 ")
    assert one(0) == one(2) == one(9) == 1.5
    lin = Keyframes((0.0, 2.0), (1.0, 3.0), kind="linear")
    assert lin(0.5) == 1.5 and lin(1.0) == 2.0
    # between keys the value stays within the two keys' range and is monotonic
    ts = np.linspace(1.0, 4.5, 50)
    down = parse_keyframes("1:3,4.5:-1")
    vals = [down(t) for t in ts]
    assert all(b <= a for a, b in itertools.pairwise(vals)) and max(vals) == 3.0 and min(vals) == -1.0
    assert k.describe() == "0:0,1:2,4.5:2,5:0"


@pytest.mark.parametrize("text, why", [
    ("", "empty"), ("0:0,1", "'1' is not TIME:STRENGTH"), ("0:0:1", "is not TIME:STRENGTH"),
    ("a:1", "time 'a' is not a number"), ("0:x", "strength 'x' is not a number"),
    ("0:nan", "not a finite number"), ("inf:1", "not a finite number"), ("0:1e400", "not a finite number"),
    ("1:0,1:2", "times must increase"), ("2:0,1:2", "times must increase"), ("-1:0,1:1", ">= 0"),
])
def test_keyframes_errors_are_one_line(text, why):
    with pytest.raises(DirectionError, match=why) as e:
        parse_keyframes(text)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ schedule


def _direction(seed: int, name: str) -> Direction:
    g = torch.Generator().manual_seed(seed)
    return Direction.from_array(torch.randn(18, 512, generator=g, dtype=torch.float64).numpy(), "unit", name=name)


def test_schedule_strengths_by_track_and_time():
    smile, age = _direction(1, "smile"), _direction(2, "age")
    default = LatentEdit([(smile, 1.0)])
    own = LatentEdit([(age, 1.0), (smile, 0.5)])
    sched = EditSchedule(default, tracks=[0], per_track={3: own}, keyframes=parse_keyframes("0:0,1:2"),
                         per_track_keyframes={5: parse_keyframes("0:1,1:-1")})
    assert sched.named_tracks == {0, 3, 5} and sched.per_track_options
    assert [sched.edits_track(t) for t in range(6)] == [True, False, False, True, False, True]
    # a held value of 1: the track's edit object itself (the constant path)
    assert sched.edit_at(5, 0.0) is default and sched.edit_at(3, None) is not own  # k(0) = 0 for track 3
    e = sched.edit_at(3, 0.5)  # k = 1 exactly at u = 0.5
    assert e is own
    e = sched.edit_at(0, 2.0)
    assert [t.strength for t in e.terms] == [2.0]
    torch.testing.assert_close(e.delta64(), smile.delta64(2.0), rtol=0, atol=0)
    e = sched.edit_at(3, 0.25)  # k = 0.3125
    assert [t.strength for t in e.terms] == [0.3125, 0.15625]
    torch.testing.assert_close(e.delta64(), age.delta64(0.3125) + smile.delta64(0.15625), rtol=0, atol=1e-12)
    with pytest.raises(KeyError):
        sched.edit_at(1, 0.0)
    # a batch: one edit when all faces share it, else per-sample dw that apply_edit takes as it is
    assert sched.batch_edit([(0, 3.0), (0, 4.0)]).terms[0].strength == 2.0
    d = sched.batch_edit([(0, 0.0), (3, 0.5), (0, 9.0)])
    assert isinstance(d, torch.Tensor) and d.shape == (3, 18, 512) and d.dtype == torch.float64
    assert not d[0].any()
    torch.testing.assert_close(d[1], own.delta(dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(d[2], smile.delta64(2.0), rtol=0, atol=0)
    assert "track 3" in sched.describe() and "keyframes 0:0,1:2" in sched.describe()


def test_schedule_refuses_tracks_without_an_edit_and_overflow():
    smile = _direction(1, "smile")
    with pytest.raises(DirectionError, match="track 4 is named but has no edit"):
        EditSchedule(None, per_track_keyframes={4: parse_keyframes("0:1")})
    with pytest.raises(DirectionError, match="track 2 is named but has no edit"):
        EditSchedule(None, tracks=[2], per_track={1: LatentEdit([(smile, 1.0)])})
    with pytest.raises(DirectionError, match=">= 0"):
        EditSchedule(LatentEdit([(smile, 1.0)]), tracks=[-1])
    with pytest.raises(DirectionError, match="is not finite"):
        EditSchedule(LatentEdit([(smile, 1e300)]), keyframes=parse_keyframes("0:0,1:1e300"))
    only = EditSchedule(None, per_track={1: LatentEdit([(smile, 1.0)])})
    assert only.edits_track(1) and not only.edits_track(0) and only.peak_edits() == []
    peaks = EditSchedule(LatentEdit([(smile, 0.5)]), keyframes=parse_keyframes("0:-2,1:8,2:3")).peak_edits()
    assert [e.terms[0].strength for e in peaks] == [-1.0, 4.0]


def test_per_sample_dw_renders_as_the_constant_edit():
    """apply_edit with the schedule's (B, n_latent, 512) Δw equals, sample for sample, the constant edits
    (a small generator at 256, 14 style rows, rendered as G(w'))."""
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(256, 512, 2, channel_multiplier=1, max_channels=8).eval()
    g = torch.Generator().manual_seed(1)
    smile = Direction.from_array(torch.randn(14, 512, generator=g, dtype=torch.float64).numpy(), "unit",
                                 name="smile", n_latent=14)
    sched = EditSchedule(LatentEdit([(smile, 1.0)]), keyframes=parse_keyframes("0:0,1:2"))
    w = torch.randn(3, 14, 512, generator=g) * 0.3
    mixed = sched.batch_edit([(0, 0.0), (0, 1.0), (0, 0.5)])
    assert isinstance(mixed, torch.Tensor)
    got = apply_edit(G, w, None, mixed)
    for i, s in enumerate((0.0, 2.0, 1.0)):
        want = apply_edit(G, w, None, LatentEdit([(smile, s)]))
        torch.testing.assert_close(got[i], want[i], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("tiny_keyframes")
    write_tiny_bundle(h, directions=True)
    return h



def _frames(path):
    return {f.index: f for f in read_frames(path)}


def test_help_groups_the_options():
    r = _invoke(["edit", "--help"], None)
    assert r.exit_code == 0
    head, _, section = r.output.partition("Keyframed and per-track strengths:\n")
    assert section and "Options:" in head
    for opt in ("--keyframes", "--track ID", "--track-attr", "--track-keyframes"):
        assert opt in section and opt + " " not in head.split("Options:")[1]


def test_bad_keyframes_and_track_options_fail_before_any_model(tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    empty = tmp_path / "home"  # no weights at all: the options are judged first
    empty.mkdir()
    for extra, why in ((["--attr", "smile", "--keyframes", "0:0,0.5"], "is not TIME:STRENGTH"),
                       (["--attr", "smile", "--keyframes", "1:0,0.5:1"], "times must increase"),
                       (["--track-attr", "1", "smile=nan"], "finite"),
                       (["--attr", "smile", "--track", "-2"], ">= 0"),
                       (["--attr", "smile", "--track-keyframes", "1", "0:1", "--track-keyframes", "1", "0:2"],
                        "given twice")):
        r = _invoke(["edit", str(src), "-o", str(tmp_path / "o.mp4"), *extra], empty)
        assert r.exit_code != 0, extra
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vidinv: error: ") and why in lines[0], (extra, r.stderr)
        assert not (tmp_path / "o.mp4").exists()


def test_keyframed_render_equals_constant_renders_outside_the_ramp(tiny_home, tmp_path):
    """Acceptance: strength 0 held to 0.1 s, smoothstep ramp to 2 at 0.2 s, held after; the keyframed frames
    equal the constant-0 run's up to 0.1 s and the constant-2 run's from 0.2 s, and differ from both on the
    ramp (re-renders of one inversion export: the same codes and quads in every run; lossless output,
    batches of one face)."""
    src = require_shared("videos") / "talking_wink.mp4"  # 30 fps: frame i at i/30 s
    inv = tmp_path / "inv"
    r = _invoke(["invert", str(src), "-o", str(inv), "--end", "0.3", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    # --gate off: the tiny generator draws no face, which the gate's identity component would fade out
    common = ["--from-inversion", str(inv), "--attr", "smile", "--mask", "landmarks", "--crf", "0", "--batch-size",
              "1", "--gate", "off", "-q"]
    kf, c0, c2 = tmp_path / "kf.mp4", tmp_path / "c0.mp4", tmp_path / "c2.mp4"
    for out, extra in ((kf, ["--keyframes", "0:0,0.1:0,0.2:2", "--end", "0.3"]),  # frames 0-8
                       (c0, ["--strength", "0", "--end", "0.19"]),  # frames 0-5
                       (c2, ["--strength", "2", "--start", "0.09", "--end", "0.3"])):  # frames 3-8
        r = _invoke(["edit", str(src), "-o", str(out), *common, *extra], tiny_home)
        assert r.exit_code == 0, (extra, r.stderr)
    fk = [f.image for f in read_frames(kf)]
    f0 = dict(enumerate(f.image for f in read_frames(c0)))
    f2 = {3 + j: f.image for j, f in enumerate(read_frames(c2))}  # an output's times start at its window
    assert len(fk) == 9 and sorted(f0) == list(range(6)) and sorted(f2) == list(range(3, 9))
    for i, img in enumerate(fk):
        t = i / 30
        if t <= 0.1:  # before the ramp (0.1 s: its first key)
            np.testing.assert_array_equal(img, f0[i], err_msg=f"frame {i} ({t:.3f} s)")
        elif t >= 0.2 - 1e-9:  # after it (0.2 s: its last key)
            np.testing.assert_array_equal(img, f2[i], err_msg=f"frame {i} ({t:.3f} s)")
        else:  # eased in between: neither strength 0 nor 2
            assert np.abs(img.astype(int) - f0[i]).max() > 2 and np.abs(img.astype(int) - f2[i]).max() > 2, i
    assert np.abs(f0[3].astype(int) - f2[3]).max() > 10  # strength 2 visibly moved the face


def _side_by_side(path, n: int) -> None:
    """Two 512x512 clips of two people next to each other: a 1024x512 clip of ``n`` frames."""
    videos = require_shared("videos")
    a = [f.image for f, _ in zip(read_frames(videos / "talking_wink.mp4"), range(n))]
    b = [f.image for f, _ in zip(read_frames(videos / "greenscreen_frontal.mp4"), range(n))]
    with VideoWriter(path, 1024, 512, fps=25, crf=0) as w:
        for x, y in zip(a, b):
            w.write(np.concatenate([x, y], axis=1))


def test_track_attr_edits_the_chosen_track_only(tiny_home, tmp_path, caplog):
    clip = tmp_path / "two.mp4"
    _side_by_side(clip, 4)
    js = tmp_path / "tracks.json"
    r = _invoke(["track", str(clip), "-o", str(tmp_path / "preview.mp4"), "--face", "all", "--json", str(js),
                 "--quiet"], tiny_home)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(js.read_text())
    assert len(doc["tracks"]) == 2
    right = {f["track_id"] for fr in doc["frames"] for f in fr["faces"] if np.mean(f["box"][::2]) > 512}
    assert len(right) == 1
    tid = right.pop()
    out = tmp_path / "out.mp4"
    # default --face largest: the per-track option tracks every face, so the id is the one `track` showed
    r = _invoke(["edit", str(clip), "-o", str(out), "--track-attr", str(tid), "smile=2", "--track-attr", str(tid),
                 "age=-1", "--mask", "landmarks", "--crf", "0", "--gate", "off"], tiny_home)  # tiny G draws no face
    assert r.exit_code == 0, r.stderr
    assert "4 frames, 4 with a face (1 track(s))" in r.stderr and f"track {tid}: " in r.stderr
    ins, outs = list(read_frames(clip)), list(read_frames(out))  # both decoded the same way
    assert len(ins) == len(outs) == 4

    def box_diff(x, y, box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return np.abs(x.image[y0:y1, x0:x1].astype(int) - y.image[y0:y1, x0:x1]).mean()

    for fr, x, y in zip(doc["frames"], ins, outs):
        for f in fr["faces"]:
            d = box_diff(x, y, f["box"])
            if f["track_id"] == tid:
                assert d > 10, d  # the chosen track: edited
            else:
                assert d < 1.0, d  # the other person: the input, through the codec's round trip
    # a named track that never appears: a warning naming the ids found
    with caplog.at_level("WARNING", logger="vidinv.pipeline.edit"):
        r = _invoke(["edit", str(clip), "-o", str(tmp_path / "none.mp4"), "--attr", "smile", "--track", "7",
                     "--mask", "landmarks", "--end", "0.04", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    assert "track(s) 7 not found" in caplog.text and "tracks found: 0, 1" in caplog.text
