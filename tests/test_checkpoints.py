"""Generic checkpoint reading and strict loading (vidinv.io.checkpoints)."""
from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from vidinv.io.checkpoints import (CheckpointError, CheckpointMismatchError, load_strict, read_checkpoint,
                                select_prefix)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("kernel", torch.ones(4, 4))


def test_read_roundtrip(tmp_path):
    sd = _Tiny().state_dict()
    p = tmp_path / "ok.pth"
    torch.save({"state_dict": sd, "opts": {"output_size": 1024}}, p)
    ck = read_checkpoint(p)
    assert ck["opts"]["output_size"] == 1024
    assert torch.equal(ck["state_dict"]["conv.weight"], sd["conv.weight"])


def test_read_missing_empty_truncated(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    p = tmp_path / "full.pt"
    torch.save(_Tiny().state_dict(), p)
    data = p.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as ei:
        read_checkpoint(tmp_path / "trunc.pt")
    assert "trunc.pt" in str(ei.value)


class Opaque:  # an arbitrary Python object: needs a full unpickle
    pass


def test_read_refuses_arbitrary_pickle(tmp_path):
    p = tmp_path / "obj.pt"
    torch.save({"x": Opaque()}, p)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_checkpoint(p)
    assert isinstance(read_checkpoint(p, allow_pickle=True)["x"], Opaque)


def test_select_prefix():
    sd = collections.OrderedDict([("encoder.a", 1), ("decoder.b", 2), ("encoderx.c", 3)])
    assert select_prefix(sd, "encoder") == {"a": 1}
    assert select_prefix(sd, "decoder") == {"b": 2}


def test_load_strict_errors_name_file_keys_and_shapes():
    m = _Tiny()
    sd = dict(m.state_dict())
    load_strict(_Tiny(), sd, "a.pth", "tiny net")  # exact key set loads

    bad = dict(sd)
    del bad["kernel"]
    bad["conv.weights"] = bad.pop("conv.weight")
    bad["conv.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError) as ei:
        load_strict(_Tiny(), bad, "/x/renamed.pth", "tiny net")
    msg = str(ei.value)
    assert "/x/renamed.pth" in msg and "tiny net" in msg
    assert "missing key(s), first: kernel, conv.weight" in msg
    assert "unexpected key(s), first: conv.weights" in msg
    assert "shape mismatch for conv.bias: file has [5], model expects [4]" in msg
    assert sorted(ei.value.missing) == ["conv.weight", "kernel"]


def test_load_strict_rejects_non_tensor():
    sd = dict(_Tiny().state_dict())
    sd["kernel"] = [1, 2]
    with pytest.raises(CheckpointError, match="not a tensor"):
        load_strict(_Tiny(), sd, "f.pth", "tiny net")


def test_vidinv_record_round_trip_and_checks(tmp_path):
    from vidinv.io.checkpoints import USER_TRAINED_LICENCE, read_vidinv_record, vidinv_record

    rec = vidinv_record("fs_encoder", {"widths": (8, 8), "nested": {"a": (1, 2)}}, licence=USER_TRAINED_LICENCE,
                        name="mine_fs_encoder.pth", trained_from={"generator": "psp_ffhq_encode.pt"})
    p = tmp_path / "rec.pth"
    torch.save({"state_dict": _Tiny().state_dict(), "vidinv_config": rec}, p)
    back = read_checkpoint(p)["vidinv_config"]  # plain values: loads with weights_only=True
    assert back["architecture"] == {"widths": [8, 8], "nested": {"a": [1, 2]}}
    assert read_vidinv_record(back, p, "fs_encoder") == back
    assert "user's" in back["licence"] and back["trained_from"] == {"generator": "psp_ffhq_encode.pt"}
    # not a record (absent, or a bare training config): the file is then treated as an official one
    assert read_vidinv_record(None, p, "fs_encoder") is None
    assert read_vidinv_record({"run": {"seed": 0}}, p, "psp") is None
    with pytest.raises(CheckpointError, match="'fs_encoder' network, not a 'psp'"):
        read_vidinv_record(back, p, "psp")
    with pytest.raises(CheckpointError, match="format 2"):
        read_vidinv_record({**back, "format": 2}, p, "fs_encoder")
    with pytest.raises(CheckpointError, match="architecture"):
        read_vidinv_record({**back, "architecture": None}, p, "fs_encoder")
