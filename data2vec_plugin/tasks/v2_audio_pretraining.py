"""fairseq adapter: ``data2vec2_audio_pretraining`` task (data2vec 2.0 on wav2vec 2.0 manifests).

Same manifests, crops and validation as ``data2vec_audio_pretraining``; the collater adds one mask per
(sample, clone) for ``data2vec_multi`` (``precomputed_mask``, ``num_masked``).
"""
import os
from dataclasses import dataclass

from fairseq.tasks import register_task

from ..data.v2_audio_dataset import RawAudioCloneMaskDataset
from .audio_pretraining import Data2VecAudioPretrainingConfig, Data2VecAudioPretrainingTask


@dataclass
class Data2Vec2AudioPretrainingConfig(Data2VecAudioPretrainingConfig):
    pass


@register_task("data2vec2_audio_pretraining", dataclass=Data2Vec2AudioPretrainingConfig)
class Data2Vec2AudioPretrainingTask(Data2VecAudioPretrainingTask):
    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        c = self.cfg
        self.datasets[split] = RawAudioCloneMaskDataset(
            os.path.join(c.data, f"{split}.tsv"), c.sample_rate, self.require_mask_spec(split), c.seed,
            c.max_sample_size, c.min_sample_size or 0, c.enable_padding, c.normalize, c.skip_invalid_audio)
