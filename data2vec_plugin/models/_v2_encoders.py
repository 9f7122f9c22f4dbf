"""Builds data2vec 2.0 modality encoders from their config (config -> explicit module arguments)."""
import logging
from typing import Callable, Optional

import numpy as np
from torch import nn

from ..modules.audio import ConvFeatureEncoder, parse_conv_spec
from ..modules.v2_blocks import AlibiCache, AltBlock, BlockEncoder
from ..modules.v2_decoders import ConvDecoder
from ..modules.v2_encoders import (AudioModalityEncoder, FixedPositions, TextLocalEncoder, audio_positional_conv,
                                   patch_local_encoder, project_audio_features)
from ..modules.v2_image_encoder import ImageModalityEncoder
from ..modules.v2_modality import EncoderOptions, ModalityEncoder
from ..modules.v2_transformer_decoders import DECODER_HEADS, EncDecTransformerDecoder, TransformerDecoder

logger = logging.getLogger(__name__)


def block_factory(cfg) -> Callable[..., AltBlock]:
    """``make(drop_path, dim=None, heads=None)``: an ``AltBlock`` of the model's settings (width / heads
    overridable, as for the transformer decoder's blocks)."""
    def make(drop_path: float, dim: Optional[int] = None, heads: Optional[int] = None) -> AltBlock:
        return AltBlock(dim or cfg.embed_dim, heads or cfg.num_heads, cfg.mlp_ratio, cfg.encoder_dropout,
                        cfg.attention_dropout, cfg.activation_dropout, cfg.post_mlp_drop, float(drop_path),
                        cfg.norm_eps, cfg.norm_affine, cfg.layer_norm_first, not cfg.end_of_block_targets)
    return make


def validate_modality(mcfg, name: str) -> None:
    """Reject invalid settings and warn about settings without effect instead of silently ignoring them."""
    if not 0.0 <= mcfg.mask_channel_prob < 1.0:
        raise ValueError(f"modalities.{name}.mask_channel_prob must be in [0, 1), got {mcfg.mask_channel_prob}")
    if mcfg.remove_masks:
        logger.warning(f"modalities.{name}.remove_masks has no effect (the reference never reads it either)")
    if mcfg.mask_channel_prob > 0 and name != "audio":
        logger.warning(f"modalities.{name}.mask_channel_prob only affects the encoder input when it is masked in "
                       "full (audio, or features without removing masked positions), as in the reference")
    validate_learned_alibi(mcfg, name)
    if mcfg.alibi_max_pos is not None and not mcfg.learned_alibi:
        logger.warning(f"modalities.{name}.alibi_max_pos is only used with learned_alibi and is ignored")
    if mcfg.mask_channel_length != 64 and mcfg.mask_channel_prob == 0:
        logger.warning(f"modalities.{name}.mask_channel_length has no effect without mask_channel_prob")


def validate_learned_alibi(mcfg, name: str) -> None:
    """``learned_alibi`` needs a table size (``alibi_max_pos``) and only acts on an ALiBi encoder."""
    if not mcfg.learned_alibi:
        return
    if not mcfg.use_alibi_encoder:
        logger.warning(f"modalities.{name}.learned_alibi has no effect without use_alibi_encoder")
    elif mcfg.alibi_max_pos is None or mcfg.alibi_max_pos < 1:
        raise ValueError(f"data2vec_multi: modalities.{name}.learned_alibi=true needs modalities.{name}.alibi_max_pos "
                         f"(size of the learned ALiBi table, >= 1), got {mcfg.alibi_max_pos}")
    elif getattr(mcfg, "alibi_dims", 1) == 2 and round(mcfg.alibi_max_pos ** 0.5) ** 2 != mcfg.alibi_max_pos:
        raise ValueError(f"data2vec_multi: modalities.{name}.alibi_max_pos must be a square number (positions of a "
                         f"patch grid) with alibi_dims=2, got {mcfg.alibi_max_pos}")


def encoder_options(cfg, mcfg, alibi_dims: int = 1, alibi_distance: str = "manhattan") -> EncoderOptions:
    dec = mcfg.decoder
    return EncoderOptions(
        num_extra_tokens=mcfg.num_extra_tokens, init_extra_token_zero=mcfg.init_extra_token_zero,
        mask_noise_std=mcfg.mask_noise_std, encoder_zero_mask=mcfg.encoder_zero_mask,
        keep_masked_pct=mcfg.keep_masked_pct, local_grad_mult=mcfg.local_grad_mult, prenet_depth=mcfg.prenet_depth,
        use_alibi=mcfg.use_alibi_encoder, alibi_heads=mcfg.num_alibi_heads or cfg.num_heads,
        alibi_dims=alibi_dims, alibi_distance=alibi_distance, alibi_scale=mcfg.alibi_scale,
        learned_alibi_scale=mcfg.learned_alibi_scale, alibi_scale_per_head=mcfg.learned_alibi_scale_per_head,
        alibi_scale_per_layer=mcfg.learned_alibi_scale_per_layer, model_depth=mcfg.model_depth or cfg.depth,
        learned_alibi=mcfg.learned_alibi, alibi_max_pos=mcfg.alibi_max_pos,
        decoder_input_dropout=dec.input_dropout if dec is not None else 0.0,
        add_positions_masked=dec is not None and dec.add_positions_masked,
        add_positions_all=dec is not None and dec.add_positions_all)


