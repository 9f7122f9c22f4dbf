"""fairseq adapter: ``data2vec_audio_pretraining`` task (wav2vec 2.0 manifests, masks in the data pipeline)."""
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.audio_dataset import RawAudioMaskDataset
from ._common import NoDictionaryTaskMixin, TeacherStepTaskMixin


@dataclass
class Data2VecAudioPretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory with train.tsv / valid.tsv manifests"})
    sample_rate: int = field(default=16000, metadata={"help": "expected sample rate (Hz); other rates are errors"})
    normalize: bool = field(default=False, metadata={"help": "zero-mean unit-variance each waveform (needed "
                                                              "for models pretrained with it, e.g. the paper's)"})
    enable_padding: bool = field(default=False, metadata={"help": "pad to the longest clip in a batch instead "
                                                                   "of cropping all clips to the shortest"})
    max_sample_size: Optional[int] = field(default=None, metadata={"help": "crop clips to at most this many "
                                                                            "samples"})
    min_sample_size: Optional[int] = field(default=None, metadata={"help": "drop clips shorter than this"})
    skip_invalid_audio: bool = field(default=False, metadata={"help": "skip (and count) missing, unreadable, "
                                                                       "non-mono, wrong-rate or empty files "
                                                                       "instead of stopping with an error"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of crops and masks (with epoch, id)"})
    persistent_workers: bool = field(default=False, metadata={"help": "keep dataloader workers across epochs "
                                                                       "(off: workers must see the new epoch to "
                                                                       "draw new masks)"})


@register_task("data2vec_audio_pretraining", dataclass=Data2VecAudioPretrainingConfig)
class Data2VecAudioPretrainingTask(TeacherStepTaskMixin, NoDictionaryTaskMixin, FairseqTask):
    cfg: Data2VecAudioPretrainingConfig

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg)

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        c = self.cfg
        self.datasets[split] = RawAudioMaskDataset(
            os.path.join(c.data, f"{split}.tsv"), c.sample_rate, self.require_mask_spec(split), c.seed,
            c.max_sample_size, c.min_sample_size or 0, c.enable_padding, c.normalize, c.skip_invalid_audio)

