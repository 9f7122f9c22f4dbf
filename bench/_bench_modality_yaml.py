"""Per-modality parts of the fairseq-hydra-train yaml written by ``bench/bench_vs_reference.py``
(task, dataset, optimization, optimizer, lr_scheduler and model sections); the shared head (common, checkpoint,
distributed_training, criterion) is built by ``_bench_configs.make_config``."""
import json


def q(s):
    """A string value for the yaml files (always quoted)."""
    return json.dumps(str(s))


def audio_yaml(s, task_name, data, updates):
    """data2vec_audio: task/optimization/model sections (``s``: the audio entry of ``SIZES[size]``)."""
    conv = f"[({s['conv_dim']}, 10, 5)] + [({s['conv_dim']}, 3, 2)] * 4 + [({s['conv_dim']}, 2, 2)] * 2"
    body = f"""task:
  _name: {task_name}
  data: {q(data)}
  max_sample_size: {s['clip']}
  min_sample_size: {s['clip']}
  normalize: true
dataset:
  num_workers: 0
  batch_size: {s['bsz']}
  required_batch_size_multiple: 1
  skip_invalid_size_inputs_valid_test: true
  disable_validation: true
optimization:
  max_update: {updates}
  lr: [0.0005]
optimizer:
  _name: adam
  adam_betas: "(0.9,0.98)"
  adam_eps: 1e-06
  weight_decay: 0.01
lr_scheduler:
  _name: fixed
  warmup_updates: 5
model:
  _name: data2vec_audio
  extractor_mode: layer_norm
  conv_feature_layers: {q(conv)}
  encoder_layers: {s['layers']}
  encoder_embed_dim: {s['dim']}
  encoder_ffn_embed_dim: {s['ffn']}
  encoder_attention_heads: {s['heads']}
  conv_pos: 95
  conv_pos_groups: 16
  pos_conv_depth: 5
  dropout: 0.0
  attention_dropout: 0.0
  activation_dropout: 0.0
  encoder_layerdrop: 0.0
  dropout_input: 0.0
  dropout_features: 0.0
  feature_grad_mult: 1.0
  mask_prob: 0.65
  mask_length: 10
  require_same_masks: true
  mask_dropout: 0.0
  loss_beta: 0
  loss_scale: null
  instance_norm_target_layer: true
  average_top_k_layers: {s['layers'] - 1}
  ema_decay: 0.999
  ema_end_decay: 0.9999
  ema_anneal_end_step: 1000
  ema_transformer_only: true
  ema_layers_only: true
"""
    return body


def text_yaml(s, task_name, data, updates, plugin):
    """data2vec_text: task/optimization/model sections (the reference masked_lm also needs the target tokens)."""
    extra_task = "  include_target_tokens: true\n" if not plugin else ""
    body = f"""task:
  _name: {task_name}
  data: {q(data)}
  sample_break_mode: none
  tokens_per_sample: {s['tokens']}
  mask_prob: 0.15
  leave_unmasked_prob: 0.1
  random_token_prob: 0.1
{extra_task}dataset:
  num_workers: 0
  batch_size: {s['bsz']}
  required_batch_size_multiple: 1
  skip_invalid_size_inputs_valid_test: true
  disable_validation: true
optimization:
  max_update: {updates}
  lr: [0.0002]
  clip_norm: 5.0
optimizer:
  _name: adam
  adam_betas: "(0.9,0.98)"
  adam_eps: 1e-06
  weight_decay: 0.01
lr_scheduler:
  _name: fixed
  warmup_updates: 5
model:
  _name: data2vec_text
  head_layers: 2
  average_top_k_layers: {s['layers'] - 1}
  layer_norm_target_layer: true
  instance_norm_target_layer: false
  loss_beta: 4
  loss_scale: 1
  ema_decay: 0.999
  ema_end_decay: 0.9999
  ema_anneal_end_step: 1000
  ema_transformer_layers_only: true
  transformer:
    dropout: 0.0
    attention_dropout: 0.0
    activation_dropout: 0.0
    layernorm_embedding: true
    activation_fn: gelu
    no_scale_embedding: true
    max_source_positions: {s['tokens']}
    encoder:
      embed_dim: {s['dim']}
      ffn_embed_dim: {s['ffn']}
      layers: {s['layers']}
      attention_heads: {s['heads']}
      learned_pos: true
      normalize_before: false
      layerdrop: 0.0
    decoder:
      input_dim: {s['dim']}
      output_dim: {s['dim']}
"""
    return body


def vision_yaml(s, task_name, data, updates, plugin):
    """data2vec_vision: task/optimization/model sections."""
    body = f"""task:
  _name: {task_name}
  data: {q(data)}
  input_size: {s['image']}
dataset:
  num_workers: 0
  batch_size: {s['bsz']}
  required_batch_size_multiple: 1
  skip_invalid_size_inputs_valid_test: true
  disable_validation: true
optimization:
  max_update: {updates}
  lr: [0.0005]
  clip_norm: 3.0
optimizer:
  _name: adam
  adam_betas: "(0.9,0.999)"
  adam_eps: 1e-08
  weight_decay: 0.05
lr_scheduler:
  _name: fixed
  warmup_updates: 5
model:
  _name: data2vec_vision
  image_size: {s['image']}
  patch_size: {s['patch']}
  depth: {s['layers']}
  embed_dim: {s['dim']}
  num_heads: {s['heads']}
  mlp_ratio: 4
  num_mask_patches: {s['mask']}
  min_mask_patches_per_block: 16
  attention_dropout: 0.0
  drop_path: 0.0
  layer_norm_targets: true
  instance_norm_target_layer: false
  end_of_block_targets: true
  average_top_k_layers: {s['layers'] - 1}
  loss_beta: 2.0
  ema_decay: 0.999
  ema_end_decay: 0.9998
  ema_anneal_end_step: 1000
  ema_transformer_only: true
"""
    if plugin:  # same embedding init as the reference's actual one (see reference_token_init's help)
        body += "  reference_token_init: true\n"
    return body
