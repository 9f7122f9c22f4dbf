"""Image augmentation pipelines built from torchvision / timm transforms (no hand-written image code).

* ``beit_pretraining_transform``: the data2vec v1 / BEiT pretraining augmentation (spec §7.3): ColorJitter(0.4,
  0.4, 0.4) -> RandomHorizontalFlip -> RandomResizedCrop(input_size, bicubic) -> ToTensor -> Normalize.
* ``classification_transform``: timm's ImageNet recipe (RandAugment, random erasing) for training and
  resize + centre crop for evaluation, as in the reference ``image_classification`` task.
"""
from typing import Optional, Sequence

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def beit_pretraining_transform(input_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                               std: Sequence[float] = IMAGENET_STD, color_jitter: float = 0.4,
                               min_crop_scale: float = 0.08):
    """PIL RGB image -> normalised float tensor (3, input_size, input_size). Randomness: torch's RNG."""
    from torchvision import transforms as T

    return T.Compose([
        T.ColorJitter(color_jitter, color_jitter, color_jitter),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomResizedCrop(input_size, scale=(min_crop_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean=list(mean), std=list(std)),
    ])


def classification_transform(input_size: int, train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                             std: Sequence[float] = IMAGENET_STD, auto_augment: Optional[str] = None,
                             reprob: float = 0.0, eval_crop_pct: float = 0.875, min_crop_scale: float = 0.08):
    """timm ``create_transform``: train = random resized crop, flip, RandAugment, random erasing;
    eval = resize to input_size / eval_crop_pct, centre crop. Randomness: python/numpy/torch RNGs (timm)."""
    from timm.data import create_transform

    if train:
        return create_transform(input_size, is_training=True, auto_augment=auto_augment or None,
                                scale=(min_crop_scale, 1.0),
                                interpolation="bicubic", re_prob=reprob, re_mode="pixel", re_count=1,
                                mean=tuple(mean), std=tuple(std))
    return create_transform(input_size, is_training=False, interpolation="bicubic", crop_pct=eval_crop_pct,
                            mean=tuple(mean), std=tuple(std))
