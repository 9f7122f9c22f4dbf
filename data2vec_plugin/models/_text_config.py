"""Data2VecTextConfig: every field of the reference ``Data2VecTextConfig`` (spec §3.2), same names and defaults.

Nested configs use ``default_factory`` (reference bug B1) and the nested decoder config carries plain integer
``input_dim``/``output_dim`` instead of the ``${model.decoder.embed_dim}`` interpolation that breaks both
``build_model`` and ``fairseq-hydra-train`` start-up for the reference (bug B7). Only encoder-side transformer
fields influence data2vec_text; decoder/adaptive-softmax fields are accepted so reference checkpoints and yamls
load, and a warning names any of them set to a non-default value.
"""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models.transformer.transformer_config import (DecoderConfig, EncDecBaseConfig, QuantNoiseConfig,
                                                            TransformerConfig)
from omegaconf import II

REGRESS_POSITIONS = ChoiceEnum(["selected", "mask_token"])

# TransformerConfig fields that only concern decoders, adaptive softmax or features data2vec_text does not have.
DECODER_ONLY_FIELDS = (
    "max_target_positions", "share_decoder_input_output_embed", "share_all_embeddings", "merge_src_tgt_embed",
    "adaptive_softmax_cutoff", "adaptive_softmax_dropout", "adaptive_softmax_factor", "tie_adaptive_weights",
    "tie_adaptive_proj", "no_cross_attention", "cross_self_attention", "base_layers", "base_sublayers",
    "base_shuffle", "no_decoder_final_norm", "min_params_to_wrap", "export", "offload_activations",
    "checkpoint_activations", "relu_dropout",
)
# Encoder options the plugin does not implement: a non-default value is an error, not a silent no-op.
UNSUPPORTED = {"adaptive_input": False, "char_inputs": False}


@dataclass
class TextDecoderConfig(DecoderConfig):
    """Unused by data2vec_text (encoder only); kept so saved reference configs merge. No interpolation (B7)."""

    input_dim: int = field(default=512, metadata={"help": "unused decoder input dim (reference compatibility)"})
    output_dim: int = field(default=512, metadata={"help": "unused decoder output dim (reference compatibility)"})


@dataclass
class TextTransformerConfig(TransformerConfig):
    """fairseq ``TransformerConfig`` with a non-interpolating decoder node (see module docstring)."""

    encoder: EncDecBaseConfig = field(default_factory=EncDecBaseConfig,
                                      metadata={"help": "encoder size: embed_dim, ffn_embed_dim, layers, "
                                                        "attention_heads, normalize_before, learned_pos, layerdrop"})
    quant_noise: QuantNoiseConfig = field(default_factory=QuantNoiseConfig,
                                          metadata={"help": "quantization noise (unsupported: must stay 0)"})
    decoder: TextDecoderConfig = field(default_factory=TextDecoderConfig,
                                       metadata={"help": "unused decoder settings (reference compatibility)"})


@dataclass
class Data2VecTextConfig(FairseqDataclass):
    """data2vec text model (Baevski et al. 2022, §3/§4.2): RoBERTa-style encoder regressing EMA-teacher layers."""

    max_positions: Optional[int] = field(
        default=None, metadata={"help": "longest input accepted (tokens); None = transformer.max_source_positions. "
                                        "sentence_prediction sets it from task.max_positions"})
    head_layers: int = field(
        default=1, metadata={"help": "regression head depth: 1 = Linear(D,D); 2 = Linear(D,2D)-GELU-Linear(2D,D) "
                                     "(paper base config)"})
    transformer: TextTransformerConfig = field(
        default_factory=TextTransformerConfig,
        metadata={"help": "encoder settings (encoder.embed_dim/layers/attention_heads/ffn_embed_dim, dropout, "
                          "learned_pos, layernorm_embedding, no_scale_embedding, max_source_positions)"})
    load_checkpoint_heads: bool = field(
        default=False, metadata={"help": "when loading a checkpoint, (re-)register its classification heads "
                                         "(else heads absent from this model or of another size are dropped)"})
    loss_beta: float = field(default=0, metadata={"help": "0 = L2 loss; > 0 = smooth-L1 with this beta "
                                                           "(paper text: 4)"})
    loss_scale: Optional[float] = field(
        default=None, metadata={"help": "multiply the loss by this; None or <= 0 = 1/sqrt(embed_dim) (the "
                                        "reference crashes on None, bug B3)"})
    average_top_k_layers: int = field(default=8, metadata={"help": "K: teacher layers averaged into the target "
                                                                    "(paper text: 10)"})
    layer_norm_target_layer: bool = field(
        default=False, metadata={"help": "layer-norm (over channels) each teacher layer before averaging "
                                         "(paper text)"})
    instance_norm_target_layer: bool = field(
        default=False, metadata={"help": "instance-norm each teacher layer per channel over the (unpadded) time "
                                         "axis before averaging"})
    batch_norm_target_layer: bool = field(
        default=False, metadata={"help": "batch-norm (batch statistics, no running stats) each teacher layer"})
    instance_norm_targets: bool = field(default=False, metadata={"help": "instance-norm the averaged target"})
    layer_norm_targets: bool = field(default=False, metadata={"help": "layer-norm the averaged target"})
    ema_decay: float = field(default=0.999, metadata={"help": "initial EMA decay tau_0"})
    ema_end_decay: float = field(default=0.9999, metadata={"help": "final EMA decay tau_e"})
    ema_anneal_end_step: int = field(
        default=II("optimization.max_update"),
        metadata={"help": "updates over which tau goes linearly from ema_decay to ema_end_decay"})
    ema_transformer_layers_only: bool = field(
        default=True, metadata={"help": "average only the transformer layers (and a pre-LN final norm); token/"
                                        "position embeddings and the embedding LayerNorm are copied from the "
                                        "student every step. False: average everything"})
    regress_positions: REGRESS_POSITIONS = field(
        default="selected", metadata={"help": "positions regressed: 'selected' = every position the masking chose "
                                              "(<mask>, random and unchanged; paper/RoBERTa), 'mask_token' = only "
                                              "positions holding <mask> in the input (reference, bug B5)"})
    min_target_var: float = field(default=0.1, metadata={"help": "collapse guard threshold on the target std "
                                                                 "(used by the data2vec_regression criterion)"})
    min_pred_var: float = field(default=0.01, metadata={"help": "collapse guard threshold on the prediction std"})