def context_encoder(cfg, mcfg, make_block, with_norm: bool) -> BlockEncoder:
    dpr = np.linspace(mcfg.start_drop_path_rate, mcfg.end_drop_path_rate, mcfg.prenet_depth)
    norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine) \
        if with_norm and not cfg.layer_norm_first else None
    return BlockEncoder(nn.ModuleList(make_block(dpr[i]) for i in range(mcfg.prenet_depth)), norm,
                        cfg.layer_norm_first, mcfg.prenet_layerdrop, mcfg.prenet_dropout)


def make_decoder(dcfg, dim: int, dims: int = 1, grid=None):
    if dcfg is None:
        return None
    return ConvDecoder(dim, dcfg.decoder_dim, dcfg.decoder_groups, dcfg.decoder_kernel, dcfg.decoder_layers,
                       dcfg.decoder_residual, dcfg.projection_layers, dcfg.projection_ratio, dims, grid)


def make_image_decoder(cfg, mcfg, make_block, grid: int) -> Optional[nn.Module]:
    """Image decoder: conv on the patch grid, or (``transformer_decoder``) a self-attention transformer decoder,
    or (with ``enc_dec_transformer`` too) the encoder-decoder one; all 8-head, as in the reference."""
    dcfg, d = mcfg.decoder, cfg.embed_dim
    if mcfg.enc_dec_transformer and not mcfg.transformer_decoder:
        logger.warning("modalities.image.enc_dec_transformer has no effect without transformer_decoder")
    if dcfg is None or not mcfg.transformer_decoder:
        return make_decoder(dcfg, d, 2, (grid, grid))
    if mcfg.enc_dec_transformer:
        if not mcfg.fixed_positions:
            raise ValueError("modalities.image.enc_dec_transformer needs fixed_positions=true (decoder queries)")
        return EncDecTransformerDecoder(d, dcfg.decoder_dim, dcfg.decoder_layers)
    blocks = nn.ModuleList(make_block(0.0, dcfg.decoder_dim, DECODER_HEADS) for _ in range(dcfg.decoder_layers))
    return TransformerDecoder(d, dcfg.decoder_dim, BlockEncoder(blocks, None, cfg.layer_norm_first, 0.0, 0.0))


def build_audio(cfg, mcfg, make_block, cache: AlibiCache) -> ModalityEncoder:
    spec = parse_conv_spec(mcfg.feature_encoder_spec)
    d = cfg.embed_dim
    enc = AudioModalityEncoder(
        encoder_options(cfg, mcfg), d, ConvFeatureEncoder(spec, mcfg.extractor_mode, conv_bias=False),
        project_audio_features(spec[-1][0], d), None,
        audio_positional_conv(d, mcfg.conv_pos_width, mcfg.conv_pos_groups, mcfg.conv_pos_depth,
                              mcfg.conv_pos_pre_ln),
        context_encoder(cfg, mcfg, make_block, True), make_decoder(mcfg.decoder, d), cache)
    enc.conv_spec = spec
    return enc


def build_image(cfg, mcfg, make_block, cache: AlibiCache) -> ModalityEncoder:
    d = cfg.embed_dim
    grid = mcfg.input_size // mcfg.patch_size
    local = patch_local_encoder(mcfg.input_size, mcfg.patch_size, mcfg.in_chans, mcfg.embed_dim, d)
    fixed = FixedPositions(grid * grid, d) if mcfg.fixed_positions else None
    return ImageModalityEncoder(
        encoder_options(cfg, mcfg, mcfg.alibi_dims, mcfg.alibi_distance), d, local, nn.Identity(), fixed, None,
        context_encoder(cfg, mcfg, make_block, True), make_image_decoder(cfg, mcfg, make_block, grid), cache)


def build_text(cfg, mcfg, make_block, cache: AlibiCache, dictionary) -> ModalityEncoder:
    if dictionary is None:
        raise ValueError("data2vec_multi with the TEXT modality needs a task with a source_dictionary")
    d = cfg.embed_dim
    local = TextLocalEncoder(len(dictionary), d, mcfg.max_source_positions, dictionary.pad(),
                             not mcfg.no_scale_embedding, mcfg.layernorm_embedding, mcfg.dropout,
                             not mcfg.no_token_positional_embeddings, mcfg.learned_pos)
    ctx = context_encoder(cfg, mcfg, make_block, mcfg.prenet_depth > 0)
    if mcfg.prenet_depth == 0:
        ctx.dropout.p = 0.0
    return ModalityEncoder(encoder_options(cfg, mcfg), d, local, nn.Identity(), None, None, ctx,
                           make_decoder(mcfg.decoder, d), cache)


def build_encoder(name: str, cfg, make_block, cache: AlibiCache, task=None) -> ModalityEncoder:
    mcfg = getattr(cfg.modalities, name.lower())
    validate_modality(mcfg, name.lower())
    if name == "AUDIO":
        return build_audio(cfg, mcfg, make_block, cache)
    if name == "IMAGE":
        return build_image(cfg, mcfg, make_block, cache)
    text_task = getattr(task, "text_task", task)
    return build_text(cfg, mcfg, make_block, cache, getattr(text_task, "source_dictionary", None))


def reset_encoder(name: str, enc: ModalityEncoder) -> None:
    """Modality-specific re-initialisation after the model-wide init (reference ``reset_parameters``)."""
    if name == "AUDIO":  # the feature projection keeps PyTorch's default init, as in the reference
        for m in enc.project_features.children():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
    enc.reset_parameters()
