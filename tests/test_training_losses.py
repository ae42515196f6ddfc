"""Loss terms, optimiser and degradation of the training package against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidinv.training.degrade import bicubic_downsample, bicubic_kernel, degrade
from vidinv.training.fs_task import feature_scale
from vidinv.training.losses import (IRSEIdentityLoss, MultiLayerIdentityLoss, ParsingLoss, build_lpips,
                             cosine_distance_sum, feature_reconstruction_loss, mse_loss, multiscale_lpips,
                             w_norm_loss)
from vidinv.training.ranger import Ranger
from vidinv.training.runner import lr_factor


@pytest.fixture(scope="module")
def lpips_random():
    torch.manual_seed(0)
    return build_lpips(random_backbone=True)


def _lpips_by_hand(net, x, y):
    """LPIPS v0.1 written out: scaling layer, trunk slices, unit-normalised channels, squared
    difference, 1x1 linear layer, spatial mean, sum over the five layers; mean over the batch."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    hx, hy = (x - shift) / scale, (y - shift) / scale
    total = torch.zeros(x.shape[0])
    slices = [net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5]
    for sl, lin in zip(slices, net.lins):
        hx, hy = sl(hx), sl(hy)
        nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        conv = lin.model[-1]
        d = F.conv2d((nx - ny) ** 2, conv.weight)
        total = total + d.mean(dim=(1, 2, 3))
    return total.mean()


def test_multiscale_lpips_matches_hand_computation(lpips_random):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    y = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    with torch.no_grad():
        got = multiscale_lpips(lpips_random, x, y, scales=3)
        want = sum(_lpips_by_hand(lpips_random, _halve(x, k), _halve(y, k)) for k in range(3))
        one = multiscale_lpips(lpips_random, x, y, scales=1)
    # scale 0 uses the images themselves
    assert torch.allclose(one, _lpips_by_hand(lpips_random, x, y), rtol=1e-5, atol=1e-7)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    assert float(multiscale_lpips(lpips_random, x, x, 3)) == pytest.approx(0.0, abs=1e-6)


def _halve(x, k):
    for _ in range(k):
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear")
    return x


def test_multiscale_lpips_rejects_too_small_scales(lpips_random):
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="lpips_scales|scales"):
        multiscale_lpips(lpips_random, x, x, scales=3)


def test_lpips_trunk_is_read_from_a_torchvision_file(tmp_path):
    from torchvision.models import alexnet

    torch.manual_seed(3)
    sd = alexnet(weights=None).state_dict()
    torch.save(sd, tmp_path / "alexnet-owt-7be5be79.pth")
    net = build_lpips(tmp_path / "alexnet-owt-7be5be79.pth")
    assert torch.equal(getattr(net.net.slice1, "0").weight, sd["features.0.weight"])
    assert torch.equal(getattr(net.net.slice5, "10").bias, sd["features.10.bias"])
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError):
        build_lpips(None)


def test_w_norm_by_hand():
    w = torch.tensor([[[1.0, 2.0], [2.0, 0.0]],
                      [[4.0, 3.0], [0.0, 0.0]]])
    avg = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # sample 0: w - avg = [[0, 2], [2, 0]] -> sqrt(8); sample 1: [[3, 3], [0, 0]] -> sqrt(18)
    want = (math.sqrt(8) + math.sqrt(18)) / 2
    assert float(w_norm_loss(w, avg)) == pytest.approx(want, rel=1e-6)
    assert float(w_norm_loss(w, None)) == pytest.approx((math.sqrt(9) + math.sqrt(25)) / 2, rel=1e-6)


def test_feature_reconstruction_by_hand_and_target_detached():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.ones(1, 1, 2, 2, requires_grad=True)
    loss = feature_reconstruction_loss(f, target)
    assert float(loss.detach()) == pytest.approx((0 + 1 + 4 + 9) / 4)
    loss.backward()
    assert target.grad is None
    assert torch.allclose(f.grad, 2 * (f.detach() - 1) / 4)


def test_mse_loss_empty_and_value():
    x = torch.zeros(0, 3, 4, 4)
    assert float(mse_loss(x, x)) == 0.0
    assert float(mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))) == pytest.approx(5.0)


