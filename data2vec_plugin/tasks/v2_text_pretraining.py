"""fairseq adapter: ``data2vec2_text_pretraining`` task (data2vec 2.0 on binarized fairseq text).

Data = ``fairseq-preprocess --only-source`` output (``dict.txt``, ``{split}.bin/.idx``; ``d2v-prepare-text``
writes it). Text is cut into ``tokens_per_sample - 1`` token blocks plus ``<s>``; the collater adds the model's
masks (one per block and clone). The reference trains the same model with core ``masked_lm`` (d2v2_multi).
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from fairseq import utils
from fairseq.data import PrependTokenDataset, SortDataset, TokenBlockDataset, data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from ..data.v2_text_dataset import TextCloneMaskDataset
from .text_pretraining import BREAK_MODES, Data2VecMaskedLMTask

logger = logging.getLogger(__name__)


@dataclass
class Data2Vec2TextPretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory with dict.txt and {split}.bin/.idx"})
    sample_break_mode: BREAK_MODES = field(default="none", metadata={
        "help": "how text is cut into blocks (none: fixed-size blocks across documents, as the v2 base config)"})
    tokens_per_sample: int = field(default=512, metadata={"help": "block length incl. <s>; must not exceed "
                                                                   "model.modalities.text.max_source_positions"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of the masks and the block order"})


@register_task("data2vec2_text_pretraining", dataclass=Data2Vec2TextPretrainingConfig)
class Data2Vec2TextPretrainingTask(Data2VecMaskedLMTask):
    cfg: Data2Vec2TextPretrainingConfig

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        c = self.cfg
        spec = self.require_mask_spec(split)
        paths = utils.split_paths(c.data)
        split_path = os.path.join(paths[(epoch - 1) % len(paths)], split)
        tokens = data_utils.load_indexed_dataset(split_path, self.dictionary, combine=combine)
        if tokens is None:
            raise FileNotFoundError(f"task.data: {split_path}.bin/.idx not found (split '{split}')")
        blocks = TokenBlockDataset(tokens, tokens.sizes, c.tokens_per_sample - 1, pad=self.dictionary.pad(),
                                   eos=self.dictionary.eos(), break_mode=c.sample_break_mode)
        blocks = PrependTokenDataset(blocks, self.dictionary.bos())
        ds = TextCloneMaskDataset(blocks, self.dictionary.pad(), spec, c.seed)
        with data_utils.numpy_seed(c.seed + epoch):
            shuffle = np.random.permutation(len(ds))
        logger.info(f"{split}: {len(ds)} blocks from {split_path}")
        self.datasets[split] = SortDataset(ds, sort_order=[shuffle, ds.sizes])
        return self.datasets[split]
