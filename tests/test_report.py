"""vidinv.report without video decoding: document, schema, plots, HTML, input expansion and pairing."""
from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from vidinv.io.outputs import json_safe
from vidinv.metrics.identity import cosine_similarity
from vidinv.report import output_group, plot_document, write_outputs
from vidinv.report.compute import PER_FRAME_PIXEL, FaceRecord, PairAnalysis, ReportOptions, VideoAnalysis
from vidinv.report.document import build_document, stats
from vidinv.report.html import render_html
from vidinv.report.inputs import InputError, expand_videos, pair_outputs
from vidinv.report.schema import SchemaError, load_schema, validate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _face(tid=0):
    return FaceRecord(track_id=tid, interpolated=False, landmarks=np.zeros((68, 2)), quad=np.zeros((4, 2)),
                      qsize=100.0, box=np.array([0.0, 0.0, 10.0, 10.0]))


def _video(label, role, emb, faces):
    k = emb.shape[0]
    return VideoAnalysis(path=Path(f"/data/{label}"), label=label, role=role,
                         info={"width": 64, "height": 48, "fps": 25.0, "num_frames": k, "estimated_frames": k,
                               "rotation": 0},
                         frame_index=list(range(k)), faces=faces, embeddings={"dlib": emb.astype(np.float32)},
                         frontend_stats={"frames": k}, timing={"total": 1.0, "identity": 0.4, "pixel": 0.1,
                                                               "frontend": 0.5, "ms_per_frame": 1000.0 / k})


def _models():
    return {"identity": [{"key": "dlib", "network": "dlib test", "file": "/x/model.dat", "sha256": "00",
                          "dim": 128, "alignment": "chip", "crops": "150×150 chips",
                          "summary": "dlib test net on 150×150 chips", "similarity": "cosine"}],
            "primary_identity": "dlib", "lpips": {"available": False, "reason": "backbone not cached"},
            "notes": []}


