import math

import pytest
import torch
import torch.nn.functional as F

from data2vec_plugin.modules.losses import feature_std, masked_regression_loss, regression_loss
from data2vec_plugin.modules.targets import build_targets, choose_norm


def test_instance_norm_average_by_hand():
    a = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])  # (B=1, T=2, C=2)
    b = torch.tensor([[[0.0, 0.0], [2.0, 4.0]]])
    y = build_targets([torch.zeros(1, 2, 2), a, b], top_k=2, layer_norm="instance")
    # instance norm over time per channel: (x - mean) / sqrt(var + eps) with var over T (biased)
    def inorm(x):
        m = x.mean(1, keepdim=True)
        v = ((x - m) ** 2).mean(1, keepdim=True)
        return (x - m) / torch.sqrt(v + 1e-5)
    torch.testing.assert_close(y, (inorm(a) + inorm(b)) / 2)
    assert y.dtype == torch.float32


def test_top_k_uses_last_layers_and_final_layer_norm():
    layers = [torch.full((1, 3, 4), float(i)) + torch.arange(4.0) for i in range(4)]
    y = build_targets(layers, top_k=2, layer_norm="none")
    torch.testing.assert_close(y, torch.full((1, 3, 4), 2.5) + torch.arange(4.0))
    y2 = build_targets(layers, top_k=2, layer_norm="none", final_norm="layer")
    torch.testing.assert_close(y2, F.layer_norm(y, (4,)))


def test_padding_excluded_from_instance_stats():
    x = torch.randn(1, 5, 3)
    pad = torch.tensor([[False, False, False, True, True]])
    y = build_targets([x], 1, "instance", padding_mask=pad)
    ref = build_targets([x[:, :3]], 1, "instance")
    torch.testing.assert_close(y[:, :3], ref, rtol=1e-5, atol=1e-5)


def test_choose_norm_keeps_reference_order():
    assert choose_norm(True, False) == "instance"
    assert choose_norm(False, False) == "none"
    assert choose_norm(True, True, batch=True) == ("batch", "instance", "layer")
    x = torch.randn(2, 5, 3)
    y = build_targets([x], 1, ("instance", "layer"))
    inst = F.instance_norm(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y, F.layer_norm(inst, (3,)))


def test_loss_l2_smooth_l1_and_scale():
    p = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    t = torch.tensor([[0.5, 2.0, -1.0, 0.0]])
    assert regression_loss(p, t).item() == pytest.approx((0.25 + 4 + 1) / math.sqrt(4))
    # smooth-L1 beta=1: 0.5*d^2/beta for |d|<beta, else |d| - 0.5*beta
    assert regression_loss(p, t, beta=1.0, scale=1.0).item() == pytest.approx(0.125 + 1.5 + 0.5)
    assert regression_loss(p, t, beta=0.0, scale=2.0).item() == pytest.approx(2 * 5.25)


def test_masked_loss_sums_only_masked_and_zero_mask_gives_zero():
    pred = torch.randn(2, 3, 4)
    target = torch.randn(2, 3, 4)
    target[1, 2] = float("inf")  # never regressed: must not leak into the loss
    mask = torch.tensor([[True, False, True], [False, True, False]])
    expected = regression_loss(pred[mask], target[mask]).sum()
    torch.testing.assert_close(masked_regression_loss(pred, target, mask), expected)
    zero = masked_regression_loss(pred, target, torch.zeros(2, 3, dtype=torch.bool))
    assert zero.item() == 0.0 and not torch.isnan(zero)


def test_feature_std_matches_torch():
    y = torch.randn(50, 6) * torch.arange(1.0, 7.0)
    expect = torch.sqrt(y.var(0) + 1e-6).mean()
    torch.testing.assert_close(feature_std(y), expect, rtol=1e-5, atol=1e-5)
    w = torch.zeros(50)
    w[:20] = 1
    torch.testing.assert_close(feature_std(y, w), torch.sqrt(y[:20].var(0) + 1e-6).mean(), rtol=1e-5, atol=1e-5)


def test_feature_std_exact_for_tiny_variance_on_large_offset():
    y = 100.0 + 1e-4 * torch.randn(4000, 8, dtype=torch.float64)
    expect = torch.sqrt(y.var(0) + 1e-6).mean().float()
    torch.testing.assert_close(feature_std(y.float()), expect, rtol=1e-4, atol=1e-7)
