"""The inversion export format (vidinv.io.inversion): round trip, versions, corruption, crashes, resume."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vidinv.io.inversion import (
    FORMAT_VERSION,
    MANIFEST,
    IncompleteInversionError,
    InversionFormatError,
    InversionReader,
    InversionVersionError,
    InversionWriter,
    ModelFile,
    model_file,
)

REPO = Path(__file__).resolve().parents[1]
GEN = {"size": 1024, "style_dim": 512, "n_latent": 18, "num_layers": 17, "n_mlp": 8, "channel_multiplier": 2}
SOURCE = {"path": "clip.mp4", "width": 640, "height": 360, "rotation": 0, "fps": Fraction(30000, 1001),
          "time_base": Fraction(1, 30000), "num_frames": 10, "duration": 0.3337, "codec": "h264"}
#: The Feature-Style inverter's export settings (what vidinv.pipeline.invert passes from its inverter).
FS = {"encoder": "fs", "feature_shape": (512, 16, 16), "feature_index": 5}
MODELS = [ModelFile("143_enc.pth", "encoder", "a" * 64), ModelFile("psp_ffhq_encode.pt", "generator", "b" * 64)]


def _records(n_frames: int, tracks=(0,), seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for f in range(n_frames):
        for t in tracks:
            out.append(dict(
                w=rng.standard_normal((18, 512)).astype(np.float32),
                F=(rng.standard_normal((512, 16, 16)) * 3).astype(np.float32),
                quad=rng.uniform(0, 600, (4, 2)),
                landmarks=rng.uniform(0, 600, (68, 2)),
                track_id=t, frame_index=f, pts=f * 1001))
    return out


def _write(path, recs, chunk_size=4, **kw):
    with InversionWriter(path, **FS, generator=GEN, models=MODELS, source=SOURCE, chunk_size=chunk_size,
                         **kw) as wr:
        for r in recs:
            wr.add(**r)
    return wr


def test_round_trip(tmp_path):
    recs = _records(5, tracks=(0, 3))
    out = tmp_path / "clip.vinv"
    _write(out, recs, chunk_size=4, extra={"smoothing": {"sigma": 2.0}})
    rd = InversionReader(out)
    assert rd.version == FORMAT_VERSION and rd.complete and len(rd) == 10
    assert rd.encoder == {"kind": "fs", "feature_index": 5}
    assert rd.generator["n_latent"] == 18 and rd.models == MODELS
    assert rd.source["fps"] == "30000/1001" and rd.time_base == Fraction(1, 30000)
    assert rd.extra == {"smoothing": {"sigma": 2.0}}
    assert rd.tracks() == [0, 3]
    # chunks end on frame boundaries: 4 records (2 frames x 2 tracks) per chunk
    assert [c["records"] for c in rd.manifest["chunks"]] == [4, 4, 2]
    got = list(rd)
    assert len(got) == len(recs)
    for i, (g, r) in enumerate(zip(got, recs)):
        assert g.index == i and g.frame_index == r["frame_index"] and g.track_id == r["track_id"]
        assert g.w.dtype == np.float32 and g.w.shape == (18, 512)
        np.testing.assert_array_equal(g.w, r["w"])
        assert g.F.dtype == np.float16 and g.F.shape == (512, 16, 16)
        # float16: relative step 2**-11
        np.testing.assert_allclose(g.F.astype(np.float32), r["F"], rtol=2 ** -11, atol=2 ** -24)
        assert g.quad.dtype == np.float64 and g.quad.shape == (4, 2)
        np.testing.assert_array_equal(g.quad, r["quad"])
        np.testing.assert_array_equal(g.landmarks, r["landmarks"])
        assert g.pts == r["pts"]
        assert g.time == pytest.approx(r["pts"] / 30000)
        assert g.crop_path is None and g.recon_path is None
    # random access and per-track iteration
    assert rd[7].frame_index == recs[7]["frame_index"] and rd[-1].index == 9
    np.testing.assert_array_equal(rd[5].w, recs[5]["w"])
    assert [r.frame_index for r in rd.frames(track_id=3)] == list(range(5))
    batches = list(rd.iter_batches())
    assert [b.first_record for b in batches] == [0, 4, 8]
    assert batches[1].w.shape == (4, 18, 512) and batches[1].F.dtype == np.float16
    with pytest.raises(IndexError):
        rd[10]


def test_torch_inputs_images_and_psp(tmp_path):
    out = tmp_path / "p.vinv"
    crop = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    recon = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
    with InversionWriter(out, encoder="psp", generator=GEN, models=MODELS, chunk_size=2, save_crops=True,
                         save_recon=True) as wr:
        wr.add(w=torch.zeros(1, 18, 512), quad=np.zeros((4, 2)), landmarks=np.zeros((68, 2)), track_id=0,
               frame_index=0, crop=crop, recon=recon)
        wr.add(w=torch.ones(18, 512, dtype=torch.float64), quad=np.ones((4, 2)), landmarks=np.ones((68, 2)),
               track_id=0, frame_index=1)
        with pytest.raises(ValueError, match="no feature code"):
            wr.add(w=np.zeros((18, 512)), F=np.zeros((512, 16, 16)), quad=np.zeros((4, 2)),
                   landmarks=np.zeros((68, 2)), track_id=0, frame_index=2)
    rd = InversionReader(out)
    assert not rd.has_features and rd.encoder["kind"] == "psp"
    r0, r1 = rd[0], rd[1]
    assert r0.F is None and r0.pts is None and r0.time is None
    np.testing.assert_array_equal(rd.load_image(r0, "crops"), crop)
    rec = rd.load_image(r0, "recon")
    assert rec.shape == (64, 64, 3) and rec.dtype == np.uint8 and rec[0, 0, 0] == 0 and rec[-1, -1, 2] == 255
    assert r1.crop_path is None and rd.load_image(r1, "crops") is None
    np.testing.assert_array_equal(r1.w, np.ones((18, 512), np.float32))


def test_write_errors(tmp_path):
    out = tmp_path / "e.vinv"
    wr = InversionWriter(out, **FS, generator=GEN, models=MODELS)
    base = dict(quad=np.zeros((4, 2)), landmarks=np.zeros((68, 2)), track_id=0)
    with pytest.raises(ValueError, match=r"w: expected shape \(18, 512\)"):
        wr.add(w=np.zeros((512,)), F=np.zeros((512, 16, 16)), frame_index=0, **base)
    with pytest.raises(ValueError, match="pass F"):
        wr.add(w=np.zeros((18, 512)), frame_index=0, **base)
    with pytest.raises(ValueError, match="float16 range"):
        wr.add(w=np.zeros((18, 512)), F=np.full((512, 16, 16), 1e5), frame_index=0, **base)
    wr.add(w=np.zeros((18, 512)), F=np.zeros((512, 16, 16)), frame_index=3, **base)
    with pytest.raises(ValueError, match="duplicate"):
        wr.add(w=np.zeros((18, 512)), F=np.zeros((512, 16, 16)), frame_index=3, **base)
    with pytest.raises(ValueError, match="non-decreasing"):
        wr.add(w=np.zeros((18, 512)), F=np.zeros((512, 16, 16)), frame_index=2, **base)
    wr.close()
    with pytest.raises(FileExistsError):
        InversionWriter(out, **FS, generator=GEN)
    with pytest.raises(ValueError, match="encoder kind"):
        InversionWriter(tmp_path / "x", encoder="not a name", generator=GEN)


def test_version_mismatch_and_corruption(tmp_path):
    out = tmp_path / "v.vinv"
    _write(out, _records(3))
    man = json.loads((out / MANIFEST).read_text())

    bad = dict(man, version=99)
    (out / MANIFEST).write_text(json.dumps(bad))
    with pytest.raises(InversionVersionError) as ei:
        InversionReader(out)
    assert "99" in str(ei.value) and f"version {FORMAT_VERSION}" in str(ei.value) and "newer" in str(ei.value)
    assert ei.value.found == 99 and ei.value.expected == (FORMAT_VERSION,)

    (out / MANIFEST).write_text(json.dumps({k: v for k, v in man.items() if k != "version"}))
    with pytest.raises(InversionVersionError, match="no format version"):
        InversionReader(out)

    (out / MANIFEST).write_text(json.dumps(man)[:200])  # truncated JSON
    with pytest.raises(InversionFormatError, match="corrupted"):
        InversionReader(out)

    (out / MANIFEST).write_text(json.dumps(dict(man, n_records=7)))
    with pytest.raises(InversionFormatError, match="corrupted: n_records"):
        InversionReader(out)

    (out / MANIFEST).write_text(json.dumps(man))
    rd = InversionReader(out)
    assert len(rd) == 3
    # a damaged chunk is caught by its sha256, a missing one by name
    chunk = out / man["chunks"][0]["file"]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(InversionFormatError, match="sha256 does not match"):
        list(InversionReader(out))
    chunk.unlink()
    with pytest.raises(InversionFormatError, match=r"chunk_000000.npz listed in the manifest is missing"):
        InversionReader(out)[0]
    with pytest.raises(InversionFormatError, match=r"no manifest.json"):
        InversionReader(tmp_path)


_CRASH = textwrap.dedent("""
    import os, sys
    import numpy as np
    from vidinv.io.inversion import InversionWriter
    out, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    wr = InversionWriter(out, encoder="fs", feature_shape=(512, 16, 16), feature_index=5,
                         generator={"n_latent": 18, "style_dim": 512}, chunk_size=4)
    for f in range(n):
        wr.add(w=rng.standard_normal((18, 512)), F=rng.standard_normal((512, 16, 16)), quad=np.zeros((4, 2)),
               landmarks=np.zeros((68, 2)), track_id=0, frame_index=f, pts=f)
    open(os.path.join(out, ".manifest.json.999.tmp"), "w").write("{half written")  # an interrupted rename
    open(os.path.join(out, ".manifest.0123abcd.part.json"), "w").write("{half")  # vidinv.io.outputs' temp name
    os._exit(3)  # killed: no close(), no flush, no exception handler