@pytest.fixture()
def synthetic():
    """A source of 5 frames and an output of 4 frames (frame 2 of the output has no face)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(128)
    src_e = np.stack([base + 0.05 * rng.standard_normal(128) for _ in range(5)])
    out_e = np.stack([base + 0.3 * rng.standard_normal(128) for _ in range(4)])
    out_e[2] = np.nan
    src = _video("clip.mp4", "source", src_e, [_face() for _ in range(5)])
    out = _video("clip_edit.mp4", "output", out_e, [_face(), _face(), None, _face()])
    out.source = src.label
    per = {k: np.linspace(0.1, 0.4, 4) for k in PER_FRAME_PIXEL}
    per["crop_psnr"] = np.array([30.0, np.inf, 25.0, 20.0])
    per["bg_psnr"] = np.array([np.inf, np.inf, np.inf, np.inf])
    per["change_source"] = np.array([np.nan, 1.0, 2.0, 3.0])
    per["change_output"] = np.array([np.nan, 2.0, 2.0, 5.0])
    pair = PairAnalysis(source=src, output=out, compared=4, per_frame=per, lpips=None,
                        lpips_reason="backbone not cached", warnings=["frame counts differ: 5 vs 4"])
    doc = json_safe(build_document([src, out], [pair], ReportOptions(), _models(),
                                  same_person={"dlib": ("euclidean", 0.6)}))
    return doc, src_e, out_e


def test_json_safe_and_stats():
    x = {"a": float("nan"), "b": float("inf"), "c": -np.inf, "d": np.float32(1.5), "e": np.int64(3),
         "f": np.array([1.0, np.nan]), "g": (True, np.bool_(False)), "h": Path("/x"), 7: Fraction(30000, 1001)}
    assert json_safe(x) == \
        {"a": None, "b": "inf", "c": "-inf", "d": 1.5, "e": 3, "f": [1.0, None], "g": [True, False], "h": "/x",
         "7": "30000/1001"}
    # the inversion export's convention: every non-finite number is null
    assert json_safe(x, infinity="null") == {**json_safe(x), "b": None, "c": None}
    assert json_safe([np.float32(np.nan), np.float64(-np.inf)], infinity="null") == [None, None]
    s = stats([1.0, 3.0, np.nan])
    assert s["count"] == 2 and s["mean"] == 2.0 and s["std"] == 1.0 and s["min"] == 1.0
    s = stats([20.0, np.inf])
    assert s["mean"] == np.inf and s["max"] == np.inf and math.isnan(s["std"]) and s["min"] == 20.0
    assert stats([])["count"] == 0 and math.isnan(stats([np.nan])["mean"])


def test_document_numbers(synthetic):
    doc, src_e, out_e = synthetic
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN / Infinity tokens
    c = doc["comparisons"][0]
    ci = c["identity"]["dlib"]
    sims = [cosine_similarity(src_e[i], out_e[i]) for i in (0, 1, 3)]
    assert ci["similarity"]["mean"] == pytest.approx(np.mean(sims), rel=1e-5)
    assert ci["similarity_per_frame"][2] is None
    assert ci["frames_used"] == 3 and ci["excluded_no_face_output"] == 1 and ci["excluded_no_face_source"] == 0
    d = [np.linalg.norm(src_e[i].astype(np.float32) - out_e[i].astype(np.float32)) for i in (0, 1, 3)]
    assert ci["same_person"]["same_person_fraction"] == pytest.approx(np.mean(np.array(d) < 0.6))
    assert ci["same_person"]["distance"]["mean"] == pytest.approx(np.mean(d), rel=1e-5)
    # identity consistency on the frames valid in both: reference = frame 0, frames 1 and 3
    ic_out = np.mean([cosine_similarity(out_e[i], out_e[0]) for i in (1, 3)])
    assert ci["consistency_output"] == pytest.approx(ic_out, rel=1e-5)
    assert ci["consistency_change"] == pytest.approx(ci["consistency_output"] - ci["consistency_source"])
    assert ci["tl_id"]["pairs"] == 1 and ci["tg_id"]["pairs"] == 6  # (0,1) adjacent; ordered pairs of 0, 1, 3
    assert ci["skipped_frames"] == [2]
    fc = c["face_crop"]
    assert fc["psnr"]["mean"] == "inf" and fc["psnr"]["min"] == 20.0 and fc["per_frame"]["psnr"][1] == "inf"
    assert fc["lpips"] == {"available": False, "reason": "backbone not cached"}
    assert fc["per_frame"]["lpips"] is None
    assert c["background"]["psnr"]["median"] == "inf"
    assert c["flicker"]["value"] == pytest.approx(np.mean([2.0, 2.0, 5.0]) - np.mean([1.0, 2.0, 3.0]))
    assert c["frames"] == {"source": 5, "output": 4, "compared": 4, "count_mismatch": True, "identity_frames": 4}
    v_out = doc["videos"][1]
    assert v_out["source"] == "v0" and v_out["frames"]["without_face"] == 1
    assert v_out["frames"]["without_face_frames"] == [2] and v_out["frames"]["has_face"][2] is False
    assert any("without a tracked face" in w for w in doc["warnings"])
    assert "frame counts differ: 5 vs 4" in doc["warnings"]
    vi = doc["videos"][0]["identity"]["dlib"]
    assert vi["reference_frame"] == 0 and vi["frames_used"] == 5 and vi["similarity_to_reference"][0] == 1.0


def test_schema_accepts_the_document_and_rejects_broken_ones(synthetic):
    doc, _, _ = synthetic
    schema = load_schema()
    assert schema["$id"] == doc["schema"] == "vidinv-report/2"
    jsonschema.Draft202012Validator.check_schema(schema)
    validate(doc)
    broken = []
    d = copy.deepcopy(doc)
    del d["comparisons"][0]["identity"]["dlib"]["tl_id"]
    broken.append((d, "tl_id"))
    d = copy.deepcopy(doc)
    d["comparisons"][0]["identity"]["dlib"]["tl_id"]["ratio_of_means"] = 1.0  # only under its own name
    broken.append((d, "ratio_of_means"))
    d = copy.deepcopy(doc)
    del d["comparisons"][0]["identity"]["dlib"]["skipped_frames"]
    broken.append((d, "skipped_frames"))
    d = copy.deepcopy(doc)
    del d["models"]["temporal_identity"]
    broken.append((d, "temporal_identity"))
    d = copy.deepcopy(doc)
    del d["models"]["identity"][0]["crops"]
    broken.append((d, "crops"))
    d = copy.deepcopy(doc)
    d["videos"][1]["detection"]["cnn_frames"] = -1
    broken.append((d, "cnn_frames"))
    d = copy.deepcopy(doc)
    d["videos"][0]["role"] = "reference"
    broken.append((d, "role"))
    d = copy.deepcopy(doc)
    d["comparisons"][0]["face_crop"]["psnr"]["mean"] = "infinity"
    broken.append((d, "mean"))
    d = copy.deepcopy(doc)
    d["unexpected"] = 1
    broken.append((d, "unexpected"))
    d = copy.deepcopy(doc)
    d["videos"][0]["frames"]["analysed"] = -1
    broken.append((d, "analysed"))
    for bad, what in broken:
        with pytest.raises(SchemaError, match=what):
            validate(bad)


def _unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


@pytest.fixture()
def head_turn():
    """Source frames 10..13 at angles 0, 60, 60, 30 deg (a head turn), output constant at 0 deg with no face
    in its last frame: STIT's mean of ratios and the ratio of means differ."""
    src_e = np.array([_unit(0), _unit(60), _unit(60), _unit(30)])
    out_e = np.array([_unit(0), _unit(0), _unit(0), [np.nan, np.nan]])
    src = _video("turn.mp4", "source", src_e, [_face() for _ in range(4)])
    src.frame_index = [10, 11, 12, 13]
    src.detection = {"detector": "dlib", "cnn_fallback": True, "cnn_frames": 2, "cnn_face_frames": 1,
                     "cnn_frame_index": [11, 12], "hog_missed": 2, "blank_frames": 0}
    out = _video("turn_edit.mp4", "output", out_e, [_face(), _face(), _face(), None])
    out.detection = {"detector": "dlib", "cnn_fallback": True, "cnn_frames": 0, "cnn_face_frames": 0,
                     "cnn_frame_index": [], "hog_missed": 0, "blank_frames": 1}
    per = {k: np.full(4, np.nan) for k in PER_FRAME_PIXEL}
    pair = PairAnalysis(source=src, output=out, compared=4, per_frame=per, lpips=None, lpips_reason="off")
    return json_safe(build_document([src, out], [pair], ReportOptions(), _models()))


