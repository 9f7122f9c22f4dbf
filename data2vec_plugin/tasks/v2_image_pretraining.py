"""fairseq adapter: ``data2vec2_image_pretraining`` task (data2vec 2.0 on an image folder).

``DATA/train`` and ``DATA/val`` (or ``valid``) image folders (class sub-directories are ignored); masks come from
the model's settings (``data_mask_spec``), one per (image, clone), computed in the collater.
"""
import logging
from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.v2_image_dataset import ImageCloneMaskDataset, mae_pretraining_transform
from ._common import NoDictionaryTaskMixin, TeacherStepTaskMixin
from .image_pretraining import split_dir

logger = logging.getLogger(__name__)


@dataclass
class Data2Vec2ImagePretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "image folder root with train/ and val/ sub-folders"})
    input_size: int = field(default=224, metadata={"help": "crop side in pixels; must equal "
                                                            "model.modalities.image.input_size"})
    min_crop_scale: float = field(default=0.2, metadata={"help": "smallest RandomResizedCrop area fraction "
                                                                  "(MAE / data2vec 2.0: 0.2)"})
    skip_invalid_images: bool = field(default=False, metadata={"help": "skip undecodable files instead of "
                                                                        "stopping with an error"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of augmentations and masks"})


class ImagePretrainingBase(TeacherStepTaskMixin, NoDictionaryTaskMixin, FairseqTask):
    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg)

    def _options(self, c):
        return c.min_crop_scale, c.skip_invalid_images, c.seed

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        c = task_cfg or self.cfg
        spec = self.require_mask_spec(split)
        if spec.modality != "IMAGE":
            raise ValueError(f"{type(self).__name__} needs an IMAGE model, got {spec.modality}")
        grid = c.input_size // spec.patch_size
        min_scale, skip, seed = self._options(c)
        root = split_dir(c.data, split)
        self.datasets[split] = ImageCloneMaskDataset(root, mae_pretraining_transform(c.input_size, min_scale), spec,
                                                     grid * grid, seed, skip)
        logger.info(f"{split}: {len(self.datasets[split])} images from {root}")



@register_task("data2vec2_image_pretraining", dataclass=Data2Vec2ImagePretrainingConfig)
class Data2Vec2ImagePretrainingTask(ImagePretrainingBase):
    cfg: Data2Vec2ImagePretrainingConfig
