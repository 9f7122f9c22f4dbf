"""fairseq adapter: ``data2vec_text`` (text data2vec v1), state-dict compatible with the reference (spec §4.2).

Pretraining forward (``target_tokens`` given) returns the plugin's regression contract
``{"pred", "target", "mask", "loss_beta", "loss_scale", "ema_decay"}`` for the ``data2vec_regression`` criterion.
``target_tokens`` may be the MLM target stream (original token at masked positions, pad elsewhere: the
``data2vec_masked_lm`` task and core ``masked_lm`` with ``include_target_tokens``) or the full sentence; the teacher
always encodes the original, unmasked sentence ``where(target != pad, target, src)`` (fix of bug B4).
``features_only=True`` / ``classification_head_name`` behave like the reference (RoBERTa interface).
Registering a classification head (``sentence_prediction``) drops the teacher and the regression head.
"""
import logging

import torch
from fairseq.models import FairseqEncoder, FairseqEncoderModel, register_model
from fairseq.models.roberta.model import RobertaClassificationHead
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import nn

from ..modules.targets import build_targets
from ..modules.teacher_holder import TeacherHolderMixin
from ..modules.text import TextTokenEncoder
from . import _text_state
from ._text_config import DECODER_ONLY_FIELDS, UNSUPPORTED, Data2VecTextConfig, TextTransformerConfig

logger = logging.getLogger(__name__)


def check_transformer_cfg(t) -> None:
    """Reject encoder options the plugin does not implement; warn about decoder-only fields that were changed."""
    bad = [f"transformer.{k}={getattr(t, k)}" for k, ok in UNSUPPORTED.items() if getattr(t, k, ok) != ok]
    bad += [f"transformer.quant_noise.{k}" for k in ("pq", "scalar") if getattr(t.quant_noise, k, 0) > 0]
    bad += ["transformer.encoder.embed_path"] if t.encoder.embed_path else []
    bad += ["transformer.encoder.layers_to_keep"] if t.encoder.layers_to_keep else []
    if bad:
        raise ValueError(f"data2vec_text does not support {', '.join(bad)}; remove these settings")
    default = TextTransformerConfig()
    changed = [k for k in DECODER_ONLY_FIELDS if getattr(t, k, None) != getattr(default, k, None)]
    if changed:
        logger.warning(f"data2vec_text: transformer fields {changed} only affect decoders and are ignored")


def build_regression_head(dim: int, layers: int) -> nn.Sequential:
    """head_layers=1: Linear(D,D); 2: Linear(D,2D)-GELU-Linear(2D,D); more: further Linear(2D,2D)-GELU."""
    if layers < 1:
        raise ValueError(f"model.head_layers must be >= 1, got {layers}")
    mods, cur = [], dim
    for _ in range(layers - 1):
        mods += [nn.Linear(cur, 2 * dim), nn.GELU()]
        cur = 2 * dim
    return nn.Sequential(*mods, nn.Linear(cur, dim))


