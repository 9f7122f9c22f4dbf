"""Masked-token dataset for data2vec text pretraining: masks are drawn in ``__getitem__`` (dataloader workers).

Each item is a token block (``<s>`` + up to ``tokens_per_sample - 1`` tokens). Its mask is a function of
(seed, epoch, sample id) only (``sample_rng(seed, epoch, id, 0)``), so it is reproducible across runs, resumes and
worker counts and changes every epoch. Batches follow fairseq ``masked_lm``'s layout:
``net_input = {src_tokens (masked), src_lengths, target_tokens, src_id}``, ``target``, ``id``, ``ntokens``, where
``target_tokens`` = ``target`` holds the original token at every selected position and pad elsewhere. The model
rebuilds the original sentence for the teacher from it.
"""
from typing import Optional

import numpy as np
import torch
from fairseq.data import Dictionary, data_utils

from ..masking import sample_rng
from ..masking.token import check_mask_probs, token_mask
from ._epoch_blocks import EpochMaskedBlocks


def replacement_probs(dictionary: Dictionary, freq_weighted: bool) -> np.ndarray:
    """Distribution of random replacement tokens over non-special symbols (uniform or by corpus count)."""
    weights = np.array(dictionary.count, dtype=np.float64) if freq_weighted else np.ones(len(dictionary))
    weights[: dictionary.nspecial] = 0
    weights[dictionary.index("<mask>")] = 0
    for sym in ("<s>", "<pad>", "</s>", "<unk>"):
        weights[dictionary.index(sym)] = 0
    if weights.sum() <= 0:
        raise ValueError("the dictionary has no regular symbols to use as random replacement tokens")
    return weights / weights.sum()


class TokenMaskDataset(EpochMaskedBlocks):
    """Wraps a dataset of 1-D LongTensor token blocks; yields {id, source (masked), target (MLM stream)}.

    Args:
        dataset: token blocks (special symbols of ``dictionary`` are never masked).
        dictionary: must contain ``<mask>``.
        seed: with epoch and sample id, determines every mask.
        mask_prob, leave_unmasked_prob, random_token_prob: see ``masking.token``.
        freq_weighted_replacement: draw random tokens by corpus frequency instead of uniformly.
    """

    def __init__(self, dataset, dictionary: Dictionary, seed: int, mask_prob: float = 0.15,
                 leave_unmasked_prob: float = 0.1, random_token_prob: float = 0.1,
                 freq_weighted_replacement: bool = False, sizes: Optional[np.ndarray] = None):
        super().__init__(dataset, sizes)
        check_mask_probs(mask_prob, leave_unmasked_prob, random_token_prob)
        self.dictionary = dictionary
        self.pad_idx = dictionary.pad()
        self.mask_idx = dictionary.index("<mask>")
        if self.mask_idx == dictionary.unk():
            raise ValueError("dictionary has no '<mask>' symbol")
        self.special = np.array(sorted({dictionary.bos(), dictionary.pad(), dictionary.eos(), dictionary.unk(),
                                        self.mask_idx} | set(range(dictionary.nspecial))))
        self.probs = replacement_probs(dictionary, freq_weighted_replacement) if random_token_prob > 0 else None
        self.seed, self.mask_prob = seed, mask_prob
        self.leave_unmasked_prob, self.random_token_prob = leave_unmasked_prob, random_token_prob

    def __getitem__(self, index: int):
        tokens = self.blocks[index].numpy()
        m = token_mask(tokens, ~np.isin(tokens, self.special), sample_rng(self.seed, self.epoch, index, 0),
                       self.mask_idx, self.probs, self.mask_prob, self.leave_unmasked_prob, self.random_token_prob)
        target = np.where(m.selected, tokens, self.pad_idx)
        return {"id": index, "source": torch.from_numpy(m.tokens), "target": torch.from_numpy(target)}

    def collater(self, samples):
        if not samples:
            return {}
        src = data_utils.collate_tokens([s["source"] for s in samples], self.pad_idx)
        tgt = data_utils.collate_tokens([s["target"] for s in samples], self.pad_idx)
        ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
        lengths = torch.tensor([s["source"].numel() for s in samples], dtype=torch.long)
        return {
            "id": ids, "nsentences": len(samples), "ntokens": int(lengths.sum()), "target": tgt,
            "net_input": {"src_tokens": src, "src_lengths": lengths, "target_tokens": tgt, "src_id": ids},
        }
