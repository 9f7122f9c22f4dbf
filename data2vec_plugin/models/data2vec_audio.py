"""fairseq adapter: ``data2vec_audio`` (speech data2vec v1), state-dict compatible with the reference."""
import logging
from typing import Optional

import numpy as np
import torch
from fairseq.models import BaseFairseqModel, register_model
from fairseq.modules import GradMultiply
from torch import nn

from ..masking import sample_rng, span_mask
from ..modules.audio import (AudioTransformerEncoder, ConvFeatureEncoder, frame_padding_mask, parse_conv_spec)
from ..modules.targets import build_targets, choose_norm
from ..modules.teacher_holder import TeacherHolderMixin
from ._audio_config import WAV2VEC2_ONLY_FIELDS, Data2VecAudioConfig

logger = logging.getLogger(__name__)


def warn_unused_fields(cfg, names, model_name: str) -> None:
    """Warn about wav2vec 2.0-only fields set away from their defaults (accepted, but without effect here).
    ``cfg`` is usually an OmegaConf node, so values are compared as plain Python (lists as tuples)."""
    default = Data2VecAudioConfig()

    def plain(v):
        return tuple(v) if not isinstance(v, str) and hasattr(v, "__iter__") else v
    changed = [n for n in names if plain(getattr(cfg, n, None)) != plain(getattr(default, n, None))]
    if changed:
        logger.warning(f"{model_name}: fields {changed} only affect wav2vec 2.0 and are ignored by data2vec")


