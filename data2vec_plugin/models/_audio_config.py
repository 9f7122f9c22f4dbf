"""Data2VecAudioConfig: every field of the reference config (same names and defaults), documented."""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
from omegaconf import II

# wav2vec 2.0 fields that only matter for its contrastive/quantised objective. data2vec accepts them so reference
# checkpoints and yamls load, and warns when one is set to a non-default value (it would have no effect).
WAV2VEC2_ONLY_FIELDS = (
    "final_dim", "logit_temp", "quantize_targets", "quantize_input", "same_quantizer", "target_glu",
    "quantizer_depth", "quantizer_factor", "latent_vars", "latent_groups", "latent_dim", "num_negatives",
    "negatives_from_everywhere", "cross_sample_negatives", "codebook_negatives", "latent_temp",
    "depthwise_conv_kernel_size", "attn_type", "pos_enc_type", "fp16", "adp_num", "adp_dim", "adp_act_fn",
    "adp_trf_idx", "checkpoint_activations", "max_positions", "required_seq_len_multiple", "crop_seq_to_multiple",
)


@dataclass
class Data2VecAudioConfig(Wav2Vec2Config):
    """data2vec speech model (Baevski et al. 2022). Inherits the wav2vec 2.0 encoder/masking fields."""

    loss_beta: float = field(default=0, metadata={"help": "0 = L2 loss; > 0 = smooth-L1 with this beta"})
    loss_scale: Optional[float] = field(
        default=None, metadata={"help": "multiply the loss by this; None or <= 0 = 1/sqrt(encoder_embed_dim)"})
    average_top_k_layers: int = field(default=8, metadata={"help": "K: teacher layers averaged into the target"})
    layer_norm_target_layer: bool = field(
        default=False, metadata={"help": "layer-norm (over channels) each teacher layer before averaging"})
    instance_norm_target_layer: bool = field(
        default=False, metadata={"help": "instance-norm (per channel over time) each teacher layer (paper)"})
    instance_norm_targets: bool = field(
        default=False, metadata={"help": "instance-norm the averaged target (per sample, over time)"})
    layer_norm_targets: bool = field(default=False, metadata={"help": "layer-norm the averaged target"})
    batch_norm_target_layer: bool = field(
        default=False, metadata={"help": "batch-norm (batch statistics, no running stats) each teacher layer"})
    group_norm_target_layer: bool = field(
        default=False, metadata={"help": "normalise each teacher layer over time and channels per sample"})
    ema_decay: float = field(default=0.999, metadata={"help": "initial EMA decay tau_0"})
    ema_end_decay: float = field(default=0.9999, metadata={"help": "final EMA decay tau_e"})
    ema_anneal_end_step: int = field(
        default=II("optimization.max_update"),
        metadata={"help": "updates over which tau goes linearly from ema_decay to ema_end_decay (tau_n)"})
    ema_transformer_only: bool = field(
        default=True, metadata={"help": "teacher = EMA of the transformer encoder only; it consumes the student's "
                                        "unmasked CNN features. False: EMA of the whole model on raw audio"})
    ema_layers_only: bool = field(
        default=True, metadata={"help": "copy (do not average) the positional convolution into the teacher; "
                                        "implies ema_transformer_only"})
    target_norm_ignores_padding: bool = field(
        default=True, metadata={"help": "exclude padded frames from the statistics of instance-normalised targets "
                                        "(plugin fix); false reproduces the reference, whose statistics include "
                                        "the zeroed padding"})
    max_update: int = field(default=II("optimization.max_update"),
                            metadata={"help": "total updates (read from optimization.max_update)"})
    min_target_var: float = field(
        default=0.1, metadata={"help": "collapse guard: target std below this is reported (criterion's guard)"})
    min_pred_var: float = field(
        default=0.01, metadata={"help": "collapse guard: prediction std below this is reported"})
