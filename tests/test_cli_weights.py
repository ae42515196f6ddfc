"""`vidinv weights list | fetch | verify | path` and `vidinv --help` (click CliRunner, local HTTP server)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from vidinv.cli import main as cli_main
from conftest import require_shared
from test_weights import LocalServer, dead_url, make_checkpoint, make_entry
from vidinv.weights import registry


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("VIDINV_HOME", str(home))
    monkeypatch.delenv("VIDINV_MIRROR", raising=False)
    monkeypatch.delenv("VIDINV_ALLOW_HASH_MISMATCH", raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    return home


@pytest.fixture
def server():
    srv = LocalServer()
    yield srv
    srv.close()


def run(*args):
    return CliRunner().invoke(cli_main.cli, list(args), catch_exceptions=False)


def test_help_lists_weights_group(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "weights" in out and "List, fetch and verify" in out
    r = run("weights", "--help")
    assert r.exit_code == 0
    for sub in ("list", "fetch", "verify", "path"):
        assert f"\n  {sub} " in r.output


def test_list_shows_status_size_licence_and_needs(env):
    r = run("weights", "list")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines() if line and not line.startswith(("-", " "))}
    enc = rows["143_enc.pth"]
    assert "missing" in enc and "~456 MB" in enc and "edit" in enc
    assert "InterDigital evaluation licence: fundamental research only" in enc
    assert "non-commercial (NVIDIA SCL-NC; FFHQ CC BY-NC-SA" in rows["psp_ffhq_encode.pt"]
    assert "non-commercial" in rows["stylegan2-ffhq-config-f.pt"]
    assert "CC BY-NC 4.0 (Yandex LLC, stylegan2-distillation)" in rows["stit_w/age.npy"]
    assert "MIT" not in rows["stit_w/age.npy"]
    assert "MIT (TreB1eN/InsightFace_Pytorch); trained on MS1M-derived data" in rows["model_ir_se50.pth"]
    assert "alexnet-owt-7be5be79.pth" in rows and "2DFAN4-cd938726ad.zip" in rows
    assert f"cache: {env}" in r.output
    n_restricted = sum(e.restricted for e in registry.all_files())
    assert f"{n_restricted} of {len(registry.all_files())} file(s) are non-commercial or research-only" in r.output
    assert "LICENSE file of the vidinv repository" in r.output
    r = run("weights", "list", "--long", "--kind", "weights")
    assert "https://drive.google.com/file/d/1RnnBL77j_Can0dY1KOiXHvG224MxjvzC/view" in r.output
    assert "terms:      research-only (restricted)" in r.output
    assert '"FeatureStyleEncoder" is an InterDigital product' in r.output
    assert "vidinv.models.fs_encoder:load_fs_encoder" in r.output
    assert "stit_w/age.npy" not in r.output


def test_list_and_path_with_weights_dir(env):
    shared = require_shared("directions")
    r = run("weights", "list", "--kind", "direction", "--weights-dir", str(shared))
    assert r.exit_code == 0
    line = next(x for x in r.output.splitlines() if x.startswith("e4e/interfacegan_pose.pt"))
    assert "present" in line and str(shared / "e4e" / "interfacegan_pose.pt") in line
    assert "23 of 23 present" in r.output
    r = run("weights", "path", "stit_w/yaw.npy", "--weights-dir", str(shared))
    assert r.exit_code == 0 and r.stdout.strip() == str(shared / "stit_w" / "yaw.npy")


def test_path_of_missing_file_fails_with_instructions(env):
    r = run("weights", "path", "79999_iter.pth")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "https://drive.google.com/file/d/154JgKpzCPW82qINcVieuPH3fZ2e0P812/view" in r.stderr
    assert f"put it at: {env / 'weights' / '79999_iter.pth'}" in r.stderr
    r = run("weights", "path", "no_such.pth")
    assert r.exit_code == 1 and "unknown weight file 'no_such.pth'" in r.stderr


def test_fetch_verify_path_roundtrip(env, server, monkeypatch):
    data = make_checkpoint(21)
    server.files["/weights/cli.pt"] = data
    monkeypatch.setenv("VIDINV_MIRROR", server.base)
    with registry.registered(make_entry("cli.pt", data, sha=False, url="https://example.org/cli.pt")):
        r = run("weights", "fetch", "cli.pt", "-q")
        assert r.exit_code == 0, r.output
        final = env / "weights" / "cli.pt"
        assert f"ok       cli.pt  {final}" in r.stdout
        assert final.read_bytes() == data
        r = run("weights", "path", "cli.pt")
        assert r.exit_code == 0 and r.stdout.strip() == str(final)
        r = run("weights", "verify", "cli.pt")
        assert r.exit_code == 0 and "OK       cli.pt  (sha256 unknown, structure ok)" in r.stdout
        final.write_bytes(data[: len(data) // 3])  # truncated in place
        r = run("weights", "verify", "cli.pt")
        assert r.exit_code == 1
        assert "BAD      cli.pt" in r.stderr and "structure failed" in r.stderr
        assert "1 file(s) failed verification" in r.stderr
        r = run("weights", "verify", "cli.pt", "--no-structure")
        assert r.exit_code == 0  # nothing else is known about this file


def test_verify_directions_by_sha256(env):
    shared = require_shared("directions")
    r = run("weights", "verify", "featurestyle", "--weights-dir", str(shared))
    assert r.exit_code == 0, r.output
    assert r.stdout.count("(sha256 ok, structure none)") == 3


def test_fetch_failure_exits_1_listing_url_and_path(env, monkeypatch):
    monkeypatch.setenv("VIDINV_MIRROR", dead_url())
    r = run("weights", "fetch", "--for", "edit", "-q")
    assert r.exit_code == 1
    err = r.stderr
    for name in ("143_enc.pth", "psp_ffhq_encode.pt", "79999_iter.pth", "featurestyle/Smiling_boundary.npy",
                 "stit_w/age.npy", "e4e/interfacegan_age.pt"):
        assert f"FAILED   {name}: connection refused" in err
        assert f"\n  {name}  (" in err
    assert f"put it at: {env / 'weights' / '143_enc.pth'}" in err
    assert "https://drive.google.com/file/d/1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0/view" in err
    assert "shape_predictor_68_face_landmarks.dat" in r.output  # external: reported, not fetched


def test_fetch_needs_names(env):
    r = run("weights", "fetch")
    assert r.exit_code == 2 and "give file NAMES, --all or --for USE" in r.stderr
    r = run("weights", "fetch", "nope.pth")
    assert r.exit_code == 1 and "unknown weight file 'nope.pth'" in r.stderr


def test_restricted_count_follows_the_table(env):
    """The count is computed from each entry's terms: one more restricted entry, one more in the count;
    a permissive entry whose label merely mentions "non-commercial" is not counted."""
    def count(output):
        line = next(x for x in output.splitlines() if "are non-commercial or research-only" in x)
        return int(line.split()[0]), int(line.split()[2])

    r = run("weights", "list", "--kind", "direction")
    base, total = count(r.output)
    assert (base, total) == (3 + 16, 23)  # Feature-Style boundaries + STIT directions; not the e4e ones
    base_entry = dict(kind="direction", description="t", needed_by="t", uses=("edit",), size=None, size_exact=False,
                      url="https://example.org/x.npy", subdir="directions/test")
    extra = [registry.WeightFile(name="test/nc.npy", licence="custom terms", terms="non-commercial", **base_entry),
             registry.WeightFile(name="test/ok.npy", licence="says non-commercial", terms="permissive", **base_entry)]
    with registry.registered(*extra):
        r = run("weights", "list", "--kind", "direction")
    assert count(r.output) == (base + 1, total + 2)
    r = run("weights", "list", "--for", "edit-psp")
    assert count(r.output)[0] == 1  # psp_ffhq_encode.pt only


def test_path_refuses_a_mismatching_weights_dir_file(env, tmp_path):
    shared = require_shared("directions")
    wd = tmp_path / "wd"
    (wd / "stit_w").mkdir(parents=True)
    data = bytearray((shared / "stit_w" / "yaw.npy").read_bytes())
    data[-1] ^= 0x01
    (wd / "stit_w" / "yaw.npy").write_bytes(bytes(data))
    want = registry.get("stit_w/yaw.npy").sha256
    cached = env / "directions" / "stit_w" / "yaw.npy"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((shared / "stit_w" / "yaw.npy").read_bytes())  # a good copy in the cache is not used instead
    r = run("weights", "path", "stit_w/yaw.npy", "--weights-dir", str(wd))
    assert r.exit_code == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidinv: error: ")
    assert str(wd / "stit_w" / "yaw.npy") in lines[0] and want in lines[0]
    assert __import__("hashlib").sha256(bytes(data)).hexdigest() in lines[0]
    r = run("weights", "path", "stit_w/yaw.npy", "--weights-dir", str(wd), "--allow-hash-mismatch")
    assert r.exit_code == 0 and r.stdout.strip() == str(wd / "stit_w" / "yaw.npy")
    r = run("weights", "list", "--kind", "direction", "--weights-dir", str(wd))
    line = next(x for x in r.output.splitlines() if x.startswith("stit_w/yaw.npy"))
    assert " bad " in line and str(wd / "stit_w" / "yaw.npy") in line
    r = run("weights", "verify", "stit_w/yaw.npy", "--weights-dir", str(wd))
    assert r.exit_code == 1 and want in r.stderr and "vidinv: error: 1 file(s) failed verification" in r.stderr
    # fetch: the cached copy is fine, the --weights-dir one is reported as bad and left alone
    r = run("weights", "fetch", "stit_w/yaw.npy", "--weights-dir", str(wd), "-q")
    assert r.exit_code == 0 and f"ok       stit_w/yaw.npy  {cached}" in r.stdout
    assert f"bad      stit_w/yaw.npy  {wd / 'stit_w' / 'yaw.npy'}" in r.stderr
    assert (wd / "stit_w" / "yaw.npy").read_bytes() == bytes(data)
    # other commands that resolve directions give the same one-line error
    r = run("directions", "info", "stit:yaw", "--weights-dir", str(wd))
    assert r.exit_code == 1 and r.stderr.startswith("vidinv: error: ") and want in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