def test_cosine_distance_sum_by_hand():
    a = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[[2.0]], [[-1.0]]])]
    b = [torch.tensor([[0.0, 1.0], [2.0, 2.0]]), torch.tensor([[[3.0]], [[1.0]]])]
    # sample 0: (1 - 0) + (1 - 1) = 1 ; sample 1: (1 - 1) + (1 - (-1)) = 2 ; mean 1.5
    assert float(cosine_distance_sum(a, b)) == pytest.approx(1.5, abs=1e-6)


class _FeatureNet(nn.Module):
    """Stand-in for ArcFace: ``forward(x, return_features=True)`` -> (embedding, [mean colour, corner pixel])."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, return_features=False):
        self.seen.append(tuple(x.shape))
        feats = [x.mean(dim=(2, 3)), x[:, :, 0, 0]]
        return feats[0], feats


def test_multilayer_identity_loss_by_hand():
    net = _FeatureNet()
    loss_fn = MultiLayerIdentityLoss(net)  # type: ignore[arg-type]
    x = torch.zeros(1, 3, 224, 224)
    x[:, 0] = 1.0  # red everywhere
    y = torch.zeros(1, 3, 224, 224)
    y[:, 1] = 1.0  # green everywhere
    y[:, 0, 0, 0] = 5.0  # corner pixel (kept by nearest resizing) is (5, 1, 0)
    tf = loss_fn.features(y)
    assert net.seen[-1] == (1, 3, 112, 112)  # resized to ArcFace's input
    got = float(loss_fn(x, tf))
    mean_y = torch.tensor([5.0 / (112 * 112), 1.0, 0.0])  # mean of the 112x112 nearest resize
    cos1 = float(mean_y[0] / mean_y.norm())  # vs (1, 0, 0)
    cos2 = 5 / math.sqrt(26)  # corner (1, 0, 0) vs (5, 1, 0)
    assert got == pytest.approx((1 - cos1) + (1 - cos2), rel=1e-5)


class _Parser(nn.Module):
    def forward(self, x):
        return x[:, :2], x[:, 1:], x.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1)


def test_parsing_loss_by_hand():
    loss_fn = ParsingLoss(_Parser(), size=8)  # type: ignore[arg-type]
    x = torch.full((1, 3, 16, 16), 1.0)  # -> [0, 1]: 1.0 everywhere
    y = torch.full((1, 3, 16, 16), -1.0)  # -> 0 everywhere
    # After ImageNet normalisation each channel is constant: c_x = (1 - m) / s, c_y = (0 - m) / s.
    m = torch.tensor([0.485, 0.456, 0.406])
    s = torch.tensor([0.229, 0.224, 0.225])
    cx, cy = (1 - m) / s, -m / s
    def cos(u, v):
        return float((u @ v) / (u.norm() * v.norm()))
    # head 1: channels (0, 1) constant maps; flattened cosine = cosine of the channel vectors
    h1 = 1 - cos(cx[:2], cy[:2])
    h2 = 1 - cos(cx[1:], cy[1:])
    h3 = 1 - cos(cx.mean().repeat(2), cy.mean().repeat(2))
    got = float(loss_fn(x, loss_fn.features(y)))
    assert got == pytest.approx(h1 + h2 + h3, rel=1e-5)


class _Embedder(nn.Module):
    def identity_embedding(self, x):
        v = x.mean(dim=(2, 3))
        return v / v.norm(dim=1, keepdim=True)


def test_psp_identity_loss_by_hand():
    loss_fn = IRSEIdentityLoss(_Embedder())  # type: ignore[arg-type]
    y_hat = torch.zeros(2, 3, 4, 4)
    y_hat[0, 0] = 1.0
    y_hat[1, 1] = 1.0
    y_emb = torch.tensor([[1.0, 0.0, 0.0], [math.sqrt(0.5), 0.0, math.sqrt(0.5)]])
    # sample 0: 1 - 1 = 0 ; sample 1: 1 - 0 = 1
    assert float(loss_fn(y_hat, y_emb)) == pytest.approx(0.5)


def test_feature_scale_warmup_is_the_reference_rule():
    assert feature_scale(0, 10_000) == 0.0
    assert feature_scale(2_500, 10_000) == pytest.approx(min(1.0, 0.0001 * 2_500))
    assert feature_scale(10_000, 10_000) == 1.0
    assert feature_scale(55_000, 10_000) == 1.0
    assert feature_scale(3, 0) == 1.0


def test_lr_step_decay_after_ten_of_twelve_epochs():
    assert lr_factor(0, 10_000, 10, 0.1) == 1.0
    assert lr_factor(99_999, 10_000, 10, 0.1) == 1.0
    assert lr_factor(100_000, 10_000, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(119_999, 10_000, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(5_000_000, 10_000, None, 0.1) == 1.0


def test_ranger_first_step_and_lookahead_by_hand():
    # Step 1: rho_1 = rho_inf - 2 b2 / (1 - b2) = 1 <= 5, so RAdam takes the momentum step
    # lr / (1 - b1) * (1 - b1) g = lr * g, with g centralised over all but the first dimension.
    p0 = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    g = torch.tensor([[1.0, 2.0, 6.0], [1.0, 1.0, 1.0]])
    gc = g - g.mean(dim=1, keepdim=True)  # [[-2, -1, 3], [0, 0, 0]]
    for k, alpha, want in ((6, 0.5, p0 - 0.1 * gc), (1, 0.5, p0 - 0.05 * gc)):
        p = nn.Parameter(p0.clone())
        opt = Ranger([p], lr=0.1, k=k, alpha=alpha)
        p.grad = g.clone()
        opt.step()
        assert torch.allclose(p.detach(), want, atol=1e-6), (k, p)
    # 1-D parameters are not centralised
    b = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = Ranger([b], lr=0.1)
    b.grad = torch.tensor([1.0, 3.0])
    opt.step()
    assert torch.allclose(b.detach(), torch.tensor([0.9, 0.7]))
    state = opt.state_dict()["state"][0]
    assert {"step", "exp_avg", "exp_avg_sq", "slow_buffer"} <= set(state)


def test_ranger_rectified_step_after_warmup():
    # rho_t > 5 from t = 6 with b2 = 0.999; compare step 7 with the formula on a constant gradient.
    p = nn.Parameter(torch.tensor([0.0]))
    opt = Ranger([p], lr=0.01, k=1000, betas=(0.95, 0.999), eps=1e-5)
    for _ in range(6):
        p.grad = torch.tensor([1.0])
        opt.step()
    before = float(p.detach())
    p.grad = torch.tensor([1.0])
    opt.step()
    t, b1, b2 = 7, 0.95, 0.999
    m = 1 - b1 ** t  # the average of a constant gradient 1
    v = 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
    step = math.sqrt((1 - b2 ** t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho * rho_inf / (rho_inf - 2)) / (1 - b1 ** t)
    assert before - float(p.detach()) == pytest.approx(0.01 * step * m / (math.sqrt(v) + 1e-5), rel=1e-5)


def test_bicubic_kernel_taps():
    assert torch.allclose(bicubic_kernel(1), torch.tensor([-0.0625, 0.5625, 0.5625, -0.0625]))
    k4 = bicubic_kernel(4)
    assert k4.numel() == 16 and float(k4.sum()) == pytest.approx(1.0)
    assert torch.allclose(k4, k4.flip(0))


def test_bicubic_downsample_and_degrade():
    x = torch.full((1, 3, 64, 64), 0.25)
    for f in (1, 2, 4, 8, 16, 32):
        out = bicubic_downsample(x, f)
        assert out.shape == (1, 3, 64 // f, 64 // f)
        assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 64, 64, generator=g)
    lr = degrade(img, 8)
    assert lr.shape == img.shape and float(lr.min()) >= 0 and float(lr.max()) <= 1
    assert torch.allclose(torch.round(lr * 255), lr * 255, atol=1e-4)  # 8-bit levels
    assert float((lr - img).abs().mean()) > float((degrade(img, 2) - img).abs().mean())
