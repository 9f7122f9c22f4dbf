"""Base of the datasets that wrap fairseq token blocks and draw new masks every epoch."""
import numpy as np
from fairseq.data import FairseqDataset


class EpochMaskedBlocks(FairseqDataset):
    """Sizes, length and epoch plumbing around ``self.blocks`` (a fairseq dataset of 1-D token tensors).

    ``can_reuse_epoch_itr_across_epochs`` is False: masks depend on the epoch, so dataloader workers must be
    recreated with the new epoch."""

    def __init__(self, blocks, sizes=None):
        super().__init__()
        self.blocks = blocks
        self._sizes = np.asarray(sizes if sizes is not None else blocks.sizes)
        self.epoch = 1

    @property
    def sizes(self):
        return self._sizes

    def __len__(self):
        return len(self.blocks)

    def set_epoch(self, epoch):
        if hasattr(self.blocks, "set_epoch"):
            self.blocks.set_epoch(epoch)
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False

    def num_tokens(self, index):
        return int(self._sizes[index])

    def num_tokens_vec(self, indices):
        return self._sizes[indices]

    def size(self, index):
        return int(self._sizes[index])
