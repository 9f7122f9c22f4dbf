"""Helpers of ``data2vec_multi``: teacher view, loss, target norms, parameter tags, initialisation."""
import copy
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def encoder_view(enc: nn.Module, keep_local: bool) -> nn.Module:
    """Shallow copy of a modality encoder sharing the student's sub-modules, without decoder (and without the
    local encoder / feature projection unless ``keep_local``): the part of it the teacher mirrors."""
    view = copy.copy(enc)
    view._modules = dict(enc._modules)
    view._parameters = dict(enc._parameters)
    view._buffers = dict(enc._buffers)
    view.decoder = None
    if not keep_local:
        view.local_encoder = None
        view.project_features = None
    return view


class TeacherView(nn.Module):
    """What the EMA teacher mirrors when ``ema_encoder_only=False``: modality encoders (see ``encoder_view``),
    the shared blocks and the final norm. Keys equal the reference ``_ema`` layout (spec §4.5)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        mods = model.cfg.modalities
        self.modality_encoders = nn.ModuleDict({
            name: encoder_view(enc, getattr(mods, name.lower()).ema_local_encoder)
            for name, enc in model.modality_encoders.items()})
        self.blocks = model.blocks
        self.norm = model.norm


def d2v_loss(pred: torch.Tensor, target: torch.Tensor, beta: float, scale: Optional[float]) -> torch.Tensor:
    """Elementwise (N, D) L2 (beta 0) or smooth-L1 loss in fp32 times ``scale`` (None = 1/sqrt(D))."""
    pred = pred.reshape(-1, pred.size(-1)).float()
    target = target.reshape(-1, pred.size(-1)).float()
    loss = (F.mse_loss(pred, target, reduction="none") if beta == 0
            else F.smooth_l1_loss(pred, target, reduction="none", beta=beta))
    return loss * (scale if scale is not None else 1.0 / math.sqrt(pred.size(-1)))


def target_norms(cfg):
    """(per-layer norms, final norms) for ``build_targets`` in the reference order."""
    layer = tuple(n for n, on in (("batch", cfg.batch_norm_target_layer), ("instance", cfg.instance_norm_target_layer),
                                  ("layer", cfg.layer_norm_target_layer)) if on) or "none"
    final = tuple(n for n, on in (("layer", cfg.layer_norm_targets), ("instance", cfg.instance_norm_targets))
                  if on) or "none"
    return layer, final


def tag_parameters(model: nn.Module, decoder_group: bool) -> None:
    """No weight decay for 1-D params, biases and ALiBi scales; optional 'decoder' param group."""
    for name, p in model.named_parameters():
        if p.dim() == 1 or name.endswith(".bias") or "alibi_scale" in name:
            p.optim_overrides = {"optimizer": {"weight_decay_scale": 0}}
        if decoder_group and "decoder" in name:
            p.param_group = "decoder"


def xavier_init(m: nn.Module) -> None:
    """MAE-style init: xavier-uniform Linear weights, zero bias; LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.weight is not None:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@torch.no_grad()
def param_norm(params) -> torch.Tensor:
    """L2 norm over a list of tensors (fused, no host sync)."""
    params = [p for p in params if p.is_floating_point()]
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(params)]))
