"""Image folder dataset for data2vec 2.0: MAE-style augmentation and one block mask per (image, clone).

Batches: ``{"id", "net_input": {"source" (B, 3, S, S), "precomputed_mask" (B * clone_batch, patches),
"num_masked"}}``. Augmentations and masks are functions of (seed, epoch, id[, clone]).
"""
from typing import Sequence

import torch

from .image_folder import ImageFolderDataset
from .image_transforms import IMAGENET_MEAN, IMAGENET_STD
from .v2_masking import V2MaskSpec, batch_masks


def mae_pretraining_transform(input_size: int, min_crop_scale: float = 0.2, mean: Sequence[float] = IMAGENET_MEAN,
                              std: Sequence[float] = IMAGENET_STD):
    """RandomResizedCrop(scale (min, 1), bicubic) -> RandomHorizontalFlip -> ToTensor -> Normalize (spec §7.4)."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(input_size, scale=(min_crop_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean=list(mean), std=list(std)),
    ])


class ImageCloneMaskDataset(ImageFolderDataset):
    def __init__(self, root: str, transform, mask_spec: V2MaskSpec, num_patches: int, seed: int = 1,
                 skip_invalid: bool = False):
        super().__init__(root, transform, with_labels=False, mask_spec=None, seed=seed, skip_invalid=skip_invalid)
        self.v2_spec, self.num_patches = mask_spec, num_patches

    def collater(self, samples):
        batch = super().collater(samples)
        if not batch:
            return batch
        net_input = {"source": batch["net_input"].pop("img")}
        net_input.update(batch_masks(self.v2_spec, batch["id"].tolist(), self.num_patches, self.seed, self.epoch))
        return {"id": batch["id"], "net_input": net_input}


def image_batch(images: torch.Tensor, ids, spec: V2MaskSpec, num_patches: int, seed: int, epoch: int) -> dict:
    """A batch from in-memory images (tests, benchmarks)."""
    net_input = {"source": images}
    net_input.update(batch_masks(spec, list(ids), num_patches, seed, epoch))
    return {"id": torch.as_tensor(list(ids)), "net_input": net_input}
