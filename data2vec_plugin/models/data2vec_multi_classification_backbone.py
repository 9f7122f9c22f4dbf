"""Shared part of the data2vec 2.0 fine-tuning models: restore a ``data2vec_multi`` pretraining checkpoint as a
single-modality encoder without teacher or decoders.

* ``pretrained_args``: read ``model_path`` once; its config (minus criterion/optimizer/lr_scheduler) is stored in
  ``cfg.pretrained_model_args`` **and** in the top-level training config, so fine-tuned checkpoints rebuild
  without the pretraining file (fairseq builds models from a merged *copy* of ``cfg.model``).
* ``build_backbone``: ``Data2VecMultiModel`` with ``skip_ema`` (no teacher, no shared decoder / recon head), then
  ``remove_pretraining_modules(modality)`` (modality decoder and other modalities dropped).
* ``load_backbone``: drops ``_ema``, decoder and other-modality keys from the checkpoint and loads the rest
  **strictly**, so a backbone key that is missing or misshaped is an error, not a silently random weight.
"""
import logging
from typing import Optional, Tuple

import numpy as np
from fairseq import checkpoint_utils
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf, open_dict

from ._v2_config import Data2VecMultiConfig
from .data2vec_multi import Data2VecMultiModel

logger = logging.getLogger(__name__)
DROPPED_CFG = ("criterion", "optimizer", "lr_scheduler")


def _remember(cfg, args) -> None:
    cfg.pretrained_model_args = args
    parent = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    node = parent.get("model", None) if parent is not None else None
    if node is not None and node is not cfg and node.get("_name", None) == cfg.get("_name", None):
        with open_dict(node):
            node.pretrained_model_args = args


def pretrained_args(cfg) -> Tuple[Optional[dict], object]:
    """(checkpoint state or None when rebuilding a fine-tuned model, pretraining config)."""
    if cfg.pretrained_model_args is not None:
        return None, cfg.pretrained_model_args
    state = checkpoint_utils.load_checkpoint_to_cpu(cfg.model_path)
    keep = {k: v for k, v in OmegaConf.to_container(state["cfg"], resolve=True).items() if k not in DROPPED_CFG}
    args = OmegaConf.create(keep)
    _remember(cfg, args)
    return state, args


def multi_config(args, modality: str) -> Data2VecMultiConfig:
    model_cfg = args["model"] if "model" in args else args
    name = model_cfg.get("_name", None)
    if name != "data2vec_multi":
        raise ValueError(f"model.model_path must be a data2vec_multi (data2vec 2.0) checkpoint, got model '{name}'")
    raw = OmegaConf.to_container(model_cfg, resolve=True)
    cfg = merge_with_parent(Data2VecMultiConfig(), OmegaConf.create(raw), remove_missing=True)
    supported = cfg.supported_modality
    if supported is not None and str(getattr(supported, "name", supported)) != modality:
        raise ValueError(f"model_path was pretrained on {supported}, this fine-tuning model needs {modality}")
    cfg.skip_ema = True
    cfg.supported_modality = modality
    return cfg


def build_backbone(args, modality: str, task=None) -> Data2VecMultiModel:
    model = Data2VecMultiModel(multi_config(args, modality), [modality], task=task, skip_ema=True)
    model.remove_pretraining_modules(modality=modality)
    return model


def backbone_state(state_model: dict, modality: str) -> dict:
    """The checkpoint's student weights for ``modality`` without teacher, decoders and reconstruction head."""
    out = {}
    for k, v in state_model.items():
        if k.startswith(("_ema", "shared_decoder", "recon_proj")):
            continue
        if k.startswith("modality_encoders."):
            mod, rest = k.split(".", 2)[1:]
            if mod != modality or rest.startswith("decoder."):
                continue
        out[k] = v
    return out


def load_backbone(model: Data2VecMultiModel, state: dict, modality: str) -> None:
    weights = backbone_state(state["model"], modality)
    model.upgrade_state_dict_named(weights, "")
    model.load_state_dict(weights, strict=True)
    logger.info(f"restored {len(weights)} data2vec_multi {modality} tensors (teacher and decoders dropped)")


def all_blocks(model: Data2VecMultiModel, modality: str) -> list:
    """Prenet blocks of the modality encoder followed by the shared blocks, in depth order."""
    ctx = model.modality_encoders[modality].context_encoder
    return list(getattr(ctx, "blocks", [])) + list(model.blocks)


def set_drop_path(model: Data2VecMultiModel, modality: str, rate: Optional[float]) -> None:
    """Stochastic depth linearly from 0 to ``rate`` over prenet + shared blocks (reference fine-tuning)."""
    if rate is None:
        return
    blocks = all_blocks(model, modality)
    for b, p in zip(blocks, np.linspace(0.0, rate, len(blocks))):
        b.drop_path.p = float(p)