class Data2VecTextEncoder(TeacherHolderMixin, FairseqEncoder):
    """Student ``sentence_encoder`` + ``regression_head``; EMA teacher of ``sentence_encoder`` (``encoder._ema``)."""

    def __init__(self, cfg: Data2VecTextConfig, dictionary):
        super().__init__(dictionary)
        self.cfg = cfg
        t = cfg.transformer
        check_transformer_cfg(t)
        self.padding_idx = dictionary.pad()
        self.mask_idx = dictionary.index("<mask>")
        if self.mask_idx == dictionary.unk():
            raise ValueError("data2vec_text: the dictionary has no '<mask>' symbol; use task data2vec_masked_lm, "
                             "masked_lm or sentence_prediction (they add it) or add it to dict.txt")
        self.sentence_encoder = TextTokenEncoder(
            len(dictionary), self.padding_idx, t.encoder.embed_dim, t.encoder.ffn_embed_dim, t.encoder.layers,
            t.encoder.attention_heads, t.max_source_positions, t.encoder.learned_pos,
            t.no_token_positional_embeddings, t.layernorm_embedding, not t.no_scale_embedding,
            t.encoder.normalize_before, t.dropout, t.attention_dropout, t.activation_dropout or t.relu_dropout,
            t.activation_fn, t.encoder.layerdrop)
        self.regression_head = build_regression_head(t.encoder.embed_dim, cfg.head_layers)
        self.apply(init_bert_params)  # BERT init before the teacher copy, so teacher == student at start
        self.layer_norms = [n for n, on in (("batch", cfg.batch_norm_target_layer),
                                            ("instance", cfg.instance_norm_target_layer),
                                            ("layer", cfg.layer_norm_target_layer)) if on] or ["none"]
        self.final_norms = [n for n, on in (("layer", cfg.layer_norm_targets),
                                            ("instance", cfg.instance_norm_targets)) if on] or ["none"]
        copy = ("embed_tokens.", "embed_positions.", "layernorm_embedding.") if cfg.ema_transformer_layers_only \
            else ()
        self.num_updates = 0
        self.init_teacher("sentence_encoder", copy, cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step)

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates
        self.observe_num_updates(num_updates)

    # ------------------------------------------------------------------------------------------------ named steps
    def extract_features(self, src_tokens, return_all_hiddens: bool = False, **unused):
        """(B, T) tokens -> features (B, T, C) and {"inner_states": [T, B, C] or None, "encoder_embedding"}."""
        out = self.sentence_encoder(src_tokens, return_all_hiddens=return_all_hiddens)
        states = [s.transpose(0, 1) for s in out.inner_states] if return_all_hiddens else None
        return out.x, {"inner_states": states, "encoder_embedding": out.embedding}

    def teacher_input_and_mask(self, src_tokens, target_tokens):
        """Original sentence for the teacher and the (B, T) bool positions to regress (dense, no sync)."""
        selected = target_tokens.ne(self.padding_idx)
        teacher_tokens = torch.where(selected, target_tokens, src_tokens)
        if self.cfg.regress_positions == "mask_token":
            return teacher_tokens, src_tokens.eq(self.mask_idx)
        return teacher_tokens, selected & src_tokens.ne(self.padding_idx)

    @torch.no_grad()
    def teacher_targets(self, tokens, dtype: torch.dtype) -> torch.Tensor:
        """Average of the teacher's top-K FFN outputs on ``tokens``, normalised: (B, T, C) fp32."""
        teacher = self.teacher.module
        k = self.cfg.average_top_k_layers
        with torch.autocast(tokens.device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = teacher(tokens, min_layer=len(teacher.layers) - k)
        return build_targets(out.layer_results, k, tuple(self.layer_norms), tuple(self.final_norms), out.padding_mask)

    def forward(self, src_tokens, target_tokens=None, features_only=False, return_all_hiddens=False, **unused):
        x, extra = self.extract_features(src_tokens, return_all_hiddens)
        if features_only:
            return x, extra
        if target_tokens is None or self.teacher is None or self.regression_head is None:
            raise ValueError("data2vec_text pretraining forward needs target_tokens and a model with teacher and "
                             "regression head (pass features_only=True for features)")
        teacher_tokens, mask = self.teacher_input_and_mask(src_tokens, target_tokens)
        target = self.teacher_targets(teacher_tokens, x.dtype)
        return {"pred": self.regression_head(x), "target": target, "mask": mask,
                "loss_beta": self.cfg.loss_beta, "loss_scale": self.cfg.loss_scale,
                "ema_decay": self.ema_decay_at(self.num_updates)}

    def max_positions(self):
        return self.cfg.max_positions or self.cfg.transformer.max_source_positions


@register_model("data2vec_text", dataclass=Data2VecTextConfig)
class Data2VecTextModel(FairseqEncoderModel):
    def __init__(self, cfg: Data2VecTextConfig, encoder: Data2VecTextEncoder):
        super().__init__(encoder)
        self.cfg = cfg
        self.classification_heads = nn.ModuleDict()

    @classmethod
    def build_model(cls, cfg: Data2VecTextConfig, task):
        return cls(cfg, Data2VecTextEncoder(cfg, task.source_dictionary))

    def forward(self, src_tokens, target_tokens=None, features_only=False, return_all_hiddens=False,
                classification_head_name=None, **kwargs):
        if classification_head_name is not None:
            features_only = True
        res = self.encoder(src_tokens, target_tokens, features_only, return_all_hiddens, **kwargs)
        if not isinstance(res, tuple):
            return res
        x, extra = res
        if classification_head_name is not None:
            x = self.classification_heads[classification_head_name](x)
        return x, extra

    def ema_step(self, num_updates: int) -> bool:
        return self.encoder.ema_step(num_updates)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates

    @property
    def supported_targets(self):
        return {"self"}

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        """Add a RoBERTa sentence head (tanh pooler on token 0, pooler dropout 0) and drop the pretraining-only
        teacher and regression head: a model with a classification head is being fine-tuned."""
        if self.classification_heads is None:
            self.classification_heads = nn.ModuleDict()
        dim = self.cfg.transformer.encoder.embed_dim
        self.classification_heads[name] = RobertaClassificationHead(
            input_dim=dim, inner_dim=inner_dim or dim, num_classes=num_classes, activation_fn="tanh",
            pooler_dropout=0)
        self.encoder.regression_head = None
        self.encoder.drop_teacher()

    def upgrade_state_dict_named(self, state_dict, name):
        prefix = name + "." if name else ""
        has_head = self.encoder.regression_head is not None
        _text_state.rename_legacy_keys(state_dict, prefix, has_head)
        super().upgrade_state_dict_named(state_dict, name)
        _text_state.reconcile_heads(self, state_dict, prefix)
        _text_state.drop_pretraining_entries(state_dict, prefix, has_head, self.encoder.teacher is not None)

    def remove_pretraining_modules(self, last_layer=None):
        """Reference semantics: drop regression head, teacher and classification heads; optionally keep only
        layers <= last_layer."""
        self.encoder.regression_head = None
        self.encoder.drop_teacher()
        self.classification_heads = None
        if last_layer is not None:
            enc = self.encoder.sentence_encoder
            enc.layers = nn.ModuleList(lyr for i, lyr in enumerate(enc.layers) if i <= last_layer)
            enc.layer_norm = None

    def max_positions(self):
        return self.encoder.max_positions()