def test_report_tl_id_tg_id_are_stit_mean_of_ratios(head_turn):
    doc = head_turn
    validate(doc)
    ci = doc["comparisons"][0]["identity"]["dlib"]
    # frames 10, 11, 12 count (13 has no output face): S_src(10,11) = 0.5, S_src(11,12) = 1, S_src(10,12) = 0.5;
    # S_edit = 1 everywhere -> R = 2, 1, 2
    assert ci["tl_id"]["value"] == pytest.approx((2 + 1) / 2)  # mean of ratios over (10,11), (11,12)
    assert ci["tl_id_ratio_of_means"] == pytest.approx(1 / 0.75)  # not STIT's: 1.333
    assert ci["tg_id"]["value"] == pytest.approx((2 + 1 + 2) / 3)  # over the 6 ordered pairs
    assert ci["tg_id_ratio_of_means"] == pytest.approx(1.5)
    assert ci["tl_id"]["pairs"] == 2 and ci["tg_id"]["pairs"] == 6
    assert ci["tl_id"]["source_mean"] == pytest.approx(0.75) and ci["tl_id"]["output_mean"] == pytest.approx(1.0)
    assert ci["skipped_frames"] == [13] and ci["tl_id"]["undefined_pairs"] == 0
    ti = doc["models"]["temporal_identity"]
    assert ti["embeddings"] == {"dlib": "dlib test net on 150×150 chips"}
    assert "mean of R over adjacent pairs" in ti["definition"] and "insightface on full frames" in ti["comparability"]
    assert "not STIT" in ti["ratio_of_means"]
    assert doc["videos"][0]["detection"]["cnn_frame_index"] == [11, 12]
    assert any("CNN fallback ran on 2 of 4 frames" in w and "found one in 1" in w for w in doc["warnings"])


