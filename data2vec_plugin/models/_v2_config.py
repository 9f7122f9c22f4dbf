"""Config dataclasses of ``data2vec_multi`` (data2vec 2.0): every field of the reference ``Data2VecMultiConfig``
(spec §3.4) with the same names and defaults, nested configs via ``default_factory``. Two interpolations of the
reference that point inside ``model`` (``num_alibi_heads``, ``model_depth``) are Optional here (None = the
model's value), so configs build from plain dicts too."""
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

MODALITIES = ["AUDIO", "IMAGE", "TEXT"]
ModalityChoice = ChoiceEnum(MODALITIES)


def f(default, help: str, **kw):
    if isinstance(default, type):
        return field(default_factory=default, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class D2vDecoderConfig:
    decoder_dim: int = f(384, "width of the convolutional decoder (channels)")
    decoder_groups: int = f(16, "conv groups of every decoder block (decoder_dim and input width must divide)")
    decoder_kernel: int = f(5, "conv kernel size (1-D length or 2-D side on the patch grid)")
    decoder_layers: int = f(5, "number of conv blocks")
    input_dropout: float = f(0.1, "dropout on the encoder output before decoding (0-1)")
    add_positions_masked: bool = f(False, "add fixed positions to mask tokens (image only)")
    add_positions_all: bool = f(False, "add fixed positions to every decoder input (image only)")
    decoder_residual: bool = f(True, "residual connections between decoder blocks of equal width")
    projection_layers: int = f(1, "layers of the output projection (>1: MLP with GELU)")
    projection_ratio: float = f(2.0, "expansion of the first projection layer when projection_layers > 1")


@dataclass
class D2vModalityConfig:
    type: ModalityChoice = f("AUDIO", "modality of this encoder (set by the sub-config)")
    prenet_depth: int = f(4, "modality-specific transformer blocks before the shared blocks")
    prenet_layerdrop: float = f(0.0, "probability of skipping a prenet block in training")
    prenet_dropout: float = f(0.0, "dropout on the prenet input")
    start_drop_path_rate: float = f(0.0, "prenet stochastic depth at the first block (linear to end_...)")
    end_drop_path_rate: float = f(0.0, "prenet stochastic depth at the last block")
    num_extra_tokens: int = f(0, "learned tokens prepended to the sequence (e.g. 1 = CLS for images)")
    init_extra_token_zero: bool = f(True, "initialise the first extra token at zero (else N(0,1))")
    mask_noise_std: float = f(0.01, "std of the noise tokens that fill masked positions in the decoder "
                                    "(and in the encoder when encoder_zero_mask is false)")
    mask_prob_min: Optional[float] = f(None, "if set (< mask_prob): mask ratio drawn per batch from "
                                             "U(mask_prob_min, mask_prob) for in-model masks")
    mask_prob: float = f(0.7, "fraction of positions masked (R)")
    inverse_mask: bool = f(False, "choose the blocks to KEEP (ratio 1 - mask_prob) and mask the rest (images); "
                                  "padding is then always masked and left out of the loss")
    mask_prob_adjust: float = f(0.0, "extra block-centre density (A): blocks overlap, so R + A centres give ~R")
    keep_masked_pct: float = f(0.0, "fraction of masked positions still fed to the encoder (0-1)")
    mask_length: int = f(5, "block length (1-D span or 2-D block side); 1 = independent random positions")
    add_masks: bool = f(False, "span masks (1-D): equalise the per-row count up to the longest row of the batch "
                               "instead of down to the shortest (short rows spill onto padding, left out of the loss)")
    remove_masks: bool = f(False, "accepted for reference configs; has no effect (the reference never reads it)")
    mask_dropout: float = f(0.0, "extra block centres proportional to this, then trimmed to the exact count")
    encoder_zero_mask: bool = f(True, "zero masked positions before the positional conv (else noise)")
    mask_channel_prob: float = f(0.0, "student channel masking: zero spans of feature channels at this ratio in "
                                      "the fully masked sequence (audio: the positional conv input), per clone")
    mask_channel_length: int = f(64, "channel mask span length; only meaningful with mask_channel_prob > 0")
    ema_local_encoder: bool = f(False, "teacher gets its own EMA'd local encoder and sees the raw input")
    local_grad_mult: float = f(1.0, "gradient multiplier of the local encoder (0 = frozen)")
    use_alibi_encoder: bool = f(False, "ALiBi attention bias (relative positions) for this modality")
    alibi_scale: float = f(1.0, "initial ALiBi scale")
    learned_alibi: bool = f(False, "learn the ALiBi bias: a (1, heads, alibi_max_pos, alibi_max_pos) table "
                                   "initialised from the fixed ALiBi (needs use_alibi_encoder and alibi_max_pos)")
    alibi_max_pos: Optional[int] = f(None, "positions of the learned_alibi table (required with it; square with "
                                           "2-D image ALiBi); longer inputs replicate-pad the table")
    learned_alibi_scale: bool = f(False, "train the ALiBi scale")
    learned_alibi_scale_per_head: bool = f(False, "one ALiBi scale per head")
    learned_alibi_scale_per_layer: bool = f(False, "one ALiBi scale per block (prenet + main)")
    num_alibi_heads: Optional[int] = f(None, "heads that get an ALiBi bias (None = model.num_heads)")
    model_depth: Optional[int] = f(None, "main blocks for per-layer ALiBi scales (None = model.depth)")
    decoder: Optional[D2vDecoderConfig] = f(D2vDecoderConfig, "decoder of this modality (null = none)")


@dataclass
class D2vAudioConfig(D2vModalityConfig):
    type: ModalityChoice = f("AUDIO", "modality of this encoder")
    extractor_mode: ChoiceEnum(["default", "layer_norm"]) = f("layer_norm", "CNN normalisation: GroupNorm on "
                                                                            "layer 0 or LayerNorm everywhere")
    feature_encoder_spec: str = f("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
                                  "CNN layers as [(dim, kernel, stride), ...]; 20 ms frames at 16 kHz by default")
    conv_pos_width: int = f(95, "total width of the convolutional positional encoder")
    conv_pos_groups: int = f(16, "groups of the positional convs")
    conv_pos_depth: int = f(5, "number of positional conv layers (kernel = max(3, width // depth))")
    conv_pos_pre_ln: bool = f(False, "LayerNorm before the positional convs")


@dataclass
class D2vImageConfig(D2vModalityConfig):
    type: ModalityChoice = f("IMAGE", "modality of this encoder")
    input_size: int = f(224, "image side in pixels")
    in_chans: int = f(3, "image channels")
    patch_size: int = f(16, "patch side in pixels")
    embed_dim: int = f(768, "patch embedding width (a Linear maps it to model.embed_dim if different)")
    alibi_dims: int = f(2, "ALiBi distance on the patch grid (2) or the flattened sequence (1)")
    alibi_distance: ChoiceEnum(["manhattan", "euclidean"]) = f("manhattan", "2-D ALiBi distance")
    fixed_positions: bool = f(True, "add fixed 2-D sin-cos positions")
    transformer_decoder: bool = f(False, "transformer decoder instead of the conv one: Linear(D, decoder_dim) -> "
                                         "decoder_layers self-attention blocks (8 heads) over the full sequence "
                                         "-> Linear(decoder_dim, D)")
    enc_dec_transformer: bool = f(False, "with transformer_decoder: cross-attention decoder whose queries are the "
                                         "fixed positions of the masked patches and keys/values the encoder output "
                                         "of the kept ones (+ positions if decoder.add_positions_all)")


@dataclass
class D2vTextConfig(D2vModalityConfig):
    type: ModalityChoice = f("TEXT", "modality of this encoder")
    max_source_positions: int = f(512, "longest token sequence (learned position table size)")
    learned_pos: bool = f(True, "learned (true) or sinusoidal positions")
    dropout: float = f(0.1, "dropout after the token embedding")
    no_scale_embedding: bool = f(True, "do not scale token embeddings by sqrt(dim)")
    layernorm_embedding: bool = f(True, "LayerNorm after the embeddings")
    no_token_positional_embeddings: bool = f(False, "disable positional embeddings")


@dataclass
class D2vModalitiesConfig(FairseqDataclass):
    audio: D2vAudioConfig = f(D2vAudioConfig, "audio encoder settings")
    image: D2vImageConfig = f(D2vImageConfig, "image encoder settings")
    text: D2vTextConfig = f(D2vTextConfig, "text encoder settings")


@dataclass
class Data2VecMultiConfig(FairseqDataclass):
    loss_beta: float = f(0.0, "smooth-L1 beta; 0 = L2 loss")
    loss_scale: Optional[float] = f(None, "loss scale; None = 1/sqrt(embed_dim)")
    depth: int = f(8, "shared transformer blocks")
    start_drop_path_rate: float = f(0.0, "stochastic depth of the first block (linear to end_drop_path_rate)")
    end_drop_path_rate: float = f(0.0, "stochastic depth of the last block")
    num_heads: int = f(12, "attention heads")
    norm_eps: float = f(1e-6, "LayerNorm epsilon of the blocks")
    norm_affine: bool = f(True, "LayerNorms of the blocks have weight and bias")
    encoder_dropout: float = f(0.1, "dropout after attention projection")
    post_mlp_drop: float = f(0.1, "dropout on the FFN output before the residual")
    attention_dropout: float = f(0.1, "dropout on attention weights")
    activation_dropout: float = f(0.0, "dropout inside the FFN (after GELU and after fc2)")
    dropout_input: float = f(0.0, "dropout on the prenet output before the shared blocks")
    layerdrop: float = f(0.0, "probability of skipping a shared block in training")
    embed_dim: int = f(768, "model width")
    mlp_ratio: float = f(4.0, "FFN width / embed_dim")
    layer_norm_first: bool = f(False, "pre-LN blocks (+ final norm); the paper uses post-LN")
    average_top_k_layers: int = f(8, "teacher blocks averaged into the target (K)")
    end_of_block_targets: bool = f(False, "targets = block outputs (true) or FFN outputs before the residual")
    clone_batch: int = f(1, "student copies per sample with different masks (M); teacher runs once")
    layer_norm_target_layer: bool = f(False, "LayerNorm each teacher layer output")
    batch_norm_target_layer: bool = f(False, "batch-norm (batch statistics) each teacher layer output")
    instance_norm_target_layer: bool = f(False, "instance-norm each teacher layer output over time")
    instance_norm_targets: bool = f(False, "instance-norm the averaged target")
    layer_norm_targets: bool = f(False, "LayerNorm the averaged target")
    ema_decay: float = f(0.999, "initial teacher EMA decay")
    ema_same_dtype: bool = f(True, "teacher forward in the student's dtype (autocast from fp32 masters)")
    log_norms: bool = f(True, "log student and teacher parameter L2 norms (model_norm, ema_norm)")
    ema_end_decay: float = f(0.9999, "final teacher EMA decay")
    ema_anneal_end_step: int = f(II("optimization.max_update"), "update at which the decay reaches the end value")
    ema_encoder_only: bool = f(True, "EMA only the shared blocks; the teacher uses the student's modality encoder")
    max_update: int = f(II("optimization.max_update"), "training length (informational, as in the reference)")
    modalities: D2vModalitiesConfig = f(D2vModalitiesConfig, "per-modality settings")
    shared_decoder: Optional[D2vDecoderConfig] = f(None, "extra 1-D decoder shared by all modalities")
    min_target_var: float = f(0.1, "collapse threshold on the target std (checked by the criterion)")
    min_pred_var: float = f(0.01, "collapse threshold on the prediction std (checked by the criterion)")
    supported_modality: Optional[ModalityChoice] = f(None, "the single modality to build (None = all three)")
    mae_init: bool = f(False, "xavier init of Linear layers instead of BERT init")
    seed: int = f(II("common.seed"), "seed of in-model masks")
    skip_ema: bool = f(False, "build without a teacher (inference / fine-tuning)")
    cls_loss: float = f(0.0, "weight of the CLS loss (last extra token regresses the mean target)")
    recon_loss: float = f(0.0, "weight of an MAE pixel reconstruction loss (images)")
    d2v_loss: float = f(1.0, "weight of the data2vec regression loss")
    decoder_group: bool = f(False, "tag decoder parameters with param_group 'decoder' (composite optimizer)")
