"""fairseq adapter: ``data2vec_multi`` (data2vec 2.0), state-dict compatible with the reference (spec §4.4/§4.5).

Student: modality encoder on the kept positions only (B*M rows for ``clone_batch`` M) -> shared blocks ->
conv decoder over the full sequence (mask tokens filled with noise) -> predictions at masked positions.
Teacher: EMA copy (fp32 masters, outside the module tree) run once per sample on the unmasked input; the average
of its top-K block outputs (normalised) is repeated for the M clones. Losses are returned unreduced as in the
reference (``losses`` dict of (N, D) tensors); the ``data2vec2_regression`` criterion (or core ``model``) sums them.
Paper: Baevski et al. 2022 (data2vec 2.0).
"""
import logging
from contextlib import nullcontext
from typing import Optional

import numpy as np
import torch
from fairseq.models import BaseFairseqModel, register_model
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import nn

from ..modules.losses import feature_std
from ..modules.targets import build_targets
from ..modules.teacher_holder import TeacherHolderMixin
from ..modules.v2_blocks import AlibiCache, run_blocks
from ..modules.v2_encoders import patchify
from ..modules.v2_modality import gather_rows
from ._v2_config import MODALITIES, Data2VecMultiConfig
from ._v2_encoders import block_factory, build_encoder, make_decoder, reset_encoder
from ._v2_masking import V2MaskingMixin, mask_kind  # noqa: F401  (mask_kind: public helper)
from ._v2_parts import TeacherView, d2v_loss, param_norm, tag_parameters, target_norms, xavier_init

logger = logging.getLogger(__name__)


