"""fairseq adapter: ``data2vec_multi_image_classification``, fine-tuning a data2vec 2.0 (``data2vec_multi``) image
checkpoint with the ``data2vec_image_classification`` task (reference: ``mae_image_classification``, spec §9).

The pretraining checkpoint is restored without teacher and decoders (strict load of the student); features =
``extract_features(mode=IMAGE)`` patch tokens (extra/CLS tokens removed), **mean-pooled**, then LayerNorm
(eps 1e-6) + linear head. Mixup/CutMix, label smoothing and the loss are those of the v1 classifier
(``data2vec_image_classification``). Layer-wise lr decay spans prenet + shared blocks: block i (0-based, prenet
first) gets ``layer_decay^(L - 1 - i)`` with L = number of blocks + 1; patch embedding, positions and extra tokens
get ``layer_decay^L`` (MAE/BEiT; the reference leaves them at 1); fc_norm and head get 1. Biases and 1-D
parameters have no weight decay. Needs ``optimizer._name=composite`` with ``dynamic_groups`` when < 1.
"""
import logging
from dataclasses import dataclass, field

import torch
from fairseq.models import BaseFairseqModel, register_model
from omegaconf import MISSING
from torch import nn

from .data2vec_image_classification import Data2VecImageClassificationConfig, Data2VecImageClassifier
from .data2vec_multi_classification_backbone import (all_blocks, build_backbone, load_backbone, pretrained_args,
                                                     set_drop_path)

logger = logging.getLogger(__name__)
MODE = "IMAGE"


@dataclass
class Data2VecMultiImageClassificationConfig(Data2VecImageClassificationConfig):
    model_path: str = field(default=MISSING, metadata={
        "help": "data2vec_multi (data2vec 2.0) image pretraining checkpoint; teacher and decoders are dropped"})
    head_init_std: float = field(default=0.02, metadata={
        "help": "std of the head's truncated-normal init (reference 0.02; head_init_scale then multiplies it)"})


@register_model("data2vec_multi_image_classification", dataclass=Data2VecMultiImageClassificationConfig)
class Data2VecMultiImageClassifier(Data2VecImageClassifier):
    """Reuses the v1 classifier's mixup, loss and forward; replaces the backbone, pooling and lr-decay tags."""

    def __init__(self, cfg: Data2VecMultiImageClassificationConfig):
        BaseFairseqModel.__init__(self)
        self.cfg = cfg
        state, args = pretrained_args(cfg)
        self.model = build_backbone(args, MODE)
        if state is not None and not cfg.no_pretrained_weights:
            load_backbone(self.model, state, MODE)
            logger.info(f"loaded pretrained data2vec_multi image weights from {cfg.model_path}")
        set_drop_path(self.model, MODE, cfg.drop_path)
        d = self.model.cfg.embed_dim
        self.fc_norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=cfg.head_init_std)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(cfg.head_init_scale)
        self.mixup_fn = self._build_mixup(cfg)
        self._tag_layer_decay(cfg.layer_decay)

    def _tag_layer_decay(self, decay: float) -> None:
        blocks = all_blocks(self.model, MODE)
        num_layers = len(blocks) + 1
        block_of = {id(p): i for i, b in enumerate(blocks) for p in b.parameters()}
        for name, p in self.named_parameters():
            over = {}
            if p.dim() == 1 or name.endswith(".bias") or "alibi_scale" in name:
                over["weight_decay_scale"] = 0
            if decay < 1.0:
                if id(p) in block_of:
                    over["lr_scale"] = decay ** (num_layers - block_of[id(p)] - 1)
                elif name.startswith("model."):
                    over["lr_scale"] = decay ** num_layers
            p.optim_overrides = {"optimizer": over}

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        x = self.model.extract_features(img, mode=MODE, mask=False, remove_extra_tokens=True)["x"]
        return self.head(self.fc_norm(x.mean(1)))
