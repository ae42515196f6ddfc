"""SeFa closed-form directions (vidinv.edit.sefa) and `vidinv directions sefa`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vidinv.edit import DirectionError, load_direction_file
from vidinv.edit.sefa import modulation_weights, sefa, style_layers
from vidinv.models.stylegan2 import Generator


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(32, style_dim=16, n_mlp=1, channel_multiplier=1, max_channels=8).eval()


def _reference(sd, keys):
    """numpy eigh of AᵀA with A = the row-normalised stacked modulation weights (SeFa eq. 5-6)."""
    A = np.concatenate([sd[k].numpy().astype(np.float64) for k in keys], 0)
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    vals, vecs = np.linalg.eigh(A.T @ A)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order].T


def test_layer_map(G):
    num_layers, n_latent, conv_rows, rgb_rows = style_layers(G)
    assert (num_layers, n_latent) == (G.num_layers, G.n_latent) == (7, 8)
    assert conv_rows[0] == ["conv1.conv.modulation.weight"] and conv_rows[6] == ["convs.5.conv.modulation.weight"]
    assert rgb_rows == {1: ["to_rgb1.conv.modulation.weight"], 3: ["to_rgbs.0.conv.modulation.weight"],
                        5: ["to_rgbs.1.conv.modulation.weight"], 7: ["to_rgbs.2.conv.modulation.weight"]}
    # the map agrees with the generator's own use of the rows: changing row r changes those layers' styles
    A, rows, keys, _ = modulation_weights(G, "3", include_torgb=True)
    assert rows == (3,) and keys == ["convs.2.conv.modulation.weight", "to_rgbs.0.conv.modulation.weight"]
    assert A.shape == (G.channels[8] + G.channels[8], 16)


def test_sefa_matches_numpy_eigh(G):
    res = sefa(G, top=10)
    sd = G.state_dict()
    keys = ["conv1.conv.modulation.weight"] + [f"convs.{i}.conv.modulation.weight" for i in range(G.num_layers - 1)]
    assert res.modules == keys and res.rows == tuple(range(G.num_layers))
    vals, vecs = _reference(sd, keys)
    V = res.directions
    assert V.shape == (10, 16) and V.dtype == torch.float32
    # orthonormal
    torch.testing.assert_close(V @ V.T, torch.eye(10), rtol=0, atol=1e-6)
    # sorted by eigenvalue, equal to numpy's
    ev = res.eigenvalues.numpy()
    assert np.all(np.diff(ev) <= 0)
    np.testing.assert_allclose(ev, vals[:10], rtol=1e-10)
    # same eigenvectors up to sign (eigenvalues are distinct here), sign fixed: largest entry positive
    assert np.min(np.diff(vals[:11]) * -1) > 1e-6
    dots = np.abs(np.sum(V.numpy().astype(np.float64) * vecs[:10], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)
    Vn = V.numpy()
    assert np.all(Vn[np.arange(10), np.abs(Vn).argmax(1)] > 0)
    # a state_dict gives the same result; the top direction maximises sum |A n|^2 over random unit vectors
    torch.testing.assert_close(sefa(sd, top=10).directions, V)
    A = torch.from_numpy(np.concatenate([sd[k].numpy() for k in keys], 0)).double()
    A = A / A.norm(dim=1, keepdim=True)
    rand = torch.nn.functional.normalize(torch.randn(500, 16, dtype=torch.float64), dim=1)
    assert (A @ V[0].double()).square().sum() >= (A @ rand.T).square().sum(0).max()


def test_sefa_layer_choices(G):
    sd = G.state_dict()
    res = sefa(G, top=4, rows="1-2", include_torgb=True)
    keys = ["convs.0.conv.modulation.weight", "to_rgb1.conv.modulation.weight", "convs.1.conv.modulation.weight"]
    assert res.modules == keys and res.rows == (1, 2)
    vals, vecs = _reference(sd, keys)
    np.testing.assert_allclose(res.eigenvalues.numpy(), vals[:4], rtol=1e-10)
    full = sefa(G, include_torgb=True)
    assert full.rows == tuple(range(G.n_latent)) and len(full) == 16 and "to_rgbs.2.conv.modulation.weight" in full.modules
    with pytest.raises(DirectionError, match="row 7 is read by no styled conv.*--torgb"):
        sefa(G, rows="5-7")
    with pytest.raises(ValueError, match="top must be in 1..16"):
        sefa(G, top=17)
    # as a W+ direction: the eigenvector on the selected rows, zeros elsewhere; raw = SeFa distance
    wp = res.to_wplus(0)
    assert wp.shape == (G.n_latent, 16)
    assert torch.equal(wp[1], res.directions[0]) and torch.equal(wp[2], res.directions[0])
    assert wp[[0, 3, 4, 5, 6, 7]].abs().max() == 0
    d = res.direction(0, "raw")
    w = torch.zeros(1, G.n_latent, 16)
    torch.testing.assert_close(d.apply(w, 3.0)[0], 3.0 * wp)


def test_cli_sefa_writes_loadable_files(tmp_path):
    from vidinv.cli.main import cli

    # a generator with the FFHQ layout (18 W+ rows of 512) but 2 channels, saved as a plain state_dict
    torch.manual_seed(1)
    G = Generator(1024, style_dim=512, n_mlp=1, channel_multiplier=1, max_channels=2)
    ckpt = tmp_path / "g.pt"
    torch.save(G.state_dict(), ckpt)
    out = tmp_path / "dirs"
    r = CliRunner().invoke(cli, ["directions", "sefa", "--checkpoint", str(ckpt), "--top", "3", "--layers", "0-7",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote 3 direction(s)" in r.output
    files = sorted(out.glob("sefa_*.npy"))
    assert [f.name for f in files] == ["sefa_00.npy", "sefa_01.npy", "sefa_02.npy"]
    meta = json.loads((out / "sefa.json").read_text())
    assert meta["rows"] == list(range(8)) and len(meta["eigenvalues"]) == 3 and meta["file_shape"] == [18, 512]
    ref = sefa(G, top=3, rows="0-7")
    for i, f in enumerate(files):
        arr = np.load(f)
        assert arr.shape == (18, 512) and arr.dtype == np.float32
        d = load_direction_file(f, "raw")
        np.testing.assert_array_equal(d.vector[:8].float().numpy(), np.tile(ref.directions[i].numpy(), (8, 1)))
        assert d.vector[8:].abs().max() == 0
        assert load_direction_file(f, "unit").stats(1.0)["frobenius"] == pytest.approx(15.0)
    assert not list(out.glob("*.tmp"))
    r = CliRunner().invoke(cli, ["directions", "sefa", "--checkpoint", str(ckpt), "--layers", "17", "-o", str(out)])
    assert r.exit_code == 1 and "--torgb" in r.output