@register_model("data2vec_multi", dataclass=Data2VecMultiConfig)
class Data2VecMultiModel(V2MaskingMixin, TeacherHolderMixin, BaseFairseqModel):
    def __init__(self, cfg: Data2VecMultiConfig, modalities, task=None, skip_ema: bool = False):
        super().__init__()
        self.cfg = cfg
        self.modalities = [str(m) for m in modalities]
        make_block = block_factory(cfg)
        self.alibi_cache = AlibiCache()
        self.modality_encoders = nn.ModuleDict(
            {m: build_encoder(m, cfg, make_block, self.alibi_cache, task) for m in self.modalities})
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        dpr = np.linspace(cfg.start_drop_path_rate, cfg.end_drop_path_rate, cfg.depth)
        self.blocks = nn.ModuleList(make_block(dpr[i]) for i in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine) \
            if cfg.layer_norm_first else None
        self.apply(xavier_init if cfg.mae_init else init_bert_params)
        for name, enc in self.modality_encoders.items():
            reset_encoder(name, enc)
        self.shared_decoder = None if skip_ema else make_decoder(cfg.shared_decoder, cfg.embed_dim)
        if self.shared_decoder is not None:
            self.shared_decoder.apply(xavier_init)
        self.recon_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim) if cfg.recon_loss > 0 and not skip_ema else None
        tag_parameters(self, cfg.decoder_group)
        self.num_updates = 0
        self.target_layer_norm, self.target_final_norm = target_norms(cfg)
        if cfg.average_top_k_layers > cfg.depth:
            raise ValueError(f"average_top_k_layers={cfg.average_top_k_layers} > depth={cfg.depth}")
        if not skip_ema:
            self.init_teacher("_ema_student", (), cfg.ema_decay, cfg.ema_end_decay, cfg.ema_anneal_end_step)

    @property
    def _ema_student(self) -> nn.Module:
        """The student part the teacher mirrors: the shared blocks, or blocks + modality encoders."""
        if self.cfg.ema_encoder_only:
            return self.blocks
        view = self.__dict__.get("_teacher_view")
        if view is None:
            view = TeacherView(self)
            object.__setattr__(self, "_teacher_view", view)
        return view

    @classmethod
    def build_model(cls, cfg: Data2VecMultiConfig, task=None):
        mods = getattr(task, "supported_modalities", None)
        if mods is None:
            mods = [cfg.supported_modality] if cfg.supported_modality is not None else MODALITIES
        return cls(cfg, [getattr(m, "name", m) for m in mods], task=task, skip_ema=cfg.skip_ema)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.observe_num_updates(num_updates)
        self.num_updates = num_updates

    def upgrade_state_dict_named(self, state_dict, name):
        for key in [k for k in state_dict if k.endswith("alibi_scale") and state_dict[k].dim() == 4]:
            state_dict[key] = state_dict[key].unsqueeze(0)  # older checkpoints: (1, H, 1, 1)
        return super().upgrade_state_dict_named(state_dict, name)

    # -------------------------------------------------------------------------------------------- named steps
    def _mode(self, mode) -> str:
        mode = getattr(mode, "name", mode) or self.cfg.supported_modality or \
            (self.modalities[0] if len(self.modalities) == 1 else None)
        if mode is None:
            raise ValueError("data2vec_multi with several modalities needs forward(mode=...)")
        return str(mode)

    def run_student(self, student, collect: bool):
        x = self.dropout_input(student.x)
        x, layer_results = run_blocks(self.blocks, x, student.padding_mask, student.alibi, student.alibi_scale,
                                      self.cfg.layerdrop, collect)
        return (x if self.norm is None else self.norm(x)), layer_results

    def decode(self, enc, x, info):
        """Decoder predictions at the masked positions, one (N, D) tensor per decoder."""
        preds = [enc.decode_masked(dec, x, info) for dec in (self.shared_decoder, enc.decoder) if dec is not None]
        if not preds:
            raise ValueError("data2vec_multi pretraining needs a decoder (modality decoder or shared_decoder)")
        return preds

    @torch.no_grad()
    def teacher_targets(self, enc, mode, source, target, padding_mask, student) -> torch.Tensor:
        """Teacher (once per sample, unmasked) -> normalised average of its top-K block outputs (B, T, D) fp32."""
        tm = self.teacher.module
        x = student.local_features
        dtype = x.dtype if self.cfg.ema_same_dtype else torch.float32
        cast = torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        with cast:
            if self.cfg.ema_encoder_only:
                inp, blocks = enc.contextualized_features(x, padding_mask, None, False), tm
            elif getattr(self.cfg.modalities, mode.lower()).ema_local_encoder:
                src = target if target is not None else source
                src = src.float() if src.is_floating_point() else src
                inp, blocks = tm.modality_encoders[mode](src, padding_mask, None, False), tm.blocks
            else:
                inp = tm.modality_encoders[mode].contextualized_features(x.float(), padding_mask, None, False)
                blocks = tm.blocks
            _, outs = run_blocks(blocks, inp.x, inp.padding_mask, inp.alibi, inp.alibi_scale, 0.0, True)
        e = enc.opts.num_extra_tokens
        return build_targets([o[:, e:] for o in outs], self.cfg.average_top_k_layers, self.target_layer_norm,
                             self.target_final_norm)

    def losses(self, enc, mode, source, x, preds, y, info, valid=None, num_valid=None):
        """Unreduced losses (reference names) and logs; ``valid`` (N,) weighs out masked padding positions."""
        c, m = self.cfg, max(self.cfg.clone_batch, 1)
        y_rep = y.repeat_interleave(m, 0) if m > 1 else y
        y_masked = gather_rows(y_rep, info.ids_masked).reshape(-1, y.size(-1))
        sample_size = info.ids_masked.numel() if valid is None else (
            int(num_valid) if num_valid is not None else int(valid.sum()))
        out = {"losses": {}, "sample_size": sample_size}
        if c.cls_loss > 0:
            e = enc.opts.num_extra_tokens
            if e == 0:
                raise ValueError("cls_loss > 0 needs num_extra_tokens > 0")
            cls_target = y.mean(dim=1)
            cls_target = cls_target.repeat_interleave(m, 0) if m > 1 else cls_target
            out["losses"]["cls"] = d2v_loss(x[:, e - 1], cls_target, c.loss_beta, c.loss_scale) * (
                c.cls_loss * sample_size)
        if c.recon_loss > 0:
            out["losses"]["recon"] = self.recon_loss(mode, source, preds[0], info, m)
        if c.d2v_loss > 0:
            for i, p in enumerate(preds):
                name = f"{mode}_regression_{i}" if len(preds) > 1 else f"{mode}_regression"
                loss = d2v_loss(p, y_masked, c.loss_beta, c.loss_scale) * c.d2v_loss
                out["losses"][name] = loss if valid is None else loss * valid[:, None]
        self.add_logs(out, mode, preds, y_masked, info, valid)
        return out

    def recon_loss(self, mode, source, pred, info, m):
        if mode != "IMAGE":
            raise ValueError(f"recon_loss (pixel reconstruction) needs the IMAGE modality, got {mode}")
        with torch.no_grad():
            patch = self.cfg.modalities.image.patch_size
            t = patchify(source, patch)
            t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
            t = t.repeat_interleave(m, 0) if m > 1 else t
            t = gather_rows(t, info.ids_masked).reshape(-1, t.size(-1))
        recon = self.recon_proj(pred) if self.recon_proj is not None else pred
        return d2v_loss(recon, t, self.cfg.loss_beta, self.cfg.loss_scale) * self.cfg.recon_loss

    @torch.no_grad()
    def add_logs(self, out, mode, preds, y_masked, info, valid=None):
        suffix = "" if len(self.modalities) == 1 else f"_{mode}"
        out["masked_pct"] = 1.0 - info.ids_keep.size(1) / info.ids_restore.size(1)
        for i, p in enumerate(preds):
            out[f"pred_var{suffix}_{i}" if len(preds) > 1 else f"pred_var{suffix}"] = feature_std(p, valid)
        out[f"target_var{suffix}"] = feature_std(y_masked, valid)
        if self.cfg.log_norms and self.training:
            out["model_norm"] = param_norm(list(self._ema_student.parameters()))
            out["ema_norm"] = param_norm(list(self.teacher.module.parameters()))
        out["ema_decay"] = self.ema_decay_at(self.num_updates) * 1000

    def forward(self, source, target=None, id=None, mode=None, padding_mask=None, mask=True, features_only=False,
                force_remove_masked=False, remove_extra_tokens=True, precomputed_mask=None,
                num_masked: Optional[int] = None, num_valid_masked: Optional[int] = None, channel_mask=None):
        mode = self._mode(mode)
        enc = self.modality_encoders[mode]
        clones = 1 if features_only else max(self.cfg.clone_batch, 1)
        local = enc.local_features(source)
        info = self.mask_info(mode, enc, local, padding_mask, mask, id, clones, precomputed_mask, num_masked)
        channels = None if info is None else self.channel_mask(mode, local, id, clones, channel_mask)
        student = enc.contextualized_features(local, padding_mask, info, not features_only or force_remove_masked,
                                              clones, channels)
        x, layer_results = self.run_student(student, collect=features_only)
        if features_only:
            return self.features(enc, x, student, layer_results, remove_extra_tokens)
        if info is None or self.teacher is None:
            raise ValueError("data2vec_multi pretraining forward needs mask=True and a teacher (skip_ema=False)")
        preds = self.decode(enc, x, info)
        y = self.teacher_targets(enc, mode, source, target, padding_mask, student)
        valid = self.masked_valid(mode, enc, local, padding_mask, info, clones)
        return self.losses(enc, mode, source, x, preds, y, info, valid, num_valid_masked)

    @staticmethod
    def features(enc, x, student, layer_results, remove_extra_tokens: bool):
        pm = student.padding_mask
        if remove_extra_tokens:
            e = enc.opts.num_extra_tokens
            x = x[:, e:]
            pm = None if pm is None else pm[:, e:]
        return {"x": x, "padding_mask": pm, "layer_results": layer_results, "mask": student.mask_info}

    def extract_features(self, source, mode=None, padding_mask=None, mask=False, remove_extra_tokens=True):
        return self.forward(source, mode=mode, padding_mask=padding_mask, mask=mask, features_only=True,
                            remove_extra_tokens=remove_extra_tokens)

    @property
    def encoder_embed_dim(self) -> int:
        return self.cfg.embed_dim

    def remove_pretraining_modules(self, modality=None, keep_decoder=False):
        """Drop teacher, clones and (unless ``keep_decoder``) decoders; keep only ``modality`` if given."""
        self.drop_teacher()
        self.cfg.clone_batch = 1
        self.recon_proj = None
        if not keep_decoder:
            self.shared_decoder = None
        for k in list(self.modality_encoders.keys()):
            if modality is not None and k.lower() != str(modality).lower():
                del self.modality_encoders[k]
            elif not keep_decoder:
                self.modality_encoders[k].remove_pretraining_modules()
        self.modalities = list(self.modality_encoders.keys())
