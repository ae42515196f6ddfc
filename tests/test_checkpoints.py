"""Generic checkpoint reading and strict loading (vidinv.checkpoints)."""
from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from vidinv.checkpoints import (CheckpointError, CheckpointMismatchError, load_strict, read_checkpoint,
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