""")


def test_crash_leaves_completed_chunks_readable_and_resume(tmp_path):
    out = tmp_path / "crash.vinv"
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(out), "10"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    # 10 records, chunk_size 4: chunks of 4 + 4 were completed; the last 2 were pending when killed
    with pytest.raises(IncompleteInversionError) as ei:
        InversionReader(out)
    assert ei.value.n_records == 8 and "allow_incomplete" in str(ei.value)
    rd = InversionReader(out, allow_incomplete=True)
    assert not rd.complete and len(rd) == 8
    assert [r.frame_index for r in rd] == list(range(8))
    rng = np.random.default_rng(0)
    expected_w = []
    for _ in range(8):
        expected_w.append(rng.standard_normal((18, 512)).astype(np.float32))
        rng.standard_normal((512, 16, 16))
    np.testing.assert_array_equal(rd[7].w, expected_w[7])

    # resume: continue from next_frame, then the export is complete and whole
    wr = InversionWriter.resume(out)
    assert wr.next_frame == 8 and wr.n_records == 8
    assert not list(out.glob(".*"))  # temporary files of interrupted writes (old and new names) are deleted
    with wr:
        for f in range(wr.next_frame, 10):
            wr.add(w=np.full((18, 512), f, np.float32), F=np.zeros((512, 16, 16)), quad=np.zeros((4, 2)),
                   landmarks=np.zeros((68, 2)), track_id=0, frame_index=f, pts=f)
    rd = InversionReader(out)
    assert rd.complete and len(rd) == 10 and [r.frame_index for r in rd] == list(range(10))
    assert rd[9].w[0, 0] == 9
    with pytest.raises(ValueError, match="complete"):
        InversionWriter.resume(out)


def test_error_inside_writer_marks_incomplete_and_drops_partial_frame(tmp_path):
    out = tmp_path / "err.vinv"
    recs = _records(3, tracks=(0, 1))
    with pytest.raises(RuntimeError, match="encoder failed"):
        with InversionWriter(out, **FS, generator=GEN, chunk_size=100) as wr:
            for r in recs[:5]:  # frame 2 has only track 0 when the error comes
                wr.add(**r)
            raise RuntimeError("encoder failed")
    with pytest.raises(IncompleteInversionError, match="encoder failed"):
        InversionReader(out)
    rd = InversionReader(out, allow_incomplete=True)
    assert [(r.frame_index, r.track_id) for r in rd] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert InversionWriter.resume(out).next_frame == 2


def test_model_file_and_check(tmp_path):
    p = tmp_path / "gen.pt"
    p.write_bytes(b"weights")
    m = model_file(p, "generator")
    assert m.name == "gen.pt" and len(m.sha256) == 64
    out = tmp_path / "m.vinv"
    with InversionWriter(out, encoder="psp", generator=GEN, models=[m]):
        pass
    rd = InversionReader(out)
    assert len(rd) == 0 and list(rd) == []
    rd.check_models({"gen.pt": p})
    p.write_bytes(b"other weights")
    with pytest.raises(InversionFormatError, match="has sha256"):
        rd.check_models({"gen.pt": p})
    with pytest.raises(InversionFormatError, match="did not produce"):
        rd.check_models({"enc.pt": p})


# ------------------------------------------------------------------------------ non-finite codes

def poison_chunk(export: Path, chunk: int, record: int, field: str, value: float = np.nan) -> None:
    """Put ``value`` into ``field`` of one record of a chunk and re-hash it the way the writer does
    (sha256 and size of the chunk's bytes in the manifest), so that the sha256 check passes: what a
    hand-edited or hostile export looks like."""
    import hashlib
    import io

    man = json.loads((export / MANIFEST).read_text())
    entry = man["chunks"][chunk]
    p = export / entry["file"]
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    a = arrays[field]
    a.reshape(a.shape[0], -1)[record, 0] = value  # a view: 0-d fields (time) too
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    p.write_bytes(data)
    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (export / MANIFEST).write_text(json.dumps(man, indent=1))


@pytest.mark.parametrize("field,value", [("w", np.nan), ("w", np.inf), ("F", -np.inf), ("quad", np.nan),
                                         ("landmarks", np.inf)])
def test_non_finite_codes_in_a_hash_consistent_export_are_refused(tmp_path, field, value):
    out = tmp_path / "nan.vinv"
    _write(out, _records(6), chunk_size=2)
    poison_chunk(out, 1, 1, field, value)  # record 3 = frame 3, track 0
    rd = InversionReader(out)  # the header and the hashes are fine
    assert len(rd) == 6 and rd[0].w.shape == (18, 512)
    where = rf"'{field}' of record 3 \(frame 3, track 0\) holds NaN or infinite"
    with pytest.raises(InversionFormatError, match=where):
        rd.check()
    with pytest.raises(InversionFormatError, match="holds NaN or infinite"):
        list(InversionReader(out))
    # an unknown time (NaN) is allowed: it is not a code
    ok = tmp_path / "time.vinv"
    _write(ok, _records(2), chunk_size=2)
    poison_chunk(ok, 0, 0, "time", np.nan)
    InversionReader(ok).check()
    assert InversionReader(ok)[0].time is None


def test_writer_names_the_frame_of_a_non_finite_code(tmp_path):
    wr = InversionWriter(tmp_path / "w.vinv", **FS, generator=GEN)
    w = np.zeros((18, 512), np.float32)
    w[3, 4] = np.nan
    with pytest.raises(ValueError, match="frame 7, track 2: w: holds NaN"):
        wr.add(w=w, F=np.zeros((512, 16, 16)), quad=np.zeros((4, 2)), landmarks=np.zeros((68, 2)), track_id=2,
               frame_index=7)


# ------------------------------------------------------------------------------ resume with settings

def test_resume_checks_the_settings_before_touching_anything(tmp_path):
    out = tmp_path / "r.vinv"
    settings = dict(**FS, generator=GEN, models=MODELS, source=SOURCE, save_crops=False, save_recon=False,
                    extra={"batch_size": 4, "start": 0.0, "end": None})
    with pytest.raises(RuntimeError):
        with InversionWriter(out, chunk_size=2, **settings) as wr:
            for r in _records(5):
                wr.add(**r)
            raise RuntimeError("interrupted")
    stray = out / "chunks" / "chunk_000099.npz"
    stray.write_bytes(b"half")
    before = (out / MANIFEST).read_bytes()
    other_models = [MODELS[0], ModelFile("psp_ffhq_encode.pt", "generator", "c" * 64)]
    with pytest.raises(ValueError) as ei:
        InversionWriter.resume(out, **dict(settings, models=other_models,
                                           extra={"batch_size": 8, "start": 0.0, "end": None}))
    msg = str(ei.value)
    assert "cannot resume" in msg and "extra.batch_size: 4 in the export, 8 now" in msg
    assert "models:" in msg and "c" * 64 in msg and "\n" not in msg
    with pytest.raises(ValueError, match=r"encoder.kind"):
        InversionWriter.resume(out, **dict(settings, encoder="psp"))
    with pytest.raises(ValueError, match=r"source.num_frames: 10 in the export, 11 now"):
        InversionWriter.resume(out, **dict(settings, source=dict(SOURCE, num_frames=11)))
    assert stray.exists() and (out / MANIFEST).read_bytes() == before  # nothing touched
    with pytest.raises(TypeError):
        InversionWriter.resume(out, chunk_size=4, **settings)
    wr = InversionWriter.resume(out, **settings)  # the same settings: reopened, stray chunk removed
    assert not stray.exists() and wr.next_frame == 4 and wr.manifest["chunk_size"] == 2
    with wr:
        for r in _records(6)[4:]:
            wr.add(**r)
    rd = InversionReader(out)
    assert rd.complete and [r.frame_index for r in rd] == list(range(6))
