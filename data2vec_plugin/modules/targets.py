"""Regression targets from the teacher's layer outputs (pure, no parameters, fp32)."""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

LAYER_NORMS = ("none", "instance", "layer", "batch", "group")
FINAL_NORMS = ("none", "instance", "layer")


def _norm_btc(y: torch.Tensor, kind, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Normalise a (B, T, C) fp32 tensor.

    instance: per sample and channel over time (the reference's F.instance_norm on (B, C, T));
    layer: over channels per position (no affine); batch: per channel over batch and time.
    Padded positions are excluded from the statistics when ``padding_mask`` (B, T, True = pad) is given.
    """
    if isinstance(kind, (tuple, list)):  # several normalisations, applied in the given order
        for k in kind:
            y = _norm_btc(y, k, padding_mask)
        return y
    if kind == "none":
        return y
    if kind == "layer":
        return F.layer_norm(y, y.shape[-1:])
    if kind == "instance":
        if padding_mask is None:
            return F.instance_norm(y.transpose(1, 2)).transpose(1, 2)
        keep = (~padding_mask).unsqueeze(-1).to(y.dtype)
        n = keep.sum(1, keepdim=True).clamp_min(1.0)
        mean = (y * keep).sum(1, keepdim=True) / n
        var = (((y - mean) * keep) ** 2).sum(1, keepdim=True) / n
        return (y - mean) * torch.rsqrt(var + 1e-5)
    if kind == "group":  # per sample over time and channels (the reference's group_norm_target_layer, fixed B15)
        return F.layer_norm(y, y.shape[-2:])
    if kind == "batch":
        return F.batch_norm(y.transpose(1, 2), None, None, training=True).transpose(1, 2)
    raise ValueError(f"unknown target normalisation '{kind}', choose one of {LAYER_NORMS}")


@torch.no_grad()
def build_targets(
    layer_outputs: Sequence[torch.Tensor],
    top_k: int,
    layer_norm="instance",
    final_norm: str = "none",
    padding_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Average of the top-``top_k`` teacher layer outputs, each normalised with ``layer_norm``.

    Args:
        layer_outputs: per-layer tensors (B, T, C), lowest layer first.
        top_k: number of top layers averaged (K in the paper).
        layer_norm: per-layer normalisation, one of ``LAYER_NORMS`` or a sequence of them applied in order.
        final_norm: normalisation of the average, one of ``FINAL_NORMS``.
        padding_mask: optional (B, T) bool, True at padding; padding is excluded from instance-norm statistics.
    Returns: (B, T, C) float32 targets.
    """
    if not 1 <= top_k <= len(layer_outputs):
        raise ValueError(f"average_top_k_layers={top_k} but the teacher has {len(layer_outputs)} layers")
    layers: List[torch.Tensor] = [
        _norm_btc(y.float(), layer_norm, padding_mask) for y in layer_outputs[-top_k:]
    ]
    y = torch.stack(layers, 0).mean(0) if len(layers) > 1 else layers[0]
    return _norm_btc(y, final_norm, padding_mask)


def choose_norm(instance: bool, layer: bool, batch: bool = False, group: bool = False):
    """Map the reference's boolean switches to the normalisations applied, in the reference's order
    (batch, instance, group, layer): "none", one name, or a tuple of names."""
    chosen = tuple(n for n, on in (("batch", batch), ("instance", instance), ("group", group), ("layer", layer))
                   if on)
    return chosen[0] if len(chosen) == 1 else (chosen or "none")
