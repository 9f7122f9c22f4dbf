"""fairseq adapters: ``data2vec_image_pretraining`` task (image folder, BEiT augmentation, block masks computed in
the data pipeline) and ``image_pretraining``, the reference's task name, so reference checkpoints and yamls load.

Layout: ``DATA/train/<class>/*.jpg|png|...`` and ``DATA/val/...`` (fairseq's ``valid`` split falls back to
``val``); class labels are ignored for pretraining. A flat folder without split sub-directories is used as is.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.image_folder import ImageFolderDataset
from ..data.image_transforms import IMAGENET_MEAN, IMAGENET_STD, beit_pretraining_transform
from ._common import NoDictionaryTaskMixin, TeacherStepTaskMixin

logger = logging.getLogger(__name__)
SPLIT_ALIASES = {"valid": "val", "val": "valid"}
REFERENCE_TASK_DEFAULTS = {"seed": 1, "skip_invalid_images": False, "color_jitter": 0.4, "min_crop_scale": 0.08}


@dataclass
class ImagePretrainingRefConfig(FairseqDataclass):
    """The reference ``ImagePretrainingConfig`` fields (spec §3.5)."""
    data: str = field(default=MISSING, metadata={"help": "image folder root holding train/ and val/ "
                                                          "(each with one sub-directory per class)"})
    input_size: int = field(default=224, metadata={"help": "crop size in pixels; must equal model.image_size"})
    normalization_mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN), metadata={
        "help": "per-channel mean subtracted after ToTensor (ImageNet by default)"})
    normalization_std: List[float] = field(default_factory=lambda: list(IMAGENET_STD), metadata={
        "help": "per-channel std divided after mean subtraction (ImageNet by default)"})


@dataclass
class Data2VecImagePretrainingConfig(ImagePretrainingRefConfig):
    seed: int = field(default=II("common.seed"), metadata={
        "help": "seed of augmentations and masks (each is a function of seed, epoch and sample id)"})
    skip_invalid_images: bool = field(default=False, metadata={
        "help": "skip (and count) files that are not decodable images instead of stopping with an error"})
    color_jitter: float = field(default=0.4, metadata={
        "help": "brightness/contrast/saturation jitter strength (BEiT/data2vec: 0.4)"})
    min_crop_scale: float = field(default=0.08, metadata={
        "help": "smallest RandomResizedCrop area fraction (torchvision default 0.08, as in the reference)"})


def task_option(cfg, name: str):
    """Value of a plugin task field, or its default when the config is the reference's (``image_pretraining``)."""
    if hasattr(cfg, name):
        return getattr(cfg, name)
    return REFERENCE_TASK_DEFAULTS[name]


def split_dir(data: str, split: str) -> str:
    """``DATA/<split>`` (``valid`` <-> ``val`` accepted), or ``DATA`` itself when it has no split folders."""
    for name in (split, SPLIT_ALIASES.get(split)):
        if name and os.path.isdir(os.path.join(data, name)):
            return os.path.join(data, name)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"task.data={data} is not a directory")
    if any(os.path.isdir(os.path.join(data, s)) for s in ("train", "val", "valid")):
        names = " or ".join(f"'{n}'" for n in (split, SPLIT_ALIASES.get(split)) if n)
        raise FileNotFoundError(f"{data}: no {names} sub-directory for split '{split}'")
    return data


@register_task("data2vec_image_pretraining", dataclass=Data2VecImagePretrainingConfig)
class Data2VecImagePretrainingTask(TeacherStepTaskMixin, NoDictionaryTaskMixin, FairseqTask):
    cfg: Data2VecImagePretrainingConfig

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg)

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        c = task_cfg or self.cfg
        spec = self.require_mask_spec(split)
        if spec.image_size is not None and spec.image_size != c.input_size:
            raise ValueError(f"task.input_size={c.input_size} but model.image_size={spec.image_size}; "
                             "they must be equal")
        transform = beit_pretraining_transform(c.input_size, c.normalization_mean, c.normalization_std,
                                               task_option(c, "color_jitter"), task_option(c, "min_crop_scale"))
        root = split_dir(c.data, split)
        self.datasets[split] = ImageFolderDataset(root, transform, with_labels=False, mask_spec=spec,
                                                  seed=task_option(c, "seed"),
                                                  skip_invalid=task_option(c, "skip_invalid_images"))
        logger.info(f"{split}: {len(self.datasets[split])} images from {root}")



@register_task("image_pretraining", dataclass=ImagePretrainingRefConfig)
class ReferenceImagePretrainingTask(Data2VecImagePretrainingTask):
    """The reference's ``image_pretraining`` name and fields, backed by the plugin task (defaults for the
    plugin-only fields; seed 1). Lets reference checkpoints load with ``load_model_ensemble_and_task``."""
    cfg: ImagePretrainingRefConfig
