"""Export a data2vec v1 checkpoint as a Hugging Face ``transformers`` model directory (config.json +
model.safetensors): ``data2vec_audio`` -> ``Data2VecAudioModel``, ``data2vec_text`` -> ``Data2VecTextModel``,
``data2vec_vision`` -> ``Data2VecVisionModel``. Only the student encoder is exported (no teacher / heads).

Layouts (HF modules: wav2vec 2.0 with layer-normed conv stack and multi-layer positional conv; RoBERTa; BEiT):
* audio needs ``extractor_mode=layer_norm`` and ``pos_conv_depth > 1`` (HF's Data2VecAudio has no group-norm
  extractor and no single weight-normed positional conv) and post-LN layers (``layer_norm_first=False``);
* text needs learned positions, ``layernorm_embedding``, no embedding scale, post-LN (RoBERTa); position ids are
  computed by HF the fairseq way (offset ``padding_idx + 1``); token ids are the fairseq dictionary's;
* vision: BEiT with relative position bias (shared or per block), layer scale -> ``lambda_1/lambda_2``, the final
  norm kept (``use_mean_pooling=False``), so ``last_hidden_state[:, 1:]`` equals the plugin's features.
Everything else raises ``ExportError`` naming the unsupported setting. ``transformers`` is the ``[hf]`` extra.
"""
from pathlib import Path
from typing import Dict, Tuple

import torch


class ExportError(ValueError):
    pass


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise ExportError("d2v-export-hf needs transformers and safetensors: pip install -e .[hf]") from e
    return transformers


def _layers(sd: Dict, prefix: str, pairs, src_fmt: str, dst_fmt: str, n: int, out: Dict) -> None:
    for i in range(n):
        for a, b in pairs:
            for suf in ("weight", "bias"):
                key = f"{prefix}{src_fmt.format(i=i)}{a}.{suf}"
                if key in sd:
                    out[f"{dst_fmt.format(i=i)}{b}.{suf}"] = sd[key]


