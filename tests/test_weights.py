"""Weight registry, cache lookup and downloader (no network: files come from a local HTTP server)."""
from __future__ import annotations

import hashlib
import io
import re
import socket
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import SHARED, require_shared
from torch import nn

from vidinv.io.checkpoints import CheckpointError, load_strict, read_checkpoint
from vidinv.weights import cache, registry, resolver
from vidinv.weights import fetch as fetch_mod
from vidinv.weights.fetch import ChecksumError, DownloadInterrupted, FetchError, StructureError
from vidinv.weights.registry import WeightFile
from vidinv.weights.resolver import MissingWeightsError, WeightHashMismatchError, resolve

# --------------------------------------------------------------------------------------------------
# helpers shared with test_cli_weights.py


def tiny_checker(path):
    """Structure check of the test entries: a strict load into nn.Linear(64, 64)."""
    sd = read_checkpoint(path)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state_dict")
    return load_strict(nn.Linear(64, 64), sd, path, "tiny linear")


def make_checkpoint(seed: int = 0) -> bytes:
    """A real torch checkpoint of nn.Linear(64, 64) (about 18 kB)."""
    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(nn.Linear(64, 64).state_dict(), buf)
    return buf.getvalue()


def make_entry(name: str, data: bytes | None, *, sha: bool = True, check: bool = True, url: str | None = None,
               gdrive_id: str | None = None, kind: str = "weights", subdir: str = "weights") -> WeightFile:
    return WeightFile(
        name=name, kind=kind, description="test file", needed_by="tests", uses=("edit",),
        size=len(data) if data is not None else None, size_exact=data is not None and sha, licence="test licence",
        url=url, gdrive_id=gdrive_id,
        sha256=hashlib.sha256(data).hexdigest() if (sha and data is not None) else None,
        check=f"{__name__}:tiny_checker" if check else None, subdir=subdir)


