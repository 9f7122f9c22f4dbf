"""Precomputed data2vec 2.0 masks for collaters: what the model asks for and how a batch's masks are built.

A batch gets ``net_input["precomputed_mask"]`` (B * clone_batch, T) bool (sample-major rows) and
``net_input["num_masked"]`` (int, equal for every row), so the model needs no device->host read to size its
gathers. Every row is a function of (seed, epoch, sample id, clone index).
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..masking.v2_masks import clone_masks
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


def batch_masks(spec: V2MaskSpec, ids: Sequence[int], size: int, seed: int, epoch: int,
                valid: Optional[Sequence[int]] = None) -> dict:
    """-> {"precomputed_mask": (len(ids) * clones, size) bool tensor, "num_masked": int}."""
    m = clone_masks(spec.kind, ids, max(spec.clone_batch, 1), size, spec.mask_prob, spec.mask_length, seed, epoch,
                    spec.mask_prob_adjust, spec.inverse_mask, spec.mask_dropout, valid)
    mask = torch.from_numpy(m)
    return {"precomputed_mask": mask, "num_masked": int(m[0].sum()) if len(m) else 0}
