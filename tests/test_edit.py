"""Editing directions (vidinv.edit): conventions, registry, layers, sums, and the Feature-Style frame edit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import assert_parity, require_shared
from vidinv.io.checkpoints import read_checkpoint
from vidinv.edit import (
    ATTRIBUTES,
    DEFAULT_SOURCE,
    DEMONSTRATED_EDITS,
    DEMONSTRATED_MAX_STRENGTH,
    DOCUMENTED_FACTORS,
    STRENGTH_WARNING,
    USER_SHAPES,
    Direction,
    DirectionError,
    DirectionShapeError,
    LatentEdit,
    apply_edit,
    build_edit,
    check_strength,
    demonstrated_strength,
    equivalent_strength,
    load_attribute,
    load_attributes,
    load_direction_file,
    lookup,
    parse_edit_spec,
    parse_layers,
    strength_table,
)
from vidinv.weights import MissingWeightsError, registry, resolve


@pytest.fixture(scope="module")
def ddir():
    return require_shared("directions")


def _all_specs():
    return [e.spec for srcs in ATTRIBUTES.values() for e in srcs.values()]


def _w(b=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 18, 512, generator=g).to(dtype)


# ------------------------------------------------------------------------------ registry and loading

def test_registry_names_resolve_with_weights_dir(ddir):
    names = registry.names("direction")
    assert len(names) == 23
    paths = resolve(names, weights_dir=ddir)
    assert all(p.is_file() and p.is_relative_to(ddir) for p in paths.values())
    # every direction file of the weight registry is reachable from an attribute name
    used = {lookup(s).weight for s in _all_specs()}
    assert used == set(names)


def test_every_attribute_loads_with_its_convention_and_shape(ddir):
    specs = _all_specs() + ["ganspace:pc0", "pc79"]
    dirs = load_attributes(specs, weights_dir=ddir)
    assert len(dirs) == len(specs)
    for spec, d in zip(specs, dirs):
        e = lookup(spec)
        assert d.convention == e.convention and d.source == e.source
        raw = read_checkpoint(d.path) if d.path.suffix == ".pt" else np.load(d.path)
        if e.source == "fs":
            assert raw.shape == (1, 9216) and raw.dtype == np.float32 and d.vector.shape == (18, 512)
            assert d.scale == 15.0
            np.testing.assert_array_equal(d.vector.numpy(), raw.reshape(18, 512).astype(np.float64))
        elif e.source == "stit":
            assert raw.shape == (18, 512) and raw.dtype == np.float64 and d.vector.shape == (18, 512)
            np.testing.assert_array_equal(d.vector.numpy(), raw)
        elif e.source == "e4e":
            assert tuple(raw.shape) in ((1, 512), (1, 18, 512))
            assert d.vector.shape == ((1, 512) if raw.shape == (1, 512) else (18, 512))
            np.testing.assert_allclose(d.vector.numpy().reshape(raw.shape), e.sign * raw.numpy().astype(np.float64))
        else:
            assert set(raw) == {"mean", "comp", "std"} and raw["comp"].shape == (80, 1, 512)
            rows = range(18) if e.rows is None else range(e.rows[0], e.rows[1] + 1)
            c = raw["comp"][e.component, 0].double()
            for r in range(18):
                expect = e.sign * c if r in rows else torch.zeros(512, dtype=torch.float64)
                torch.testing.assert_close(d.vector[r], expect)
        # one scale for every source: |dw|_F = 15 at strength 1 (fs: its boundary's own norm, ~1 - 6e-8)
        assert d.stats(1.0)["frobenius"] == pytest.approx(15.0, rel=1e-6)
        assert d.stats(-0.5)["frobenius"] == pytest.approx(7.5, rel=1e-6)


def test_defaults_and_lookup_errors():
    assert DEFAULT_SOURCE["smile"] == "fs" and lookup("smile").spec == "fs:smile"
    assert lookup("age").spec == "stit:age" and lookup("yaw").spec == "stit:yaw"
    for n in ("gender", "pitch", "roll", "eyes_open", "mouth_open", "eye_distance", "lip_ratio"):
        assert lookup(n).source == "stit"
    assert lookup("eyeglasses").source == "fs" and lookup("makeup").weight.endswith("Heavy_Makeup_boundary.npy")
    assert lookup("Interfacegan:Smiling").spec == "e4e:smile"
    assert lookup("ganspace:pc12").component == 12 and lookup("pc12").rows is None
    assert lookup("ganspace:eye_openness").spec == "ganspace:eyes_open"
    with pytest.raises(DirectionError, match="Did you mean: smile"):
        lookup("smle")
    with pytest.raises(DirectionError, match="unknown direction source 'foo'"):
        lookup("foo:smile")
    with pytest.raises(DirectionError, match="available as stit:gender"):
        lookup("fs:gender")
    with pytest.raises(DirectionError, match="pc0..pc79"):
        lookup("pc80")


def test_missing_files_listed_in_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    with pytest.raises(MissingWeightsError) as ei:
        load_attributes(["smile", "stit:age", "e4e:age"], weights_dir=tmp_path)
    msg = str(ei.value)
    for f in ("Smiling_boundary.npy", "age.npy", "interfacegan_age.pt"):
        assert f in msg


# ------------------------------------------------------------------------------ applying

def test_fs_smile_matches_parity_fixture(ddir):
    P = require_shared("parity/stylegan2_ffhq1024")
    inp, exp = np.load(P / "inputs.npz"), np.load(P / "expected.npz")
    d = load_attribute("fs:smile", weights_dir=ddir)
    w = torch.from_numpy(inp["wplus"])
    out = d.apply(w, 1.0)
    assert out.dtype == torch.float32 and out.shape == (2, 18, 512)
    assert_parity(out, exp["w_edit"], "w_edit")
    # the Feature-Style rule is kept exact: w + 15*1*d in float32 gives the same bits
    np.testing.assert_array_equal(out.numpy(), exp["w_edit"])
    assert_parity(build_edit(["smile=1"], weights_dir=ddir).apply(w), exp["w_edit"], "w_edit via build_edit")


def test_strength_zero_is_identity_and_dtype_device_follow_w(ddir):
    w = _w()
    for d in load_attributes(["smile", "stit:age", "e4e:age", "ganspace:smile"], weights_dir=ddir):
        assert torch.equal(d.apply(w, 0.0), w)
        w64 = w.double()
        out = d.apply(w64, 0.7)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out - w64, 0.7 * d.scale * d.vector.expand(18, 512).unsqueeze(0).expand(3, -1, -1))
        # Δw is computed once per (strength, layers, device, dtype), then reused for every frame
        assert d.delta(0.7, device=w.device, dtype=w.dtype) is d.delta(0.7, device=w.device, dtype=w.dtype)
    assert build_edit(["smile=0", "age=0"], weights_dir=ddir).is_identity
    assert torch.equal(build_edit(["smile=0", "age=0"], weights_dir=ddir).apply(w), w)


def test_layers_restriction(ddir):
    d = load_attribute("stit:age", weights_dir=ddir)
    w = _w()
    full = d.apply(w, 1.5)
    part = d.apply(w, 1.5, layers="0-3,8")
    rows = [0, 1, 2, 3, 8]
    other = [r for r in range(18) if r not in rows]
    torch.testing.assert_close(part[:, rows], full[:, rows], rtol=0, atol=0)
    assert torch.equal(part[:, other], w[:, other])
    assert torch.equal(d.apply(w, 1.5, layers=range(0, 4)), d.apply(w, 1.5, layers="0-3"))
    assert torch.equal(d.apply(w, 1.5, layers=[8, 3, 3]), d.apply(w, 1.5, layers="3,8"))
    assert parse_layers("all") is None and parse_layers(None) is None and parse_layers(5) == (5,)
    for bad, msg in (("0-18", r"row\(s\) \[18\]"), ("7-3", "reversed"), ("a-b", "not a row"), ([], "empty")):
        with pytest.raises(DirectionError, match=msg):
            parse_layers(bad)
    # a row-broadcast W direction restricted to rows
    e = load_attribute("e4e:smile", weights_dir=ddir)
    delta = e.delta(1.0, "4-7").numpy()
    assert np.abs(delta[[0, 1, 2, 3, 8, 17]]).max() == 0
    np.testing.assert_allclose(np.linalg.norm(delta[4:8], axis=1), 15 / np.sqrt(18), rtol=1e-6)


def test_strength_per_frame(ddir):
    d = load_attribute("stit:smile", weights_dir=ddir)
    w = _w(4)
    s = torch.tensor([0.0, 0.5, 1.0, -1.0])
    out = d.apply(w, s)
    for i in range(4):
        torch.testing.assert_close(out[i], d.apply(w[i], float(s[i])))
    with pytest.raises(ValueError, match="one value per code"):
        d.apply(w, torch.ones(3))


def test_multi_attribute_sum(ddir):
    w = _w(2, seed=3)
    edit = build_edit(["smile=0.8", "stit:age=-0.5@0-7", ("e4e:smile", 0.25)], weights_dir=ddir,
                      files=[(ddir / "stit_w" / "yaw.npy", "raw", 2.0, "0-3")])
    assert len(edit.terms) == 4 and "stit:age x-0.5 (rows 0-7)" in edit.describe()
    fs = np.load(ddir / "featurestyle" / "Smiling_boundary.npy").reshape(18, 512).astype(np.float64)
    age = np.load(ddir / "stit_w" / "age.npy")
    e4e = read_checkpoint(ddir / "e4e" / "interfacegan_smile.pt").numpy().astype(np.float64)
    yaw = np.load(ddir / "stit_w" / "yaw.npy")
    ref = 15 * 0.8 * fs
    ref[:8] += -0.5 * 15 / np.linalg.norm(age) * age[:8]
    ref += 0.25 * 15 / (np.linalg.norm(e4e) * np.sqrt(18)) * e4e
    ref[:4] += 2.0 * yaw[:4]
    np.testing.assert_allclose(edit.delta64().numpy(), ref, rtol=1e-12, atol=1e-12)
    out = edit.apply(w)
    np.testing.assert_allclose(out.numpy(), (w.double() + torch.from_numpy(ref)).numpy(), rtol=0, atol=2e-6)
    assert edit.delta() is edit.delta()  # cached: once per video
    with pytest.raises(DirectionError, match="different W"):
        LatentEdit([edit.terms[0], Direction.from_array(np.ones((8, 16)), "raw", n_latent=8, style_dim=16)])


def test_parse_edit_spec():
    assert parse_edit_spec("smile") == ("smile", 1.0, None)
    assert parse_edit_spec("stit:age=-0.8@0-7") == ("stit:age", -0.8, tuple(range(8)))
    assert parse_edit_spec(" pc12 = .5 @ 0-3,8") == ("pc12", 0.5, (0, 1, 2, 3, 8))
    assert parse_edit_spec("smile=1e-1") == ("smile", 0.1, None)
    with pytest.raises(DirectionError, match="cannot parse"):
        parse_edit_spec("smile=big")


NON_FINITE = ["nan", "NaN", "inf", "-inf", "+Infinity", "1e400", "-1e309"]


@pytest.mark.parametrize("text", NON_FINITE)
def test_non_finite_strength_text_is_refused(text):
    """``--attr smile=1e400`` / ``smile=nan``: one clear error, before any file is looked up."""
    with pytest.raises(DirectionError, match="is not a finite number"):
        parse_edit_spec(f"smile={text}@0-7")
    with pytest.raises(DirectionError, match="is not a finite number"):
        check_strength(float(text), "--strength")
    with pytest.raises(DirectionError, match="is not a finite number"):
        check_strength(text)
    # named attribute whose file does not exist: the strength is judged first
    with pytest.raises(DirectionError, match="is not a finite number"):
        build_edit([f"smile={text}"], weights_dir="/nonexistent")
    with pytest.raises(DirectionError, match="is not a finite number"):
        build_edit([], files=[("/nonexistent/d.npy", "unit", float(text), None)])
    assert check_strength(np.float32(-0.5)) == -0.5 and check_strength(torch.tensor(2.0)) == 2.0
    with pytest.raises(DirectionError, match="not a number"):
        check_strength("big")


def test_non_finite_strength_never_reaches_a_code():
    d = Direction.from_array(np.ones((18, 512)), "unit", name="x")
    w = _w(2)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(DirectionError, match="strength of x"):
            d.apply(w, bad)
        with pytest.raises(DirectionError, match="strength of x"):
            d.delta64(bad)
        with pytest.raises(DirectionError, match="strength of x"):
            LatentEdit([(d, bad)])
        with pytest.raises(DirectionError, match="strength of x"):
            build_edit([(d, bad)])
        with pytest.raises(DirectionError, match="NaN or infinite"):
            d.apply(w, torch.tensor([1.0, bad]))
    # finite but overflowing: 1e308 * 15 / |d| is inf in float64
    huge = Direction.from_array(np.full((18, 512), 1e300), "raw", name="huge")
    with pytest.raises(DirectionError, match="overflows"):
        huge.delta64(1e10)
    with pytest.raises(DirectionError, match="overflows"):
        LatentEdit([(huge, 1e10)])
    assert torch.isfinite(LatentEdit([(d, 2.0)]).apply(w)).all()


def test_demonstrated_range_and_warning_threshold(ddir):
    """The help table's 'demonstrated edits at |s| = 0.3 to 1.3' follows from DEMONSTRATED_EDITS and the
    files; the warning threshold is 3x the strongest (3.9)."""
    got = {(sp, v): demonstrated_strength(sp, v) for sp, v, _ in DEMONSTRATED_EDITS}
    # recomputed from the files, not from the rounded DOCUMENTED_FACTORS
    for (sp, v), s in got.items():
        d = load_attribute(sp, weights_dir=ddir)
        e = lookup(sp)
        if e.source == "ganspace":
            std = float(read_checkpoint(ddir / "e4e" / "ganspace_ffhq_pca.pt")["std"][e.component])
            n = e.rows[1] - e.rows[0] + 1
            exact = v * std * np.sqrt(n) / 15 * e.sign
        elif e.source == "stit":
            exact = v / 2 / d.native_factor()
        elif e.source == "fs":
            exact = v
        else:
            exact = v / d.native_factor()
        assert abs(s) == pytest.approx(abs(exact), abs=0.01), sp
    mags = sorted(abs(s) for s in got.values())
    assert round(mags[0], 1) == 0.3 and round(mags[-1], 1) == 1.3 == round(DEMONSTRATED_MAX_STRENGTH, 1)
    assert "|s| = 0.3 to 1.3" in strength_table()
    assert STRENGTH_WARNING == pytest.approx(3 * DEMONSTRATED_MAX_STRENGTH) and round(STRENGTH_WARNING, 1) == 3.9


def test_strength_far_outside_the_demonstrated_range_warns_once(caplog, tmp_path):
    d = Direction.from_array(np.ones((1, 512)), "unit", name="u")
    caplog.set_level("WARNING", logger="vidinv.edit")
    build_edit([(d, 2.0), (d, -3.8)])  # deliberate exaggeration: no warning
    assert not caplog.records
    build_edit([(d, 8.0), (d, -5.0), (d, 1.0)])
    (rec,) = caplog.records  # one warning for the whole edit
    assert rec.levelname == "WARNING" and "u at strength 8" in rec.message and "u at strength -5" in rec.message
    assert "far outside" in rec.message and "strength 1 " not in rec.message
    caplog.clear()
    # raw files count by the step they take: |s|*||d||_F / 15
    p = tmp_path / "big.npy"
    np.save(p, np.full((18, 512), 75 / np.sqrt(18 * 512)))  # ||d||_F = 75: s = 1 moves W+ by 5 steps
    assert equivalent_strength(load_direction_file(p, "raw"), 1.0) == pytest.approx(5.0)
    build_edit([], files=[(p, "raw", 1.0, None)])
    (rec,) = caplog.records
    assert "|s| 5 on vidinv's scale" in rec.message
    caplog.clear()
    build_edit([], files=[(p, "unit", 1.0, None)])
    assert not caplog.records


# ------------------------------------------------------------------------------ user direction files

def test_user_direction_files(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(512)
    per_row = rng.standard_normal((18, 512))
    w = _w(2)
    for shape in USER_SHAPES:
        arr = base.reshape(shape) if int(np.prod(shape)) == 512 else per_row.reshape(shape)
        p = tmp_path / f"d_{'x'.join(map(str, shape))}.npy"
        np.save(p, arr.astype(np.float32))
        d = load_direction_file(p, "raw")
        expect = np.broadcast_to(arr.reshape(-1, 512), (18, 512)).astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(d.delta64(1.0).numpy(), expect)
        torch.testing.assert_close(d.apply(w, 2.0), w + 2.0 * torch.from_numpy(expect).float())
    # conventions
    p = tmp_path / "b.pt"
    torch.save(torch.from_numpy(per_row.reshape(1, 9216)), p)
    assert load_direction_file(p, "fs").delta64(1.0).norm() == pytest.approx(15 * np.linalg.norm(per_row))
    assert load_direction_file(p, "unit").delta64(1.0).norm() == pytest.approx(15.0)
    assert load_direction_file(p, "raw").delta64(1.0).norm() == pytest.approx(np.linalg.norm(per_row))
    q = tmp_path / "w.npy"
    np.save(q, base)
    u = load_direction_file(q, "unit").delta64(1.0).numpy()
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 15 / np.sqrt(18))
    with pytest.raises(DirectionError, match="unknown direction convention"):
        load_direction_file(q, "stit")


@pytest.mark.parametrize("shape", [(511,), (2, 512), (18, 511), (17, 512), (1, 2, 512), (9215,), (2, 18, 512)])
def test_user_direction_shape_errors(tmp_path, shape):
    p = tmp_path / "mine.npy"
    np.save(p, np.ones(shape, np.float32))
    with pytest.raises(DirectionShapeError) as ei:
        load_direction_file(p, "unit")
    msg = str(ei.value)
    assert str(p) in msg and f"unsupported direction shape {shape}" in msg
    for acc in ("(512,)", "(1, 512)", "(18, 512)", "(1, 18, 512)", "(1, 9216)", "(9216,)"):
        assert acc in msg
    assert ei.value.shape == shape


def test_user_direction_content_errors(tmp_path):
    p = tmp_path / "pca.pt"
    torch.save({"comp": torch.ones(3, 1, 512)}, p)
    with pytest.raises(DirectionError, match="must hold one numeric array, found a dict with keys"):
        load_direction_file(p, "raw")
    q = tmp_path / "obj.npy"
    np.save(q, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DirectionError, match="object/pickled"):
        load_direction_file(q, "raw")
    r = tmp_path / "nan.npy"
    np.save(r, np.full(512, np.nan))
    with pytest.raises(DirectionError, match="NaN"):
        load_direction_file(r, "raw")
    with pytest.raises(DirectionError, match="no such direction file"):
        load_direction_file(tmp_path / "absent.npy", "raw")
    z = tmp_path / "zero.npy"
    np.save(z, np.zeros(512))
    with pytest.raises(DirectionError, match="zero"):
        load_direction_file(z, "unit")
    t = tmp_path / "d.txt"
    t.write_text("1 2 3")
    with pytest.raises(DirectionError, match="unknown direction file type"):
        load_direction_file(t, "raw")


# ------------------------------------------------------------------------------ documentation numbers

def test_documented_factors_match_files(ddir):
    """Every number of the --strength table is recomputed from the official files."""
    std = read_checkpoint(ddir / "e4e" / "ganspace_ffhq_pca.pt")["std"].double()
    for spec, documented in DOCUMENTED_FACTORS.items():
        e = lookup(spec)
        d = load_attribute(spec, weights_dir=ddir)
        if e.source == "ganspace":
            n = e.rows[1] - e.rows[0] + 1
            got = e.sign * d.scale * float(d.vector[e.rows[0]].norm()) / float(std[e.component])
            assert got == pytest.approx(e.sign * 15 / np.sqrt(n) / float(std[e.component]))
        else:
            got = e.sign * d.native_factor(1.0)
        assert round(got, 2) == pytest.approx(documented, abs=0.051), spec
    table = strength_table()
    assert "age 4.84, gender 3.64, smile 3.51, yaw 3.78" in table and "smile -29.2" in table
    assert max(len(line) for line in table.splitlines()) <= 100
    assert strength_table(for_click=True).count("\b") == 3


def test_documented_comparisons(ddir):
    """The demonstrated-edit conversions and smile projections quoted in the docs."""
    n_smile = read_checkpoint(ddir / "e4e" / "interfacegan_smile.pt").double().reshape(512)
    proj = {}
    for spec in ("fs:smile", "stit:smile", "e4e:smile"):
        d = load_attribute(spec, weights_dir=ddir).delta64(1.0)
        proj[spec] = float((d @ n_smile).mean())
    assert [round(proj[s], 2) for s in ("fs:smile", "stit:smile", "e4e:smile")] == [0.46, 2.18, 3.54]
    fs = load_attribute("fs:smile", weights_dir=ddir).delta64(1.0)
    assert round(float((fs[:8] @ n_smile).mean()), 2) == 0.76
    # STIT applies its --edit_range value v as w + (v/2)*d: s = (v/2) / factor
    conv = {n: v / 2 / load_attribute(f"stit:{n}", weights_dir=ddir).native_factor()
            for n, v in (("age", -8), ("gender", -6))}
    assert round(conv["age"], 2) == -0.83 and round(conv["gender"], 2) == -0.82
    sm = load_attribute("stit:smile", weights_dir=ddir).native_factor()
    assert (round(1 / sm, 2), round(-1.5 / sm, 2)) == (0.28, -0.43)
    assert round(-3 / load_attribute("e4e:age", weights_dir=ddir).native_factor(), 2) == -0.85
    # e4e GANSpace example strengths (std units) -> s
    std = read_checkpoint(ddir / "e4e" / "ganspace_ffhq_pca.pt")["std"].double()
    for name, val, s in (("eyes_open", 20, 0.66), ("smile", -20, -0.69), ("beard", 20, 0.91),
                         ("white_hair", -24, -1.30), ("lipstick", 20, 0.81)):
        e = lookup(f"ganspace:{name}")
        n = e.rows[1] - e.rows[0] + 1
        assert round(val * float(std[e.component]) * np.sqrt(n) / 15, 2) == s
    # e4e:yaw is -pose, flipped to agree with stit:yaw
    y_stit = load_attribute("stit:yaw", weights_dir=ddir).vector[0]
    y_e4e = load_attribute("e4e:yaw", weights_dir=ddir).vector[0]
    assert round(float(y_stit @ y_e4e / (y_stit.norm() * y_e4e.norm())), 2) == 0.44


# ------------------------------------------------------------------------------ Feature-Style eq. 1

def test_apply_edit_equals_full_pass_formula():
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(32, style_dim=16, n_mlp=1, channel_multiplier=1, max_channels=8).eval()
    k = 5
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, G.n_latent, 16, generator=g)
    F = torch.randn(2, *G.feature_shape(k), generator=g)
    d = Direction.from_array(torch.randn(G.n_latent, 16, generator=g), "unit", n_latent=G.n_latent, style_dim=16)
    edit = LatentEdit([(d, 0.7, "0-4")])
    image, w_edit, f_edit = apply_edit(G, w, F, edit, k=k, return_all=True)
    with torch.no_grad():
        w_ref = w + 0.7 * d.delta(1.0, "0-4")
        _, feats_e = G.synthesis(w_ref, return_features=True)
        _, feats_0 = G.synthesis(w, return_features=True)
        f_ref = F + feats_e[k] - feats_0[k]
        img_ref = G.synthesis(w_ref, feature=f_ref, k=k)
    torch.testing.assert_close(w_edit, w_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(f_edit, f_ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(image, img_ref, rtol=1e-5, atol=1e-5)
    assert image.shape == (2, 3, 32, 32)
    # Δw given as a tensor, and a float16 F (as read from an inversion export)
    img2 = apply_edit(G, w, F.half(), w_edit - w, k=k)
    with torch.no_grad():
        f2 = F.half().float() + feats_e[k] - feats_0[k]
        torch.testing.assert_close(img2, G.synthesis(w_ref, feature=f2, k=k), rtol=1e-4, atol=1e-4)
    # an identity edit reproduces the plain feature-injected synthesis
    with torch.no_grad():
        torch.testing.assert_close(apply_edit(G, w, F, LatentEdit([(d, 0.0)]), k=k),
                                   G.synthesis(w, feature=F, k=k), rtol=1e-6, atol=1e-6)
    # without a feature code (pSp) the edited code alone is rendered: G(w')
    image_p, w_p, f_p = apply_edit(G, w, None, edit, return_all=True)
    assert f_p is None
    torch.testing.assert_close(w_p, w_ref, rtol=0, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(image_p, G.synthesis(w_p))


# ------------------------------------------------------------------------------ CLI

def test_cli_directions_list_and_info(ddir):
    from vidinv.cli.main import cli

    r = CliRunner().invoke(cli, ["directions", "list", "--weights-dir", str(ddir)])
    assert r.exit_code == 0, r.output
    for s in ("fs:smile", "stit:nose_tip", "e4e:yaw", "ganspace:white_hair", "7-9", "w' = w + 15*s*d"):
        assert s in r.output
    assert "not present" not in r.output
    r = CliRunner().invoke(cli, ["directions", "info", "stit:age", "--weights-dir", str(ddir), "--layers", "0-7",
                                 "--strength", "-0.5"])
    assert r.exit_code == 0, r.output
    assert "native factor -2.419" in r.output and "8 row(s)" in r.output
    r = CliRunner().invoke(cli, ["directions", "info", "nosuch"])
    assert r.exit_code == 1 and "unknown attribute" in r.output
