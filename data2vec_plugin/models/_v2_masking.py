"""Masking side of ``data2vec_multi``: what the data pipeline is asked for, the in-model fallback, index tensors.

Masks normally arrive precomputed from the dataloader (``precomputed_mask``, ``num_masked``, optionally
``num_valid_masked`` and ``channel_mask``; see ``data/v2_masking.py``). Without them (direct calls, fine-tuning
tasks) the same seeded functions run here, keyed by (seed, update, sample id, clone).
"""
from typing import Optional

import torch

from ..masking.seeding import sample_rng
from ..masking.v2_masks import channel_masks, clone_masks
from ..modules.v2_modality import gather_rows, make_mask_info


def mask_kind(mode: str, length: int) -> str:
    return "random" if length <= 1 else ("2d" if mode == "IMAGE" else "1d")


class V2MaskingMixin:
    """Needs ``self.cfg`` (Data2VecMultiConfig), ``self.num_updates``, ``self.modality_encoders``, ``_mode``."""

    def data_mask_spec(self):
        """Masking request for the task's data pipeline (masks are precomputed in dataloader workers)."""
        from ..data.v2_masking import V2MaskSpec
        mode = self._mode(None)
        m = getattr(self.cfg.modalities, mode.lower())
        return V2MaskSpec(mode, mask_kind(mode, m.mask_length), m.mask_prob, m.mask_length, m.mask_prob_adjust,
                          m.inverse_mask, m.mask_dropout, self.cfg.clone_batch,
                          getattr(self.modality_encoders[mode], "conv_spec", None), getattr(m, "patch_size", None),
                          m.add_masks, m.mask_channel_prob, m.mask_channel_length, self.cfg.embed_dim)

    def _ids(self, ids, b: int):
        if ids is None:  # no sample ids: follow torch's seeded global generator
            return torch.randint(0, 2 ** 31 - 1, (b,)).tolist()
        return ids.tolist()

    def compute_mask(self, mode: str, enc, x, padding_mask, ids, clones: int) -> torch.Tensor:
        """In-model mask (used when the batch has no ``precomputed_mask``), seeded by (seed, update, id)."""
        m = getattr(self.cfg.modalities, mode.lower())
        b, t = x.shape[:2]
        ids = self._ids(ids, b)
        prob = m.mask_prob
        if m.mask_prob_min is not None and 0 <= m.mask_prob_min < prob:
            prob = float(sample_rng(self.cfg.seed, self.num_updates, ids[0], 1 << 20).uniform(m.mask_prob_min, prob))
        pm = enc.convert_padding_mask(x, padding_mask)
        valid = None if pm is None else (~pm).sum(-1).tolist()
        mask = clone_masks(mask_kind(mode, m.mask_length), ids, clones, t, prob, m.mask_length, self.cfg.seed,
                           self.num_updates, m.mask_prob_adjust, m.inverse_mask, m.mask_dropout, valid, m.add_masks)
        return torch.from_numpy(mask).to(x.device)

    def mask_info(self, mode, enc, x, padding_mask, mask, ids, clones, precomputed_mask, num_masked):
        if not mask:
            return None
        if precomputed_mask is None:
            precomputed_mask, num_masked = self.compute_mask(mode, enc, x, padding_mask, ids, clones), None
        expected = (x.size(0) * clones, x.size(1))
        if tuple(precomputed_mask.shape) != expected:
            raise ValueError(f"precomputed_mask has shape {tuple(precomputed_mask.shape)}, expected {expected} "
                             "(batch * clone_batch, positions); was the data pipeline built for another model?")
        keep_pct = getattr(self.cfg.modalities, mode.lower()).keep_masked_pct
        return make_mask_info(precomputed_mask.to(x.device), num_masked, keep_pct)

    def channel_mask(self, mode: str, x, ids, clones: int, channel_mask: Optional[torch.Tensor]):
        """(B * clones, D) bool channel mask of the student (``mask_channel_prob``), or None when off."""
        m = getattr(self.cfg.modalities, mode.lower())
        if m.mask_channel_prob <= 0:
            return None
        if channel_mask is None:
            ids = self._ids(ids, x.size(0))
            channel_mask = torch.from_numpy(channel_masks(ids, clones, x.size(-1), m.mask_channel_prob,
                                                          m.mask_channel_length, self.cfg.seed, self.num_updates))
        expected = (x.size(0) * clones, x.size(-1))
        if tuple(channel_mask.shape) != expected:
            raise ValueError(f"channel_mask has shape {tuple(channel_mask.shape)}, expected {expected} "
                             "(batch * clone_batch, embed_dim)")
        return channel_mask.to(x.device)

    def masked_valid(self, mode: str, enc, x, padding_mask, info, clones: int) -> Optional[torch.Tensor]:
        """(N,) float weight of the masked positions (1 = real frame/token, 0 = padding), or None when masks
        cannot cover padding (no padding, or neither ``inverse_mask`` nor ``add_masks``)."""
        m = getattr(self.cfg.modalities, mode.lower())
        pm = enc.convert_padding_mask(x, padding_mask)
        if pm is None or not (m.inverse_mask or m.add_masks):
            return None
        pm = pm.repeat_interleave(clones, 0) if clones > 1 else pm
        return (~gather_rows(pm, info.ids_masked)).reshape(-1).float()
