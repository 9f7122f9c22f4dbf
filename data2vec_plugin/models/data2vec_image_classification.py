"""fairseq adapter: ``data2vec_image_classification``, fine-tuning a pretrained ``data2vec_vision`` checkpoint.

The pretrained config is read from ``model_path`` once and stored in ``pretrained_model_args``, so fine-tuned
checkpoints rebuild without the original file. The teacher and ``final_proj`` are removed; features = the
student encoder's patch tokens without its final norm, **mean over all patches** (the reference also drops the
first patch, bug B10), then LayerNorm + linear head (scaled by ``head_init_scale`` at init, as in BEiT).
Mixup/CutMix and label smoothing use timm; layer-wise lr decay tags parameters with fairseq ``optim_overrides``
(needs ``optimizer._name=composite`` with ``dynamic_groups: true``; the task checks this).
Returns ``{"losses": {"ce"}, "sample_size", "correct" (eval)}`` for fairseq's ``model`` criterion.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models import BaseFairseqModel, register_model
from omegaconf import MISSING, OmegaConf
from torch import nn

from .data2vec_vision import Data2VecVisionConfig, Data2VecVisionModel

logger = logging.getLogger(__name__)


@dataclass
class Data2VecImageClassificationConfig(FairseqDataclass):
    model_path: str = field(default=MISSING, metadata={"help": "pretraining checkpoint (data2vec_vision)"})
    no_pretrained_weights: bool = field(default=False, metadata={
        "help": "build the architecture from model_path's config but keep random weights (baselines)"})
    num_classes: int = field(default=1000, metadata={"help": "number of classes; must be >= the folder's classes"})
    mixup: float = field(default=0.8, metadata={"help": "mixup alpha during training; 0 disables mixup"})
    cutmix: float = field(default=1.0, metadata={"help": "cutmix alpha during training; 0 disables cutmix"})
    mixup_prob: float = field(default=1.0, metadata={"help": "probability of applying mixup/cutmix to a batch"})
    mixup_switch_prob: float = field(default=0.5, metadata={
        "help": "probability of cutmix instead of mixup when both are enabled"})
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the training loss"})
    layer_decay: float = field(default=1.0, metadata={
        "help": "layer-wise lr decay: block i gets lr * layer_decay^(depth + 1 - i); 1 = off; < 1 needs the "
                "composite optimizer with dynamic_groups (see examples/vision/finetune_classification.yaml)"})
    drop_path: Optional[float] = field(default=None, metadata={
        "help": "override the pretrained model's stochastic depth rate for fine-tuning (None = keep)"})
    head_init_scale: float = field(default=1e-3, metadata={"help": "multiply the head's initial weights by this"})
    pretrained_model_args: Any = field(default=None, metadata={
        "help": "filled automatically with model_path's config; a fine-tuned checkpoint rebuilds from it"})
    data: Optional[str] = field(default=None, metadata={
        "help": "accepted for reference configs (it re-used task.data there); not needed here, ignored"})


def _vision_config(pretrained, drop_path: Optional[float]) -> Data2VecVisionConfig:
    model_cfg = pretrained["model"] if "model" in pretrained else pretrained
    name = model_cfg.get("_name", None)
    if name != "data2vec_vision":
        raise ValueError(f"model.model_path must be a data2vec_vision pretraining checkpoint, got model '{name}'")
    cfg = merge_with_parent(Data2VecVisionConfig(), OmegaConf.create(OmegaConf.to_container(model_cfg)),
                            remove_missing=True)
    if drop_path is not None:
        cfg.drop_path = drop_path
    return cfg


@register_model("data2vec_image_classification", dataclass=Data2VecImageClassificationConfig)
class Data2VecImageClassifier(BaseFairseqModel):
    def __init__(self, cfg: Data2VecImageClassificationConfig):
        super().__init__()
        self.cfg = cfg
        state = None
        if cfg.pretrained_model_args is None:
            state = checkpoint_utils.load_checkpoint_to_cpu(cfg.model_path)
            keep = {k: v for k, v in OmegaConf.to_container(state["cfg"]).items()
                    if k not in ("criterion", "lr_scheduler", "optimizer")}
            cfg.pretrained_model_args = OmegaConf.create(keep)
        self.model = Data2VecVisionModel(_vision_config(cfg.pretrained_model_args, cfg.drop_path))
        self.model.remove_pretraining_modules()
        if state is not None and not cfg.no_pretrained_weights:
            self.model.load_state_dict(state["model"], strict=True)
            logger.info(f"loaded pretrained data2vec_vision weights from {cfg.model_path}")
        d = self.model.cfg.embed_dim
        self.fc_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        with torch.no_grad():
            self.head.weight.mul_(cfg.head_init_scale)
            self.head.bias.mul_(cfg.head_init_scale)
        self.mixup_fn = self._build_mixup(cfg)
        if cfg.layer_decay < 1.0:
            self._tag_layer_decay(cfg.layer_decay)

    @staticmethod
    def _build_mixup(cfg):
        if cfg.mixup <= 0 and cfg.cutmix <= 0:
            return None
        from timm.data import Mixup
        return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                     switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                     num_classes=cfg.num_classes)

    def _tag_layer_decay(self, decay: float) -> None:
        """BEiT layer ids: embeddings/rel-pos 0, block i -> i + 1, head depth + 1 (lr scale 1)."""
        depth = len(self.model.encoder.blocks)
        for name, p in self.named_parameters():
            if name.startswith("model.encoder.blocks."):
                layer = int(name.split(".")[3]) + 1
            elif name.startswith("model."):
                layer = 0
            else:
                layer = depth + 1
            p.optim_overrides = {"optimizer": {"lr_scale": decay ** (depth + 1 - layer)}}

    @classmethod
    def build_model(cls, cfg: Data2VecImageClassificationConfig, task=None):
        return cls(cfg)

    # ------------------------------------------------------------------------------------------------ named steps
    def mix(self, img: torch.Tensor, label: Optional[torch.Tensor]):
        """Training-time mixup/cutmix -> (img, soft targets or None). Odd batches are left unmixed."""
        if not self.training or self.mixup_fn is None or label is None or img.size(0) % 2:
            return img, None
        return self.mixup_fn(img, label)

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        x = self.model(img, mask=False)  # (B, N, D) patch tokens, final norm bypassed
        return self.head(self.fc_norm(x.mean(1)))

    def loss(self, logits: torch.Tensor, label: torch.Tensor, soft: Optional[torch.Tensor]) -> torch.Tensor:
        if soft is not None:
            return -(soft * F.log_softmax(logits.float(), dim=-1)).sum(-1)
        smoothing = self.cfg.label_smoothing if self.training else 0.0
        return F.cross_entropy(logits.float(), label, label_smoothing=smoothing, reduction="none")

    def forward(self, img: torch.Tensor, label: Optional[torch.Tensor] = None):
        img, soft = self.mix(img, label)
        logits = self.logits(img)
        if label is None:
            return logits
        result = {"losses": {"ce": self.loss(logits, label, soft)}, "sample_size": img.size(0)}
        if not self.training:
            result["correct"] = (logits.argmax(-1) == label).sum()
        return result
