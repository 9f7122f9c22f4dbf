import logging

import pytest
import torch
from torch import nn

from data2vec_plugin.criterions.regression import (CollapseError, Data2VecRegressionConfig,
                                                   Data2VecRegressionCriterion)
from data2vec_plugin.modules.losses import within_across_ratio


class FakeModel(nn.Module):
    """Returns fixed predictions/targets in the plugin's model output contract."""

    def __init__(self, pred, target, mask):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.pred, self.target, self.mask = pred, target, mask
        self.num_updates = 0

    def forward(self, **kw):
        return {"pred": self.pred * self.w, "target": self.target, "mask": self.mask, "loss_beta": 0.0,
                "loss_scale": 1.0, "ema_decay": 0.999}


def crit(**kw):
    return Data2VecRegressionCriterion(Data2VecRegressionConfig(**kw), task=None)


def sample(b=2):
    return {"id": torch.arange(10, 10 + b), "net_input": {}}


def test_loss_sample_size_and_logs():
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = True
    loss, size, log = crit()(FakeModel(pred, target, mask), sample())
    expected = ((pred - target) ** 2).sum(-1)[mask].sum()
    torch.testing.assert_close(loss, expected)
    assert size.item() == 2 and log["nsentences"] == 2
    assert set(log) >= {"loss", "sample_size", "ema_decay", "target_var", "pred_var", "var_ratio"}


def test_no_masked_position_gives_zero_loss_not_nan():
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    loss, size, log = crit()(FakeModel(pred, target, torch.zeros(2, 5, dtype=torch.bool)), sample())
    assert loss.item() == 0.0 and size.item() == 0
    loss.backward()  # still differentiable


def test_nan_loss_reports_sample_ids():
    pred = torch.randn(2, 5, 3)
    pred[1, 2, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"sample ids in this batch: \[10, 11\]"):
        crit()(FakeModel(pred, torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool)), sample())


def test_var_ratio_detects_per_sample_global_features():
    mask = torch.ones(4, 50, dtype=torch.bool)
    healthy = torch.randn(4, 50, 8)
    global_only = torch.randn(4, 1, 8).expand(4, 50, 8) + 1e-3 * torch.randn(4, 50, 8)
    assert within_across_ratio(healthy, mask) > 0.5
    assert within_across_ratio(global_only, mask) < 1e-3


@pytest.mark.parametrize("mode", ["off", "warn", "stop"])
def test_collapse_guard_modes(mode, caplog):
    mask = torch.ones(4, 50, dtype=torch.bool)
    collapsed = FakeModel(torch.zeros(4, 50, 8), torch.zeros(4, 50, 8), mask).train()
    c = crit(collapse_guard=mode, collapse_start_update=10)
    collapsed.num_updates = 5
    c(collapsed, sample(4))
    c(collapsed, sample(4))  # before collapse_start_update: never reported
    collapsed.num_updates = 12
    c(collapsed, sample(4))  # statistics of update 12 are checked at the next step
    with caplog.at_level(logging.WARNING):
        if mode == "stop":
            with pytest.raises(CollapseError, match=r"update 12: target std .* prediction std"):
                c(collapsed, sample(4))
            return
        c(collapsed, sample(4))
    warned = "representation collapse suspected at update 12" in caplog.text
    assert warned == (mode == "warn")


def test_collapse_guard_uses_var_ratio_rule():
    mask = torch.ones(4, 50, dtype=torch.bool)
    target = torch.randn(4, 50, 8)
    pred = (torch.randn(4, 1, 8) * 3).expand(4, 50, 8).contiguous()  # large std, no within-sample variation
    m = FakeModel(pred, target, mask).train()
    m.num_updates = 100
    c = crit(collapse_guard="stop", collapse_start_update=0)
    c(m, sample(4))
    with pytest.raises(CollapseError, match="variance ratio"):
        c(m, sample(4))


def test_reduce_metrics_averages_stats_and_normalises_loss():
    from fairseq import metrics
    logs = [{"loss": torch.tensor(6.0), "sample_size": torch.tensor(3), "nsentences": 2, "ema_decay": 0.99,
             "target_var": torch.tensor(1.0), "pred_var": torch.tensor(0.5), "var_ratio": torch.tensor(2.0),
             "_stat_count": 1},
            {"loss": torch.tensor(2.0), "sample_size": torch.tensor(1), "nsentences": 2, "ema_decay": 0.99,
             "target_var": torch.tensor(3.0), "pred_var": torch.tensor(0.5), "var_ratio": torch.tensor(4.0),
             "_stat_count": 1}]
    with metrics.aggregate() as agg:
        Data2VecRegressionCriterion.reduce_metrics(logs)
    vals = agg.get_smoothed_values()
    assert vals["loss"] == pytest.approx(2.0) and vals["target_var"] == pytest.approx(2.0)
    assert vals["ema_decay"] == pytest.approx(0.99) and vals["var_ratio"] == pytest.approx(3.0)
