"""Token-block dataset for data2vec 2.0 text: unmasked tokens plus one mask per (block, clone).

Batches: ``{"id", "ntokens", "nsentences", "net_input": {"source" (B, T) padded tokens, "id", "padding_mask",
"precomputed_mask" (B * clone_batch, T), "num_masked"}}``. Padding is never masked (the reference's random
masking ignores it, spec B19); every row masks int(mask_prob * shortest length) tokens.
"""
import torch
from fairseq.data import data_utils

from ._epoch_blocks import EpochMaskedBlocks
from .v2_masking import V2MaskSpec, batch_masks


class TextCloneMaskDataset(EpochMaskedBlocks):
    def __init__(self, blocks, pad_idx: int, mask_spec: V2MaskSpec, seed: int):
        super().__init__(blocks)
        self.pad_idx, self.spec, self.seed = pad_idx, mask_spec, seed

    def __getitem__(self, index: int):
        return {"id": index, "source": self.blocks[index]}

    def collater(self, samples):
        if not samples:
            return {}
        src = data_utils.collate_tokens([s["source"] for s in samples], self.pad_idx)
        ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
        lengths = [s["source"].numel() for s in samples]
        net_input = {"source": src, "id": ids, "padding_mask": src.eq(self.pad_idx)}
        net_input.update(batch_masks(self.spec, ids.tolist(), src.size(1), self.seed, self.epoch, lengths))
        return {"id": ids, "nsentences": len(samples), "ntokens": sum(lengths), "net_input": net_input}
