"""fairseq adapter: ``data2vec_masked_lm`` task (binarized fairseq text + dict.txt, RoBERTa dynamic masking).

Data layout = ``fairseq-preprocess --only-source`` output (``d2v-prepare-text`` writes it): ``dict.txt``,
``train.{bin,idx}``, ``valid.{bin,idx}``. Text is cut into blocks of ``tokens_per_sample - 1`` tokens (plus a
leading ``<s>``); masks are drawn in the data pipeline from (seed, epoch, sample id), see
``data/text_dataset.py``. Batches have core ``masked_lm``'s layout, so the data2vec_text model also trains with
the reference task (``masked_lm`` with ``include_target_tokens``).
"""
import logging
import os

import numpy as np
from dataclasses import dataclass, field
from fairseq import utils
from fairseq.data import Dictionary, PrependTokenDataset, SortDataset, TokenBlockDataset, data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.text_dataset import TokenMaskDataset
from ._common import TeacherStepTaskMixin

logger = logging.getLogger(__name__)
BREAK_MODES = ChoiceEnum(["none", "complete", "complete_doc", "eos"])


@dataclass
class Data2VecMaskedLMConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory with dict.txt and {train,valid}.{bin,idx} "
                                                          "(d2v-prepare-text output); ':'-separated = one per epoch"})
    sample_break_mode: BREAK_MODES = field(
        default="none", metadata={"help": "block construction: none = fill blocks across sentences; complete "
                                              "= whole sentences up to the block size; complete_doc = same, not "
                                              "crossing documents (empty lines); eos = one sentence per block"})
    tokens_per_sample: int = field(default=512, metadata={"help": "block length in tokens including <s> "
                                                                  "(paper: 512)"})
    mask_prob: float = field(default=0.15, metadata={"help": "fraction of (non-special) tokens selected for "
                                                             "prediction (paper: 0.15)"})
    leave_unmasked_prob: float = field(default=0.1, metadata={"help": "fraction of selected tokens left "
                                                                      "unchanged (paper: 0.1)"})
    random_token_prob: float = field(default=0.1, metadata={"help": "fraction of selected tokens replaced by a "
                                                                    "random token (paper: 0.1)"})
    freq_weighted_replacement: bool = field(default=False, metadata={"help": "draw random replacement tokens by "
                                                                             "dict.txt frequency, not uniformly"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of the masks (with epoch and sample id)"})
    persistent_workers: bool = field(default=False, metadata={"help": "keep dataloader workers across epochs "
                                                                       "(off: workers must see the new epoch to "
                                                                       "draw new masks)"})


@register_task("data2vec_masked_lm", dataclass=Data2VecMaskedLMConfig)
class Data2VecMaskedLMTask(TeacherStepTaskMixin, FairseqTask):
    cfg: Data2VecMaskedLMConfig

    def __init__(self, cfg: Data2VecMaskedLMConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")

    @classmethod
    def setup_task(cls, cfg: Data2VecMaskedLMConfig, **kwargs):
        paths = utils.split_paths(cfg.data)
        if not paths:
            raise ValueError("task.data is empty: set it to the d2v-prepare-text output directory")
        dict_path = os.path.join(paths[0], "dict.txt")
        if not os.path.isfile(dict_path):
            raise FileNotFoundError(f"task.data: {dict_path} not found; create the data with "
                                    "`d2v-prepare-text RAW.txt DEST`")
        dictionary = Dictionary.load(dict_path)
        logger.info(f"dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        c = self.cfg
        paths = utils.split_paths(c.data)
        split_path = os.path.join(paths[(epoch - 1) % len(paths)], split)
        tokens = data_utils.load_indexed_dataset(split_path, self.dictionary, combine=combine)
        if tokens is None:
            raise FileNotFoundError(f"task.data: {split_path}.bin/.idx not found (split '{split}')")
        if c.tokens_per_sample < 2:
            raise ValueError(f"task.tokens_per_sample must be >= 2, got {c.tokens_per_sample}")
        blocks = TokenBlockDataset(tokens, tokens.sizes, c.tokens_per_sample - 1, pad=self.dictionary.pad(),
                                   eos=self.dictionary.eos(), break_mode=c.sample_break_mode)
        blocks = PrependTokenDataset(blocks, self.dictionary.bos())
        masked = TokenMaskDataset(blocks, self.dictionary, c.seed, c.mask_prob, c.leave_unmasked_prob,
                                  c.random_token_prob, c.freq_weighted_replacement, sizes=blocks.sizes)
        with data_utils.numpy_seed(c.seed + epoch):
            shuffle = np.random.permutation(len(masked))
        logger.info(f"{split}: {len(masked)} blocks from {split_path}")
        self.datasets[split] = SortDataset(masked, sort_order=[shuffle, masked.sizes])
        return self.datasets[split]

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return self.cfg.tokens_per_sample
