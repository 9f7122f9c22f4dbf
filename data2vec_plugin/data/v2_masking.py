"""Precomputed data2vec 2.0 masks for collaters: what the model asks for and how a batch's masks are built.

A batch gets ``net_input["precomputed_mask"]`` (B * clone_batch, T) bool (sample-major rows) and
``net_input["num_masked"]`` (int, equal for every row), so the model needs no device->host read to size its
gathers; where masks may cover padding (``inverse_mask`` or ``add_masks`` with padded rows) also
``net_input["num_valid_masked"]`` (int, masked non-padding positions of the batch: the loss's sample size), and with
``mask_channel_prob > 0`` ``net_input["channel_mask"]`` (B * clone_batch, C) bool. Every row is a function of
(seed, epoch, sample id, clone index).
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..masking.v2_masks import channel_masks, clone_masks
from ..modules.audio import ConvSpec


@dataclass
class V2MaskSpec:
    """Masking request of ``data2vec_multi`` (see ``Data2VecMultiModel.data_mask_spec``)."""
    modality: str
    kind: str               # "1d" | "2d" | "random"
    mask_prob: float
    mask_length: int
    mask_prob_adjust: float = 0.0
    inverse_mask: bool = False
    mask_dropout: float = 0.0
    clone_batch: int = 1
    conv_spec: Optional[ConvSpec] = None   # audio: samples -> frames
    patch_size: Optional[int] = None       # image: pixels per patch side
    add_masks: bool = False                # spans: equalise counts up to the longest row (reference add_masks)
    channel_prob: float = 0.0              # mask_channel_prob (student channel masking; 0 = off)
    channel_length: int = 64               # mask_channel_length
    channels: int = 0                      # feature channels (embed_dim) the channel mask covers


def batch_masks(spec: V2MaskSpec, ids: Sequence[int], size: int, seed: int, epoch: int,
                valid: Optional[Sequence[int]] = None) -> dict:
    """-> {"precomputed_mask": (len(ids) * clones, size) bool tensor, "num_masked": int, [num_valid_masked],
    [channel_mask]} (see the module docstring)."""
    clones = max(spec.clone_batch, 1)
    m = clone_masks(spec.kind, ids, clones, size, spec.mask_prob, spec.mask_length, seed, epoch,
                    spec.mask_prob_adjust, spec.inverse_mask, spec.mask_dropout, valid, spec.add_masks)
    out = {"precomputed_mask": torch.from_numpy(m), "num_masked": int(m[0].sum()) if len(m) else 0}
    if valid is not None and (spec.inverse_mask or spec.add_masks):
        lengths = [int(v) for v in valid for _ in range(clones)]
        out["num_valid_masked"] = int(sum(row[:n].sum() for row, n in zip(m, lengths)))
    if spec.channel_prob > 0:
        out["channel_mask"] = torch.from_numpy(channel_masks(ids, clones, spec.channels, spec.channel_prob,
                                                             spec.channel_length, seed, epoch))
    return out
