"""Regression loss and variance statistics (pure functions)."""
import math
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F


def regression_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 0.0,
                    scale: Optional[float] = None) -> torch.Tensor:
    """Per-position loss (N,): sum over channels of L2 (``beta == 0``) or smooth-L1(beta), times ``scale``.

    ``scale`` None or <= 0 means 1/sqrt(D), the paper's default.
    """
    pred = pred.float()
    target = target.float()
    if beta == 0:
        per = F.mse_loss(pred, target, reduction="none")
    else:
        per = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    s = (1.0 / math.sqrt(pred.size(-1))) if scale is None or scale <= 0 else float(scale)
    return per.sum(-1) * s


def feature_std(y: torch.Tensor, weight: Optional[torch.Tensor] = None, all_reduce: bool = True) -> torch.Tensor:
    """Mean over channels of the per-channel std of ``y`` (..., D) over the positions where ``weight`` (...) is 1.

    fp32, no host sync, two passes (mean, then squared deviations: exact also when the variance is tiny). Across
    ranks when ``torch.distributed`` is initialised (gloo on CPU, nccl on GPU): one all-reduce per pass.
    """
    d = y.size(-1)
    y = y.detach().float().reshape(-1, d)
    w = (torch.ones(y.size(0), device=y.device) if weight is None
         else weight.detach().reshape(-1).to(device=y.device, dtype=torch.float32))
    reduce = all_reduce and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    first = torch.cat([w.sum().view(1), (y * w[:, None]).sum(0)])
    if reduce:
        dist.all_reduce(first)
    n, mean = first[0], first[1:] / first[0].clamp_min(1.0)
    sq = (((y - mean) ** 2) * w[:, None]).sum(0)
    if reduce:
        dist.all_reduce(sq)
    var = sq / (n - 1).clamp_min(1.0)
    return torch.sqrt(var + 1e-6).mean()


def masked_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, beta: float = 0.0,
                           scale: Optional[float] = None) -> torch.Tensor:
    """Sum of ``regression_loss`` over positions where ``mask`` (B, T) is True; pred/target (B, T, D).

    Computed densely with a 0/1 weight, so there is no data-dependent indexing (no host sync); a batch with no
    masked position gives exactly 0.
    """
    per = regression_loss(pred, target, beta, scale)
    return torch.where(mask, per, per.new_zeros(())).sum()


def within_across_ratio(y: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Within-sample over across-sample variance of (B, T, D) ``y`` at positions where ``weight`` (B, T) is 1.

    within = mean over samples and channels of the variance over a sample's positions; across = mean over channels
    of the variance of the per-sample means. Features that only encode per-sample global information (a known
    collapse mode that target/prediction variance alone does not show) give a ratio far below 1. No host sync.
    """
    y = y.detach().float()
    w = weight.detach().to(y.dtype).unsqueeze(-1)
    n = w.sum(1).clamp_min(1.0)                                   # (B, 1)
    mean = (y * w).sum(1) / n                                     # (B, D)
    within = (((y - mean[:, None]) ** 2) * w).sum(1) / n          # (B, D)
    has = (weight.sum(1) > 0).to(y.dtype)                         # samples with at least one position
    k = has.sum().clamp_min(1.0)
    within_mean = (within.mean(1) * has).sum() / k
    grand = (mean * has[:, None]).sum(0) / k
    across = (((mean - grand) ** 2) * has[:, None]).sum(0) / (k - 1).clamp_min(1.0)
    return within_mean / (across.mean() + eps)
