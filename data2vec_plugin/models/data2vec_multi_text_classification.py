"""fairseq adapter: ``data2vec_multi_text_classification``, sentence classification / regression from a data2vec 2.0
(``data2vec_multi``) text checkpoint with fairseq's ``sentence_prediction`` task and criterion (reference:
``data2vec_text_classification``, spec §9).

The pretraining checkpoint (``model_path``) is restored without teacher and decoders (strict load of the student);
the vocabulary is the fine-tuning task's ``input0/dict.txt`` (+ ``<mask>``), which must be the pretraining
dictionary (checked against the checkpoint's embedding). Heads are RoBERTa classification heads on token 0
(``<s>``). Accepts both ``sentence_prediction`` input layouts: ``(src_tokens, src_lengths)`` and, with
``task.d2v2_multi=true``, ``(source, id, padding_mask)``.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from fairseq.models.roberta.model import RobertaClassificationHead
from omegaconf import MISSING
from torch import nn

from .data2vec_multi_classification_backbone import build_backbone, load_backbone, pretrained_args, set_drop_path

logger = logging.getLogger(__name__)
MODE = "TEXT"
EMBED_KEY = "modality_encoders.TEXT.local_encoder.embed_tokens.weight"


@dataclass
class Data2VecMultiTextClassificationConfig(FairseqDataclass):
    model_path: str = field(default=MISSING, metadata={
        "help": "data2vec_multi (data2vec 2.0) text pretraining checkpoint; teacher and decoders are dropped"})
    no_pretrained_weights: bool = field(default=False, metadata={
        "help": "build the architecture from model_path's config but keep random weights (baselines)"})
    pooler_activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(default="tanh", metadata={
        "help": "activation of the classification head's dense layer"})
    pooler_dropout: float = field(default=0.0, metadata={"help": "dropout inside the classification head"})
    drop_path: Optional[float] = field(default=None, metadata={
        "help": "stochastic depth for fine-tuning, linear from 0 over the blocks (None = keep the pretrained rates)"})
    max_positions: int = field(default=512, metadata={
        "help": "set from task.max_positions by sentence_prediction; must not exceed the text encoder's "
                "max_source_positions"})
    pretrained_model_args: Any = field(default=None, metadata={
        "help": "filled automatically with model_path's config; a fine-tuned checkpoint rebuilds from it"})


@register_model("data2vec_multi_text_classification", dataclass=Data2VecMultiTextClassificationConfig)
class Data2VecMultiTextClassifier(BaseFairseqModel):
    def __init__(self, cfg: Data2VecMultiTextClassificationConfig, task):
        super().__init__()
        self.cfg = cfg
        state, args = pretrained_args(cfg)
        self.model = build_backbone(args, MODE, task)
        self.pad = task.source_dictionary.pad()
        limit = self.model.cfg.modalities.text.max_source_positions
        if cfg.max_positions > limit:
            raise ValueError(f"task.max_positions={cfg.max_positions} exceeds the pretrained text encoder's "
                             f"max_source_positions={limit}")
        if state is not None and not cfg.no_pretrained_weights:
            rows = state["model"][EMBED_KEY].size(0)
            if rows != len(task.source_dictionary):
                raise ValueError(f"the fine-tuning dictionary has {len(task.source_dictionary)} symbols (incl. "
                                 f"<mask>), the checkpoint's embedding {rows}: binarize input0 with the "
                                 "pretraining dict.txt (fairseq-preprocess --srcdict)")
            load_backbone(self.model, state, MODE)
            logger.info(f"loaded pretrained data2vec_multi text weights from {cfg.model_path}")
        set_drop_path(self.model, MODE, cfg.drop_path)
        self.classification_heads = nn.ModuleDict()

    @classmethod
    def build_model(cls, cfg: Data2VecMultiTextClassificationConfig, task=None):
        if getattr(task, "source_dictionary", None) is None:
            raise ValueError("data2vec_multi_text_classification needs a task with a source dictionary "
                             "(sentence_prediction)")
        return cls(cfg, task)

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        d = self.model.cfg.embed_dim
        if name in self.classification_heads:
            prev = self.classification_heads[name].out_proj.out_features
            if prev != num_classes:
                logger.warning(f"re-registering head '{name}' with num_classes {num_classes} (prev: {prev})")
        self.classification_heads[name] = RobertaClassificationHead(
            d, inner_dim or d, num_classes, self.cfg.pooler_activation_fn, self.cfg.pooler_dropout)

    def max_positions(self):
        return self.cfg.max_positions

    def forward(self, src_tokens=None, src_lengths=None, source=None, id=None, padding_mask=None,
                features_only=True, classification_head_name=None, **unused):
        tokens = src_tokens if src_tokens is not None else source
        if padding_mask is None:
            padding_mask = tokens.eq(self.pad)
        out = self.model(tokens, id=id, mode=MODE, padding_mask=padding_mask, mask=False, features_only=True)
        x = out["x"]
        if classification_head_name is not None:
            x = self.classification_heads[classification_head_name](x)
        return x, out

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, head: str = "sentence_classification_head") -> torch.Tensor:
        """Class log-probabilities (or regression outputs for a 1-output head) of a (B, T) token batch."""
        logits, _ = self.forward(tokens, classification_head_name=head)
        return logits if logits.size(-1) == 1 else logits.log_softmax(-1)