def test_summary_and_html_state_the_stit_numbers_and_the_network(head_turn, tmp_path):
    from vidinv.report import summary_lines

    lines = summary_lines(head_turn)
    text = "\n".join(lines)
    assert "turn_edit.mp4 vs turn.mp4: identity similarity [dlib]" in text
    assert "TL-ID [dlib] 1.5000 (2 adjacent pairs)  TG-ID [dlib] 1.6667 (6 ordered pairs)  skipped frames: 1 [13]" \
        in text
    assert "ratio of means (not STIT's TL-ID/TG-ID) [dlib]: 1.3333 / 1.5000" in text
    assert "from dlib = dlib test net on 150×150 chips" in text and "insightface on full frames" in text
    src_line = next(x for x in lines if x.startswith("turn.mp4 "))
    assert "CNN fallback on 2 frame(s), found a face in 1" in src_line
    page = render_html(head_turn, tmp_path)
    assert "TL-ID (STIT)" in page and "TL-ID ratio of means (not STIT)" in page
    cells = "".join(f'<td class="">{v}</td>' for v in ("1.500", "1.667", "1.333", "1.500"))
    assert cells in page  # TL-ID, TG-ID (STIT), then the two ratios of means
    assert "150×150 chips" in page and "insightface on full frames" in page
    assert "2 frames (1 with a face)" in page


def test_plots_and_self_contained_html(synthetic, tmp_path):
    doc, _, _ = synthetic
    entries = plot_document(tmp_path, doc)
    kinds = sorted(e["kind"] for e in entries)
    assert kinds == ["consistency_boxplot", "identity", "quality"]
    for e in entries:
        data = (tmp_path / e["file"]).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    doc["plots"] = entries
    jpath, hpath = write_outputs(tmp_path, doc)
    assert json.loads(jpath.read_text()) == doc
    page = hpath.read_text()
    assert page.count("src='data:image/png;base64,") == len(entries)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "∞" in page and "n/a" in page and "backbone not cached" in page
    assert render_html(doc, tmp_path) == page


def test_expand_and_pair_videos(tmp_path):
    for name in ("a.mp4", "b.MOV", "a_edit.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_videos(tmp_path)] == ["a.mp4", "a_edit.mp4", "b.MOV"]
    assert [p.name for p in expand_videos(str(tmp_path / "a*.mp4"))] == ["a.mp4", "a_edit.mp4"]
    assert expand_videos(tmp_path / "notes.txt")[0].name == "notes.txt"  # explicit files are taken as given
    with pytest.raises(InputError):
        expand_videos(tmp_path / "missing.mp4")
    with pytest.raises(InputError):
        expand_videos(str(tmp_path / "*.avi"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        expand_videos(tmp_path / "empty")
    a, b = tmp_path / "a.mp4", tmp_path / "b.MOV"
    outs = [tmp_path / "a_edit.mp4", tmp_path / "b-fs.mp4", tmp_path / "other" / "a.mp4"]
    plan = pair_outputs([a, b], outs)
    assert plan == [(a, [outs[0], outs[2]]), (b, [outs[1]])]
    assert pair_outputs([a], outs) == [(a, outs)]  # one source: everything is compared with it
    with pytest.raises(InputError, match="matches no source"):
        pair_outputs([a, b], [tmp_path / "zz.mp4"])
    # the longest matching stem wins
    ab = tmp_path / "a_b.mp4"
    assert pair_outputs([a, ab], [tmp_path / "a_b_x.mp4"])[1][1] == [tmp_path / "a_b_x.mp4"]
    assert output_group("talk_fs.mp4", "talk.mp4") == "fs"
    assert output_group("other.mp4", "talk.mp4") == "output"
    assert output_group("talk.mp4", "talk.mp4") == "output"
