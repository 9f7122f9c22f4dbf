"""fairseq adapter: ``data2vec_image_classification`` task (labelled image folder, top-1 accuracy in validation).

Layout ``DATA/train/<class>/*`` and ``DATA/val/<class>/*`` (classes = sorted sub-directory names, identical in
every split). Train: timm's ImageNet recipe (RandAugment, random erasing); eval: resize + centre crop. Use it with
fairseq's ``model`` criterion; the task adds ``correct`` to its ``log_keys`` and logs ``accuracy`` (%).
"""
import logging
from dataclasses import dataclass, field

from fairseq import metrics
from ._common import NoDictionaryTaskMixin
from fairseq.tasks import FairseqTask, register_task

from ..data.image_folder import ImageFolderDataset
from ..data.image_transforms import classification_transform
from .image_pretraining import ImagePretrainingRefConfig, split_dir

logger = logging.getLogger(__name__)


@dataclass
class Data2VecImageClassificationTaskConfig(ImagePretrainingRefConfig):
    train_subset: str = field(default="train", metadata={
        "help": "split that gets training augmentation (others get the eval transform)"})
    auto_augment: str = field(default="rand-m9-mstd0.5-inc1", metadata={
        "help": "timm auto-augment policy for training ('' = none); the reference's RandAugment by default"})
    min_crop_scale: float = field(default=0.08, metadata={
        "help": "smallest RandomResizedCrop area fraction during training (timm/ImageNet default 0.08)"})
    reprob: float = field(default=0.25, metadata={"help": "random erasing probability during training"})
    eval_crop_pct: float = field(default=0.875, metadata={
        "help": "eval: resize to input_size / eval_crop_pct, then centre-crop input_size"})
    skip_invalid_images: bool = field(default=False, metadata={
        "help": "skip (and count) files that are not decodable images instead of stopping with an error"})


def _unwrap_optimizer(optimizer):
    for attr in ("fp32_optimizer", "wrapped_optimizer"):
        optimizer = getattr(optimizer, attr, optimizer)
    return optimizer


@register_task("data2vec_image_classification", dataclass=Data2VecImageClassificationTaskConfig)
class Data2VecImageClassificationTask(NoDictionaryTaskMixin, FairseqTask):
    cfg: Data2VecImageClassificationTaskConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.classes = None
        self.num_classes = None
        self._optimizer_checked = False

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg)

    def load_dataset(self, split: str, task_cfg=None, **kwargs):
        c = task_cfg or self.cfg
        train = split == c.train_subset
        transform = classification_transform(c.input_size, train, c.normalization_mean, c.normalization_std,
                                             c.auto_augment, c.reprob, c.eval_crop_pct, c.min_crop_scale)
        ds = ImageFolderDataset(split_dir(c.data, split), transform, with_labels=True, seed=0,
                                skip_invalid=c.skip_invalid_images, seeded_transform=False, shuffle=train)
        if self.classes is not None and ds.classes != self.classes:
            raise ValueError(f"split '{split}' ({ds.root}) has classes {ds.classes[:10]}..., other splits have "
                             f"{self.classes[:10]}...; every split needs the same class sub-directories")
        self.classes = ds.classes
        self._check_num_classes()
        self.datasets[split] = ds
        logger.info(f"{split}: {len(ds)} images, {len(ds.classes)} classes from {ds.root}")

    def _check_num_classes(self) -> None:
        if self.classes is not None and self.num_classes is not None and len(self.classes) > self.num_classes:
            raise ValueError(f"the image folder has {len(self.classes)} classes but model.num_classes="
                             f"{self.num_classes}; set model.num_classes={len(self.classes)}")

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.num_classes = getattr(model.cfg, "num_classes", None)
        self._check_num_classes()
        args = getattr(model.cfg, "pretrained_model_args", None)
        if args is not None and getattr(cfg, "pretrained_model_args", None) is None:
            cfg.pretrained_model_args = args  # saved with the checkpoint: reloads without model_path
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        if getattr(cfg, "_name", None) == "model" and "correct" not in (cfg.log_keys or []):
            cfg.log_keys = list(cfg.log_keys or []) + ["correct"]
        return super().build_criterion(cfg, from_checkpoint)

    def optimizer_step(self, optimizer, model, update_num):
        if not self._optimizer_checked:
            self._optimizer_checked = True
            decay = getattr(getattr(model, "cfg", None), "layer_decay", 1.0)
            from fairseq.optim.composite import FairseqCompositeOptimizer
            if decay < 1.0 and not isinstance(_unwrap_optimizer(optimizer), FairseqCompositeOptimizer):
                raise ValueError(f"model.layer_decay={decay} needs optimizer._name=composite with "
                                 "dynamic_groups: true (and lr_scheduler: pass_through); see "
                                 "examples/vision/finetune_classification.yaml")
        super().optimizer_step(optimizer, model, update_num)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if logging_outputs and "correct" in logging_outputs[0]:
            correct = sum(float(log.get("correct", 0)) for log in logging_outputs)
            metrics.log_scalar_sum("_correct", correct)
            metrics.log_derived("accuracy", lambda m: round(100.0 * m["_correct"].sum
                                                            / max(m["sample_size"].sum, 1), 3))