def audio(model) -> Tuple[object, Dict]:
    T = _require_transformers()
    c = model.cfg
    if c.extractor_mode != "layer_norm" or c.pos_conv_depth <= 1 or c.layer_norm_first:
        raise ExportError(f"data2vec_audio export needs extractor_mode=layer_norm, pos_conv_depth>1 and "
                          f"layer_norm_first=False (HF Data2VecAudio layout); this checkpoint has extractor_mode="
                          f"{c.extractor_mode}, pos_conv_depth={c.pos_conv_depth}, layer_norm_first={c.layer_norm_first}")
    spec = [tuple(s) for s in model.conv_spec]  # (dim, kernel, stride) per conv layer
    k = max(3, c.conv_pos // c.pos_conv_depth)
    cfg = T.Data2VecAudioConfig(
        hidden_size=c.encoder_embed_dim, num_hidden_layers=c.encoder_layers, num_attention_heads=c.encoder_attention_heads,
        intermediate_size=c.encoder_ffn_embed_dim, hidden_act=str(c.activation_fn), conv_dim=[s[0] for s in spec],
        conv_kernel=[s[1] for s in spec], conv_stride=[s[2] for s in spec], conv_bias=bool(c.conv_bias),
        num_conv_pos_embeddings=c.pos_conv_depth, conv_pos_kernel_size=k,
        num_conv_pos_embedding_groups=c.conv_pos_groups, layer_norm_eps=model.encoder.layer_norm.eps,
        hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05, feat_extract_activation="gelu")
    sd, out = model.state_dict(), {"masked_spec_embed": model.state_dict()["mask_emb"]}
    for i in range(len(spec)):
        for a, b in (("0", "conv"), ("2.1", "layer_norm")):
            for suf in ("weight", "bias"):
                if f"feature_extractor.conv_layers.{i}.{a}.{suf}" in sd:
                    out[f"feature_extractor.conv_layers.{i}.{b}.{suf}"] = sd[f"feature_extractor.conv_layers.{i}.{a}.{suf}"]
    for a, b in (("layer_norm", "feature_projection.layer_norm"), ("post_extract_proj", "feature_projection.projection"),
                 ("encoder.layer_norm", "encoder.layer_norm")):
        out[f"{b}.weight"], out[f"{b}.bias"] = sd[f"{a}.weight"], sd[f"{a}.bias"]
    for i in range(c.pos_conv_depth):
        for suf in ("weight", "bias"):
            out[f"encoder.pos_conv_embed.layers.{i}.conv.{suf}"] = sd[f"encoder.pos_conv.{i}.0.{suf}"]
    pairs = [(f"self_attn.{p}_proj", f"attention.{p}_proj") for p in "qkv"] + [
        ("self_attn.out_proj", "attention.out_proj"), ("self_attn_layer_norm", "layer_norm"),
        ("fc1", "feed_forward.intermediate_dense"), ("fc2", "feed_forward.output_dense"),
        ("final_layer_norm", "final_layer_norm")]
    _layers(sd, "", pairs, "encoder.layers.{i}.", "encoder.layers.{i}.", c.encoder_layers, out)
    return T.Data2VecAudioModel(cfg), out


def text(model) -> Tuple[object, Dict]:
    T = _require_transformers()
    t, enc = model.cfg.transformer, model.encoder.sentence_encoder
    bad = [n for n, v in (("learned positions", t.encoder.learned_pos or enc.embed_positions is not None),
                          ("layernorm_embedding", t.layernorm_embedding), ("no_scale_embedding", t.no_scale_embedding),
                          ("post-LN (encoder.normalize_before=False)", not t.encoder.normalize_before)) if not v]
    if bad or not isinstance(getattr(enc.embed_positions, "weight", None), torch.Tensor):
        raise ExportError(f"data2vec_text export needs the RoBERTa layout; this checkpoint lacks: {bad or ['learned positions']}")
    d = model.encoder.dictionary
    sd = {k[len("encoder.sentence_encoder."):]: v for k, v in model.state_dict().items()
          if k.startswith("encoder.sentence_encoder.")}
    dim = t.encoder.embed_dim
    cfg = T.Data2VecTextConfig(
        vocab_size=len(d), hidden_size=dim, num_hidden_layers=t.encoder.layers, num_attention_heads=t.encoder.attention_heads,
        intermediate_size=t.encoder.ffn_embed_dim, hidden_act=str(t.activation_fn),
        max_position_embeddings=sd["embed_positions.weight"].size(0), type_vocab_size=1, pad_token_id=d.pad(),
        bos_token_id=d.bos(), eos_token_id=d.eos(), layer_norm_eps=enc.layernorm_embedding.eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    out = {"embeddings.word_embeddings.weight": sd["embed_tokens.weight"],
           "embeddings.position_embeddings.weight": sd["embed_positions.weight"],
           "embeddings.token_type_embeddings.weight": torch.zeros(1, dim),
           "embeddings.LayerNorm.weight": sd["layernorm_embedding.weight"],
           "embeddings.LayerNorm.bias": sd["layernorm_embedding.bias"]}
    pairs = [("self_attn.q_proj", "attention.self.query"), ("self_attn.k_proj", "attention.self.key"),
             ("self_attn.v_proj", "attention.self.value"), ("self_attn.out_proj", "attention.output.dense"),
             ("self_attn_layer_norm", "attention.output.LayerNorm"), ("fc1", "intermediate.dense"),
             ("fc2", "output.dense"), ("final_layer_norm", "output.LayerNorm")]
    _layers(sd, "", pairs, "layers.{i}.", "encoder.layer.{i}.", t.encoder.layers, out)
    return T.Data2VecTextModel(cfg, add_pooling_layer=False), out


def vision(model) -> Tuple[object, Dict]:
    T = _require_transformers()
    c, sd = model.cfg, model.state_dict()
    if not c.ema_transformer_only and "encoder.rel_pos_bias.relative_position_bias_table" not in sd \
            and not c.shared_rel_pos_bias and "encoder.blocks.0.attn.relative_position_bias_table" not in sd:
        raise ExportError("data2vec_vision export needs relative position bias tables")
    d = c.embed_dim
    cfg = T.Data2VecVisionConfig(
        hidden_size=d, num_hidden_layers=c.depth, num_attention_heads=c.num_heads, intermediate_size=4 * d,
        image_size=c.image_size, patch_size=c.patch_size, num_channels=c.in_channels, hidden_act="gelu",
        layer_scale_init_value=c.layer_scale_init_value, use_shared_relative_position_bias=c.shared_rel_pos_bias,
        use_relative_position_bias=not c.shared_rel_pos_bias, use_absolute_position_embeddings=False,
        use_mask_token=True, use_mean_pooling=False, layer_norm_eps=model.encoder.norm.eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
    out = {"embeddings.cls_token": sd["cls_emb"], "embeddings.mask_token": sd["mask_emb"],
           "embeddings.patch_embeddings.projection.weight": sd["patch_embed.conv.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.conv.bias"],
           "layernorm.weight": sd["encoder.norm.weight"], "layernorm.bias": sd["encoder.norm.bias"]}
    if c.shared_rel_pos_bias:
        out["encoder.relative_position_bias.relative_position_bias_table"] = \
            sd["encoder.rel_pos_bias.relative_position_bias_table"]
    for i in range(c.depth):
        p, q = f"encoder.blocks.{i}.", f"encoder.layer.{i}."
        qw, kw, vw = sd[p + "attn.qkv.weight"].chunk(3)
        out.update({q + "attention.attention.query.weight": qw, q + "attention.attention.query.bias": sd[p + "attn.q_bias"],
                    q + "attention.attention.key.weight": kw, q + "attention.attention.value.weight": vw,
                    q + "attention.attention.value.bias": sd[p + "attn.v_bias"]})
        if p + "gamma_1" in sd:
            out[q + "lambda_1"], out[q + "lambda_2"] = sd[p + "gamma_1"], sd[p + "gamma_2"]
        if p + "attn.relative_position_bias_table" in sd:
            out[q + "attention.attention.relative_position_bias.relative_position_bias_table"] = \
                sd[p + "attn.relative_position_bias_table"]
    pairs = [("attn.proj", "attention.output.dense"), ("mlp.0", "intermediate.dense"), ("mlp.2", "output.dense"),
             ("norm1", "layernorm_before"), ("norm2", "layernorm_after")]
    _layers(sd, "", pairs, "encoder.blocks.{i}.", "encoder.layer.{i}.", c.depth, out)
    return T.Data2VecVisionModel(cfg, add_pooling_layer=False), out


EXPORTERS = {"data2vec_audio": audio, "data2vec_text": text, "data2vec_vision": vision}


def export_hf(ckpt: str, out_dir: str, data: str = None):
    """Load ``ckpt`` with the plugin, build the HF model, copy weights (strict: every HF tensor must be filled),
    save ``out_dir``; return the HF model (eval mode)."""
    from .load import load_pretrained
    enc, _ = load_pretrained(ckpt, data=data)
    if enc.name not in EXPORTERS:
        raise ExportError(f"{ckpt}: model {enc.name!r} has no Hugging Face counterpart (supported: {sorted(EXPORTERS)})")
    hf, state = EXPORTERS[enc.name](enc.model)
    expected = hf.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("relative_position_index")]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise ExportError(f"{ckpt}: weight mapping incomplete: missing {missing[:8]}, unexpected {extra[:8]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ExportError(f"{ckpt}: {k}: shape {tuple(v.shape)} != HF {tuple(expected[k].shape)}")
    hf.load_state_dict({**expected, **{k: v.clone().contiguous() for k, v in state.items()}}, strict=True)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    hf.eval().save_pretrained(out_dir, safe_serialization=True)
    return hf