@register_model("data2vec_audio", dataclass=Data2VecAudioConfig)
class Data2VecAudioModel(TeacherHolderMixin, BaseFairseqModel):
    def __init__(self, cfg: Data2VecAudioConfig):
        super().__init__()
        self.cfg = cfg
        self.conv_spec = parse_conv_spec(cfg.conv_feature_layers)
        c, d = self.conv_spec[-1][0], cfg.encoder_embed_dim
        self.feature_extractor = ConvFeatureEncoder(self.conv_spec, cfg.extractor_mode, cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(c)
        self.post_extract_proj = nn.Linear(c, d)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(d).uniform_())
        self.encoder = AudioTransformerEncoder(
            d, cfg.encoder_ffn_embed_dim, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.conv_pos,
            cfg.conv_pos_groups, cfg.pos_conv_depth, cfg.dropout, cfg.attention_dropout, cfg.activation_dropout,
            cfg.activation_fn, cfg.layer_norm_first, cfg.encoder_layerdrop)
        self.final_proj = nn.Linear(d, d)
        self.num_updates = 0
        self.target_layer_norm = choose_norm(cfg.instance_norm_target_layer, cfg.layer_norm_target_layer,
                                             cfg.batch_norm_target_layer, cfg.group_norm_target_layer)
        # the averaged target: layer norm, then instance norm (the reference's order)
        self.target_final_norm = tuple(n for n, on in (("layer", cfg.layer_norm_targets),
                                                       ("instance", cfg.instance_norm_targets)) if on) or "none"
        self.ema_transformer_only = cfg.ema_transformer_only or cfg.ema_layers_only
        warn_unused_fields(cfg, WAV2VEC2_ONLY_FIELDS + ("dropout_features",), "data2vec_audio")
        if str(cfg.layer_type) != "transformer":
            raise ValueError(f"data2vec_audio: model.layer_type={cfg.layer_type} is not supported; only "
                             "'transformer' (the data2vec architecture) is implemented")
        self.init_teacher("encoder" if self.ema_transformer_only else "",
                          ("pos_conv.",) if cfg.ema_layers_only else (),
                          cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step)

    @classmethod
    def build_model(cls, cfg: Data2VecAudioConfig, task=None):
        return cls(cfg)

    @property
    def encoder_embed_dim(self) -> int:
        return self.cfg.encoder_embed_dim

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates
        self.observe_num_updates(num_updates)

    # ------------------------------------------------------------------------------------------------ named steps
    def local_features(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """Waveform (B, S) -> projected CNN features (B, T, D) and the frame padding mask (B, T) or None."""
        if self.cfg.feature_grad_mult > 0:
            feats = self.feature_extractor(source)
            if self.cfg.feature_grad_mult != 1.0:
                feats = GradMultiply.apply(feats, self.cfg.feature_grad_mult)
        else:
            with torch.no_grad():
                feats = self.feature_extractor(source)
        feats = self.layer_norm(feats.transpose(1, 2))
        return self.post_extract_proj(feats), frame_padding_mask(padding_mask, feats.size(1), self.conv_spec)

    def _span(self, b: int, t: int, lengths, prob: float, length: int, selection: str, other: float,
              no_overlap: bool, min_space: int, same: bool, dropout: float, min_masks: int) -> np.ndarray:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # fallback path: follows torch's seeded CPU RNG
        rngs = [sample_rng(seed, self.num_updates, i) for i in range(b)]
        return span_mask(lengths, t, prob, length, rngs, min_masks, selection, other, no_overlap, min_space,
                         same, dropout)

    def compute_mask(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """In-model time mask, used only when the batch carries none (e.g. wav2vec_ctc fine-tuning)."""
        b, t, _ = x.shape
        lengths = [t] * b if padding_mask is None else (~padding_mask).sum(-1).tolist()
        c = self.cfg
        m = self._span(b, t, lengths, c.mask_prob, c.mask_length, c.mask_selection, c.mask_other,
                       c.no_mask_overlap, c.mask_min_space, c.require_same_masks, c.mask_dropout, 1)
        return torch.from_numpy(m).to(x.device)

    def _channel_mask(self, x: torch.Tensor) -> torch.Tensor:
        b, t, ch = x.shape
        c = self.cfg
        m = self._span(b, ch, [ch] * b, c.mask_channel_prob, c.mask_channel_length, c.mask_channel_selection,
                       c.mask_channel_other, c.no_mask_channel_overlap, c.mask_channel_min_space, False, 0.0, 0)
        return torch.from_numpy(m).to(x.device).unsqueeze(1)

    def apply_mask(self, x, padding_mask, mask_indices=None, mask_channel_indices=None):
        """Replace masked frames by ``mask_emb`` and zero masked channels (before/after, as configured)."""
        c = self.cfg
        channel = c.mask_channel_prob > 0
        if channel and mask_channel_indices is None:
            mask_channel_indices = self._channel_mask(x)
        if channel and c.mask_channel_before:
            x = x.masked_fill(mask_channel_indices, 0.0)
        if mask_indices is None and c.mask_prob > 0:
            mask_indices = self.compute_mask(x, padding_mask)
        if mask_indices is not None:
            x = torch.where(mask_indices.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if channel and not c.mask_channel_before:
            x = x.masked_fill(mask_channel_indices, 0.0)
        return x, mask_indices

    @torch.no_grad()
    def teacher_targets(self, source, padding_mask, features, frame_pad) -> torch.Tensor:
        """Average of the teacher's top-K FFN outputs on the unmasked input, normalised (B, T, D) fp32."""
        teacher = self.teacher.module
        k = self.cfg.average_top_k_layers
        with torch.autocast(features.device.type, dtype=features.dtype,
                            enabled=features.dtype != torch.float32):
            if self.ema_transformer_only:
                _, outs = teacher(features, frame_pad, min_layer=len(teacher.layers) - k)
            else:
                outs = teacher(source, padding_mask, mask=False, features_only=True)["layer_results"]
        stats_pad = frame_pad if self.cfg.target_norm_ignores_padding else None
        return build_targets(outs, k, self.target_layer_norm, self.target_final_norm, stats_pad)

    def forward(self, source, padding_mask=None, mask=True, features_only=False, layer=None, mask_indices=None,
                mask_channel_indices=None, padding_count=None):
        features, frame_pad = self.local_features(source, padding_mask)
        x = self.dropout_input(features)
        if mask:
            x, mask_indices = self.apply_mask(x, frame_pad, mask_indices, mask_channel_indices)
        x, layer_results = self.encoder(x, frame_pad, max_layer=None if layer is None else layer + 1)
        if features_only:
            return {"x": x, "padding_mask": frame_pad, "layer_results": layer_results}
        if mask_indices is None:
            raise ValueError("data2vec_audio pretraining forward needs a mask: pass mask=True / mask_indices")
        target = self.teacher_targets(source, padding_mask, features, frame_pad)
        return {"pred": self.final_proj(x), "target": target, "mask": mask_indices,
                "loss_beta": self.cfg.loss_beta, "loss_scale": self.cfg.loss_scale,
                "ema_decay": self.ema_decay_at(self.num_updates)}

    def extract_features(self, source, padding_mask, mask=False, layer=None):
        return self.forward(source, padding_mask, mask=mask, features_only=True, layer=layer)

    def remove_pretraining_modules(self, last_layer=None):
        self.final_proj = None
        self.drop_teacher()
        if last_layer is not None:
            self.encoder.layers = nn.ModuleList(lyr for i, lyr in enumerate(self.encoder.layers) if i <= last_layer)

    def data_mask_spec(self):
        """Masking request handed to the task's data pipeline (masks are computed in dataloader workers)."""
        from ..data.audio_dataset import MaskSpec
        c = self.cfg
        return MaskSpec(self.conv_spec, c.mask_prob, c.mask_length, c.mask_selection, c.mask_other,
                        c.no_mask_overlap, c.mask_min_space, c.require_same_masks, c.mask_dropout, 1)