class LocalServer:
    """HTTP server on 127.0.0.1 in a thread. Supports ``Range: bytes=N-``; can cut a response after N
    bytes (``cut_after[path] = N``, once) or ignore Range (``ignore_range = True``)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not outer.ignore_range:
                    m = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = outer.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def server():
    srv = LocalServer()
    yield srv
    srv.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "vidinv_home"
    monkeypatch.setenv("VIDINV_HOME", str(h))
    monkeypatch.delenv("VIDINV_MIRROR", raising=False)
    monkeypatch.delenv("VIDINV_ALLOW_HASH_MISMATCH", raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    return h


# --------------------------------------------------------------------------------------------------
# registry


def test_registry_official_entries():
    w = {e.name: e for e in registry.all_files("weights")}
    assert w["143_enc.pth"].gdrive_id == "1RnnBL77j_Can0dY1KOiXHvG224MxjvzC"
    assert w["backbone.pth"].gdrive_id == "1coFTz-Kkgvoc_gRT8JFzqCgeC3lAFWQp"
    assert w["79999_iter.pth"].gdrive_id == "154JgKpzCPW82qINcVieuPH3fZ2e0P812"
    assert w["psp_ffhq_encode.pt"].gdrive_id == "1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"
    assert w["stylegan2-ffhq-config-f.pt"].gdrive_id == "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"
    assert w["model_ir_se50.pth"].gdrive_id == "1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"
    assert w["psp_celebs_super_resolution.pt"].gdrive_id == "1ZpmSXBpJ9pFEov6-jjQstAlfYbkebECu"
    assert w["psp_ffhq_frontalization.pt"].gdrive_id == "1_S4THAzXb-97DbpXmanjHtXRyKxqjARv"
    assert w["psp_ffhq_toonify.pt"].gdrive_id == "1YKoiVuFaqdvzDP5CZaqa3k5phL-VDmyz"
    assert w["psp_celebs_seg_to_face.pt"].gdrive_id == "1VpEKc6E6yG3xhYuZ0cq8D2_1CbT0Dstz"
    assert w["psp_celebs_sketch_to_face.pt"].gdrive_id == "1lB7wk7MwtdxL-LL4Z_T76DuCfk00aSXA"
    tasks = {"restore": "psp_celebs_super_resolution.pt", "frontalize": "psp_ffhq_frontalization.pt",
             "toonify": "psp_ffhq_toonify.pt", "anonymize": "psp_celebs_seg_to_face.pt",
             "sketch": "psp_celebs_sketch_to_face.pt"}
    for use, name in tasks.items():
        assert name in [e.name for e in registry.files_for(use)]
        assert w[name].check == "vidinv.models.psp:load_psp_task" and w[name].restricted
    assert "Doron Adler" in w["psp_ffhq_toonify.pt"].licence_note
    assert "see the pSp README" in w["psp_ffhq_toonify.pt"].licence
    assert "CelebAMask-HQ" in w["psp_celebs_seg_to_face.pt"].licence_note
    assert w["143_enc.pth"].check == "vidinv.models.fs_encoder:load_fs_encoder"
    assert w["psp_ffhq_encode.pt"].check == "vidinv.models.psp:load_psp"
    assert w["stylegan2-ffhq-config-f.pt"].check == "vidinv.models.stylegan2:load_generator"
    for e in w.values():
        assert re.fullmatch(r"vidinv\.models\.\w+:load_\w+", e.check), e.name
        assert e.source_url == f"https://drive.google.com/file/d/{e.gdrive_id}/view"
        assert not e.size_exact and e.size > 10_000_000  # approximate sizes, said so
        assert e.size_text.startswith("~")
    assert "fundamental research only" in w["143_enc.pth"].licence and w["143_enc.pth"].terms == "research-only"
    for n in ("psp_ffhq_encode.pt", "stylegan2-ffhq-config-f.pt"):
        assert "non-commercial" in w[n].licence and "NC" in w[n].licence and w[n].terms == "non-commercial"
    assert {"143_enc.pth", "psp_ffhq_encode.pt", "79999_iter.pth"} <= {e.name for e in registry.files_for("edit")}


def test_registry_directions_match_shared_test_data():
    shared = require_shared("directions")
    dirs = registry.all_files("direction")
    assert len(dirs) == 3 + 16 + 4
    listed = {line.split()[1]: line.split()[0] for line in (shared / "SHA256SUMS").read_text().splitlines() if line}
    for e in dirs:
        rel = e.name  # "<folder>/<file>", the layout of ../shared/directions
        f = shared / rel
        assert f.is_file(), rel
        assert e.sha256 == hashlib.sha256(f.read_bytes()).hexdigest() == listed[rel], rel
        assert e.size == f.stat().st_size and e.size_exact
        assert e.url.startswith("https://raw.githubusercontent.com/"), e.url
        assert (shared / rel.split("/")[0] / e.licence_file).is_file(), e.licence_file
    # the directions resolve straight from the shared folder used as --weights-dir
    paths = resolve(["featurestyle", "stit_w/age.npy", "interfacegan_pose.pt"], weights_dir=shared)
    assert paths["stit_w/age.npy"] == shared / "stit_w" / "age.npy"
    assert len(paths) == 5


def test_registry_lookup_errors_and_expansion():
    with pytest.raises(registry.UnknownWeightError, match=r"Did you mean: 143_enc.pth"):
        registry.get("143_enc.pt")
    assert registry.expand_names(["e4e", "age.npy", "e4e/interfacegan_age.pt"]) == [
        "e4e/interfacegan_age.pt", "e4e/interfacegan_smile.pt", "e4e/interfacegan_pose.pt",
        "e4e/ganspace_ffhq_pca.pt", "stit_w/age.npy"]
    with pytest.raises(ValueError):
        registry.files_for("nonsense")
    e = make_entry("tmp-entry.pt", b"x")
    with registry.registered(e):
        assert registry.get("tmp-entry.pt") is e
    with pytest.raises(registry.UnknownWeightError):
        registry.get("tmp-entry.pt")


def test_external_files_are_reported_not_fetched(home):
    e = registry.get("shape_predictor_68_face_landmarks.dat")
    p = cache.cache_path(e)
    assert p.parent.name == "models" and p.parent.parent.name == "face_recognition_models"
    st, _ = resolver.status(e)
    assert st == ("present" if p.is_file() else "missing")
    alex = registry.get("alexnet-owt-7be5be79.pth")
    assert cache.cache_path(alex) == Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(FetchError, match="not downloaded by vidinv"):
        fetch_mod.fetch(alex)


# --------------------------------------------------------------------------------------------------
# downloads


def test_full_download(server, home):
    data = make_checkpoint(1)
    server.files["/files/a.pt"] = data
    e = make_entry("a.pt", data, url=server.base + "/files/a.pt")
    with registry.registered(e):
        path = fetch_mod.fetch("a.pt", quiet=True)
    assert path == home / "weights" / "a.pt"
    assert path.read_bytes() == data
    assert not path.with_name("a.pt.part").exists()
    assert server.requests == [("/files/a.pt", None)]
    # cached: a second fetch does not download again
    with registry.registered(e):
        assert fetch_mod.fetch("a.pt", quiet=True) == path
    assert len(server.requests) == 1


def test_interrupted_download_then_resumed(server, home):
    data = make_checkpoint(2)
    cut = 7000
    server.files["/files/b.pt"] = data
    server.cut_after["/files/b.pt"] = cut
    e = make_entry("b.pt", data, url=server.base + "/files/b.pt")
    final = home / "weights" / "b.pt"
    with registry.registered(e):
        with pytest.raises(DownloadInterrupted, match="interrupted at 7000 of"):
            fetch_mod.fetch("b.pt", quiet=True, retries=0)
        assert not final.exists()
        part = final.with_name("b.pt.part")
        assert part.stat().st_size == cut and part.read_bytes() == data[:cut]
        path = fetch_mod.fetch("b.pt", quiet=True, retries=0)
    assert server.requests == [("/files/b.pt", None), ("/files/b.pt", f"bytes={cut}-")]
    assert path.read_bytes() == data
    assert not part.exists()


def test_interruption_is_resumed_within_one_fetch(server, home):
    data = make_checkpoint(3)
    server.files["/files/c.pt"] = data
    server.cut_after["/files/c.pt"] = 5000
    e = make_entry("c.pt", data, url=server.base + "/files/c.pt")
    with registry.registered(e):
        path = fetch_mod.fetch("c.pt", quiet=True, retries=1, backoff=0)
    assert [r[1] for r in server.requests] == [None, "bytes=5000-"]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(server, home):
    data = make_checkpoint(4)
    server.files["/files/d.pt"] = data
    server.ignore_range = True
    e = make_entry("d.pt", data, url=server.base + "/files/d.pt")
    part = home / "weights" / "d.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * 3000)  # stale partial download
    with registry.registered(e):
        path = fetch_mod.fetch("d.pt", quiet=True)
    assert server.requests == [("/files/d.pt", "bytes=3000-")]
    assert path.read_bytes() == data


def test_complete_part_file_is_accepted_on_416(server, home):
    data = make_checkpoint(5)
    server.files["/files/e.pt"] = data
    e = make_entry("e.pt", data, url=server.base + "/files/e.pt")
    part = home / "weights" / "e.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    with registry.registered(e):
        path = fetch_mod.fetch("e.pt", quiet=True)
    assert server.requests == [("/files/e.pt", f"bytes={len(data)}-")]
    assert path.read_bytes() == data


def test_corrupted_file_rejected_by_sha256(server, home):
    data = make_checkpoint(6)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    server.files["/files/f.pt"] = bytes(bad)
    e = make_entry("f.pt", data, url=server.base + "/files/f.pt")
    final = home / "weights" / "f.pt"
    with registry.registered(e):
        with pytest.raises(ChecksumError, match=r"sha256 .* does not match the official"):
            fetch_mod.fetch("f.pt", quiet=True)
    assert not final.exists()
    assert not final.with_name("f.pt.part").exists()
    assert final.with_name("f.pt.rejected").read_bytes() == bytes(bad)


def test_structure_check_rejects_truncated_checkpoint(server, home):
    data = make_checkpoint(7)
    server.files["/files/g.pt"] = data[: len(data) // 2]
    e = make_entry("g.pt", data, sha=False, url=server.base + "/files/g.pt")  # no sha256: only the loader can tell
    final = home / "weights" / "g.pt"
    with registry.registered(e):
        with pytest.raises(StructureError, match="failed its structure check") as info:
            fetch_mod.fetch("g.pt", quiet=True)
        assert "truncated" in str(info.value) or "cannot be read" in str(info.value)
        assert not final.exists()
        # verify() reports the same file as failing, and accepts the complete one
        rej = final.with_name("g.pt.rejected")
        rep = cache.verify("g.pt", rej)
        assert not rep.ok and rep.structure_status == "failed" and rep.sha_status == "unknown"
        good = tmp = final.with_name("good.pt")
        tmp.write_bytes(data)
        rep = cache.verify("g.pt", good)
        assert rep.ok and rep.structure_status == "ok"


def test_structure_check_rejects_other_network(server, home):
    buf = io.BytesIO()
    torch.save(nn.Linear(64, 32).state_dict(), buf)  # a valid checkpoint of the wrong shape
    server.files["/files/h.pt"] = buf.getvalue()
    e = make_entry("h.pt", make_checkpoint(), sha=False, url=server.base + "/files/h.pt")
    with registry.registered(e):
        with pytest.raises(StructureError, match="shape mismatch for weight"):
            fetch_mod.fetch("h.pt", quiet=True)
    assert not (home / "weights" / "h.pt").exists()


def test_mirror_env_and_mapping(server, home, monkeypatch):
    data = make_checkpoint(8)
    server.files["/weights/m.pt"] = data
    server.files["/elsewhere/m.pt"] = data
    e = make_entry("m.pt", data, gdrive_id="drive-id-not-used")  # a Drive file, served by the mirror
    with registry.registered(e):
        assert fetch_mod.mirror_url("m.pt", {"m.pt": server.base + "/elsewhere/m.pt"}).endswith("/elsewhere/m.pt")
        monkeypatch.setenv("VIDINV_MIRROR", server.base + "/")
        path = fetch_mod.fetch("m.pt", quiet=True)
    assert server.requests == [("/weights/m.pt", None)]
    assert path.read_bytes() == data


def test_offline_error_lists_every_missing_file(home):
    dead = dead_url()
    d1, d2 = make_checkpoint(9), make_checkpoint(10)
    entries = [make_entry("off1.pt", d1, url="https://example.org/off1.pt"),
               make_entry("off2.pt", d2, gdrive_id="DRIVEID2")]
    with registry.registered(*entries):
        with pytest.raises(MissingWeightsError) as info:
            resolve(["off1.pt", "off2.pt", "143_enc.pth", "stit_w/smile.npy"], fetch=True, mirror=dead, quiet=True)
    err = info.value
    msg = str(err)
    assert err.names == ["off1.pt", "off2.pt", "143_enc.pth", "stit_w/smile.npy"]
    assert msg.startswith("4 file(s) that vidinv needs could not be fetched")
    assert "https://example.org/off1.pt" in msg
    assert "https://drive.google.com/file/d/DRIVEID2/view" in msg
    assert "https://drive.google.com/file/d/1RnnBL77j_Can0dY1KOiXHvG224MxjvzC/view" in msg
    assert "https://raw.githubusercontent.com/rotemtzaban/STIT/main/editings/w_directions/smile.npy" in msg
    for rel in ("weights/off1.pt", "weights/off2.pt", "weights/143_enc.pth", "directions/stit_w/smile.npy"):
        assert f"put it at: {home / rel}" in msg
    assert msg.count("connection refused") == 4
    assert f"tried:     {dead}/weights/off1.pt" in msg
    # nothing partial left behind (only the empty advisory lock files)
    assert not [p for p in home.rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_resolve_without_fetch_names_missing_files(home):
    with pytest.raises(MissingWeightsError, match=r"1 file\(s\) that vidinv needs are not present") as info:
        resolve("79999_iter.pth")
    assert f"put it at: {home / 'weights' / '79999_iter.pth'}" in str(info.value)
    assert "vidinv weights fetch 79999_iter.pth" in str(info.value)


def test_weights_dir_lookup(tmp_path, home):
    data = make_checkpoint(11)
    e = make_entry("wd.pt", data)
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    (by_hand / "wd.pt").write_bytes(data)
    cached = home / "weights" / "wd.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    with registry.registered(e):
        assert resolve(["wd.pt"], weights_dir=by_hand) == {"wd.pt": by_hand / "wd.pt"}  # searched first
        assert resolve(["wd.pt"]) == {"wd.pt": cached}
        # a wrong file in the cache counts as missing (fetch=True downloads it again)
        cached.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
        with pytest.raises(MissingWeightsError, match="does not match the official"):
            resolve(["wd.pt"])
        assert resolve(["wd.pt"], weights_dir=by_hand) == {"wd.pt": by_hand / "wd.pt"}


def test_cached_file_with_wrong_hash_is_downloaded_again(server, home):
    data = make_checkpoint(12)
    server.files["/files/r.pt"] = data
    e = make_entry("r.pt", data, url=server.base + "/files/r.pt")
    final = home / "weights" / "r.pt"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"garbage")
    with registry.registered(e):
        assert fetch_mod.fetch("r.pt", quiet=True).read_bytes() == data
        assert resolve("r.pt")["r.pt"] == final


def test_http_404_is_one_line_reason(server, home):
    e = make_entry("nf.pt", make_checkpoint(), url=server.base + "/files/absent.pt")
    with registry.registered(e):
        with pytest.raises(FetchError, match=r"^HTTP 404 .* from http://127\.0\.0\.1:\d+/files/absent\.pt$"):
            fetch_mod.fetch("nf.pt", quiet=True)


# --------------------------------------------------------------------------------------------------
# Google Drive through gdown (a stand-in module: no network)


def test_gdrive_without_gdown_gives_manual_instructions(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    e = make_entry("gd.pt", make_checkpoint(), gdrive_id="GDID")
    with registry.registered(e):
        with pytest.raises(FetchError) as info:
            fetch_mod.fetch("gd.pt", quiet=True)
    msg = str(info.value)
    assert "gdown, a vidinv dependency, is missing" in msg.splitlines()[0] and "pip install gdown" in msg
    assert "vidinv[gdrive]" not in msg
    assert "https://drive.google.com/file/d/GDID/view" in msg and str(home / "weights" / "gd.pt") in msg


def test_gdrive_with_gdown(home, monkeypatch):
    data = make_checkpoint(13)
    calls = []

    def fake_download(id=None, output=None, quiet=False, resume=False, **kw):
        calls.append((id, output))
        if id == "FAIL":
            raise RuntimeError("Too many users have viewed or downloaded this file recently.")
        Path(output).write_bytes(data)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    ok = make_entry("gd_ok.pt", data, gdrive_id="OK")
    bad = make_entry("gd_bad.pt", data, gdrive_id="FAIL")
    with registry.registered(ok, bad):
        path = fetch_mod.fetch("gd_ok.pt", quiet=True)
        assert path.read_bytes() == data and path == home / "weights" / "gd_ok.pt"
        assert calls[0] == ("OK", str(home / "weights" / "gd_ok.pt.gdown"))
        with pytest.raises(FetchError, match=r"gdown could not download gd_bad.pt .*Too many users") as info:
            fetch_mod.fetch("gd_bad.pt", quiet=True)
        assert "https://drive.google.com/file/d/FAIL/view" in str(info.value)



def test_registry_structure_checks_resolve_where_their_modules_exist():
    """Each weights entry names a loader; those whose module is already in the package must import."""
    import importlib.util

    checked = 0
    for e in registry.all_files("weights"):
        module = e.check.split(":")[0]
        if importlib.util.find_spec(module) is None:
            continue  # written by another part of the project
        fn = registry.load_checker(e)
        assert callable(fn) and fn.__name__ == e.check.split(":")[1], e.name
        checked += 1
    if checked == 0:
        pytest.skip("no vidinv.models loader module present yet")
    with pytest.raises(ImportError, match="cannot import the structure check"):
        registry.load_checker(WeightFile(name="x.pt", kind="weights", description="", needed_by="", uses=(),
                                         size=None, size_exact=False, licence="",
                                         check="vidinv.models.no_such_module:load"))


# --------------------------------------------------------------------------------------------------
# --weights-dir files that differ from the registry: an error, never replaced by the cached copy


def _flip(data: bytes, at: int = 100) -> bytes:
    bad = bytearray(data)
    bad[at] ^= 0x01
    return bytes(bad)


def test_weights_dir_mismatch_is_an_error_naming_both_hashes(tmp_path, home, monkeypatch, caplog):
    data = make_checkpoint(11)
    e = make_entry("wd.pt", data)
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    bad = _flip(data)
    (by_hand / "wd.pt").write_bytes(bad)
    cached = home / "weights" / "wd.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)  # a good cached copy must not be used in its place
    got, want = hashlib.sha256(bad).hexdigest(), hashlib.sha256(data).hexdigest()
    with registry.registered(e):
        for fetch in (False, True):
            with pytest.raises(WeightHashMismatchError) as info:
                resolve(["wd.pt"], weights_dir=by_hand, fetch=fetch)
            msg = str(info.value)
            assert "\n" not in msg
            assert str(by_hand / "wd.pt") in msg and got in msg and want in msg
            assert "--allow-hash-mismatch" in msg and "VIDINV_ALLOW_HASH_MISMATCH=1" in msg
            err = info.value
            assert (err.path, err.sha256, err.expected_sha256) == (by_hand / "wd.pt", got, want)
        assert resolver.status("wd.pt", by_hand) == ("bad", by_hand / "wd.pt")
        assert resolver.status("wd.pt") == ("present", cached)
        # explicit opt-outs: the keyword, then the environment variable; both warn with both hashes
        with caplog.at_level("WARNING", logger="vidinv.weights.resolver"):
            assert resolve(["wd.pt"], weights_dir=by_hand, allow_hash_mismatch=True) == {"wd.pt": by_hand / "wd.pt"}
        assert got in caplog.text and want in caplog.text
        monkeypatch.setenv("VIDINV_ALLOW_HASH_MISMATCH", "1")
        assert resolve(["wd.pt"], weights_dir=by_hand) == {"wd.pt": by_hand / "wd.pt"}
        with pytest.raises(WeightHashMismatchError):  # the keyword wins over the environment
            resolve(["wd.pt"], weights_dir=by_hand, allow_hash_mismatch=False)
        monkeypatch.setenv("VIDINV_ALLOW_HASH_MISMATCH", "0")
        with pytest.raises(WeightHashMismatchError):
            resolve(["wd.pt"], weights_dir=by_hand)
        # an empty file placed by hand for a file of known hash is a mismatch too
        (by_hand / "wd.pt").write_bytes(b"")
        with pytest.raises(WeightHashMismatchError, match=hashlib.sha256(b"").hexdigest()):
            resolve(["wd.pt"], weights_dir=by_hand)
        # the cache folder itself given as --weights-dir is still the cache (a bad copy there is refetchable)
        assert resolve(["wd.pt"], weights_dir=home / "weights") == {"wd.pt": cached}


def test_weights_dir_mismatch_of_a_registered_direction(tmp_path, home):
    """The real registry: a copy of ../shared/directions with one STIT direction altered."""
    shared = require_shared("directions")
    wd = tmp_path / "dirs"
    (wd / "stit_w").mkdir(parents=True)
    good = (shared / "stit_w" / "age.npy").read_bytes()
    (wd / "stit_w" / "age.npy").write_bytes(_flip(good, 200))
    e = registry.get("stit_w/age.npy")
    with pytest.raises(WeightHashMismatchError) as info:
        resolve(["stit_w/age.npy"], weights_dir=wd)
    assert e.sha256 in str(info.value) and hashlib.sha256(_flip(good, 200)).hexdigest() in str(info.value)
    # a file of the wrong size is reported with its sha256 and the registry's
    (wd / "stit_w" / "age.npy").write_bytes(good + b"x")
    with pytest.raises(WeightHashMismatchError, match=e.sha256):
        resolve(["stit_w/age.npy"], weights_dir=wd)
    (wd / "stit_w" / "age.npy").write_bytes(good)
    assert resolve(["stit_w/age.npy"], weights_dir=wd) == {"stit_w/age.npy": wd / "stit_w" / "age.npy"}


# --------------------------------------------------------------------------------------------------
# licences: from the sources' own licence files; the restricted count follows from the table


def test_stit_directions_are_cc_by_nc_yandex():
    stit = [e for e in registry.all_files("direction") if e.name.startswith("stit_w/")]
    assert len(stit) == 16
    for e in stit:
        assert e.licence == "CC BY-NC 4.0 (Yandex LLC, stylegan2-distillation)"
        assert "MIT" not in e.licence
        assert e.licence_file == "LICENSE-stylegan2-distillation" and e.terms == "non-commercial" and e.restricted
        assert "EvgenyKashin/stylegan2-distillation" in e.licence_note
        assert "STIT's MIT licence covers STIT's code only" in e.licence_note
    shared = SHARED / "directions" / "stit_w"
    if shared.is_dir():  # the claim matches the licence file itself
        text = (shared / "LICENSE-stylegan2-distillation").read_text()
        assert "Yandex LLC" in text and "Attribution-NonCommercial 4.0 International" in text


def test_feature_style_licence_summarises_the_four_points():
    fs = [registry.get("143_enc.pth")] + [e for e in registry.all_files("direction")
                                          if e.name.startswith("featurestyle/")]
    assert len(fs) == 4
    for e in fs:
        assert e.terms == "research-only" and e.restricted
        assert "InterDigital" in e.licence and "fundamental research only" in e.licence
        assert e.licence_url.endswith("/LICENSE.md") and "InterDigitalInc/FeatureStyleEncoder" in e.licence_url
        note = e.licence_note
        assert "Limited Software Evaluation License" in note
        assert "fundamental research" in note                                    # (1)
        assert "free or for a price" in note and "service to a third party" in note  # (2)
        assert "modifying" in note and "transforming" in note                    # (3)
        assert '"FeatureStyleEncoder" is an InterDigital product' in note and "ECCV 2022" in note  # (4)
    lic = SHARED / "directions" / "featurestyle" / "LICENSE-FeatureStyleEncoder.md"
    if lic.is_file():  # each summarised point is in the licence's own wording
        text = lic.read_text(encoding="utf-8-sig")
        for phrase in ("fundamental research work with the exclusion of any commercial use",
                       "offered (either free or for a price) to any third party",
                       "to provide a service to a third party",
                       "modify, reverse engineer", "transformation of the Software",
                       "\u201cFeatureStyleEncoder\u201d is an InterDigital product",
                       "A Style-Based GAN Encoder for High Fidelity Reconstruction of Images and Videos"):
            assert phrase in text, phrase


def test_ir_se50_is_mit_trained_on_ms1m_data():
    e = registry.get("model_ir_se50.pth")
    assert e.licence.startswith("MIT (TreB1eN/InsightFace_Pytorch)") and "MS1M" in e.licence
    assert "non-commercial" not in e.licence.lower()
    assert e.terms == "check-terms" and not e.restricted
    assert e.licence_file == "LICENSE_TreB1eN" and e.licence_url.endswith("/licenses/LICENSE_TreB1eN")
    assert "pSp" in e.licence_note and "MS1M" in e.licence_note


def test_restricted_follows_terms_not_the_label():
    base = dict(kind="weights", description="", needed_by="", uses=(), size=None, size_exact=False)
    loud = WeightFile(name="a.pt", licence="sounds non-commercial research", terms="permissive", **base)
    quiet = WeightFile(name="b.pt", licence="custom", terms="research-only", **base)
    assert not loud.restricted and quiet.restricted
    assert WeightFile(name="c.pt", licence="", **base).terms == "unknown"
    with pytest.raises(ValueError, match="terms must be one of"):
        WeightFile(name="d.pt", licence="", terms="free-ish", **base)
    assert registry.RESTRICTED_TERMS <= set(registry.TERMS)
    assert {e.terms for e in registry.all_files()} <= set(registry.TERMS) - {"unknown"}  # every entry classified


def test_readme_licence_section_matches_the_registry():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Model weights and their licences", 1)[1].split("\n## ", 1)[0]
    for label in sorted({e.licence for e in registry.all_files()}):
        assert f"| {label} |" in section, label
    assert "[`LICENSE`](LICENSE)" in section and "--allow-hash-mismatch" in section


def test_vidinv_licence_file_is_mit():
    root = Path(__file__).resolve().parents[1]
    text = (root / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the vidinv authors\n")
    assert "Permission is hereby granted, free of charge" in text
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"].startswith("MIT")


# --------------------------------------------------------------------------------------------------
# gdown is a default dependency (the main job's weights are on Google Drive)


def test_gdown_is_a_default_dependency():
    import importlib.util

    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"gdown\b", d) for d in project["dependencies"])
    assert project["optional-dependencies"].get("gdrive", []) == []  # an empty alias at most
    assert importlib.util.find_spec("gdown") is not None
    drive = {e.name for e in registry.files_for("edit") if e.gdrive_id}
    assert {"143_enc.pth", "psp_ffhq_encode.pt", "79999_iter.pth"} <= drive
    for folder in ("vidinv", "cli", "training"):  # no message tells users to install an extra
        for f in (root / folder).rglob("*.py"):
            assert "vidinv[gdrive]" not in f.read_text(), f
