"""Raw-audio dataset for data2vec 2.0: the base dataset's crops and validation, plus per-clone masks.

``net_input`` = {source, [padding_mask], precomputed_mask (B * clone_batch, frames), num_masked}. Masks are drawn
on the batch's frame count; with padding, every row masks int(mask_prob * shortest valid length) frames and padded
frames are never masked (with ``inverse_mask``: always masked, and with ``add_masks`` the count follows the longest
row); masked padding is left out of the loss (``num_valid_masked``).
"""
from typing import List

from ..modules.audio import frames_per_sample
from .audio_dataset import RawAudioMaskDataset
from .v2_masking import V2MaskSpec, batch_masks


class RawAudioCloneMaskDataset(RawAudioMaskDataset):
    mask_spec: V2MaskSpec

    def collater(self, samples):
        batch = super().collater(samples)
        if batch and "mask_indices" in batch["net_input"]:
            batch["net_input"].update(batch["net_input"].pop("mask_indices"))
        return batch

    def _mask(self, ids: List[int], lengths: List[int], size: int):
        spec = self.mask_spec
        total = frames_per_sample([size], spec.conv_spec)[0]
        valid = frames_per_sample(lengths, spec.conv_spec) if self.pad else None
        return batch_masks(spec, ids, total, self.seed, self.epoch, valid)
