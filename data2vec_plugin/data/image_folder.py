"""ImageFolder dataset (``ROOT/<class>/*.jpg|png...``) with robust decoding and masks computed in the collater.

* Every image is converted to 8-bit RGB: grayscale (incl. 16-bit), palette (with or without transparency), RGBA,
  CMYK, bilevel... Tiny images are fine: the transforms resize them.
* A file that is not a decodable image raises ``ImageInputError`` naming the file, or, with ``skip_invalid``,
  is skipped and counted (probed once at start-up; files that only fail when fully decoded are dropped from
  their batch and counted at load time).
* Pretraining: the augmentation (torch RNG) and the block mask (numpy) of sample ``id`` in ``epoch`` are functions
  of (seed, epoch, id), independent of worker count and batch composition.
"""
import logging
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from fairseq.data import FairseqDataset

from ..masking import sample_rng
from ..masking.block import BlockMaskSpec, block_masks

logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
MASK_STREAM, AUGMENT_STREAM = 3, 4  # sample_rng streams: different draws for masks and augmentation
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageInputError(ValueError):
    """A file that cannot be used as an image; the message names the file."""


def scan_image_folder(root: str, with_classes: bool, extensions=IMG_EXTENSIONS
                      ) -> Tuple[List[str], Optional[List[int]], Optional[List[str]]]:
    """-> (files, labels or None, class names or None). Classes = sorted sub-directories of ``root``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} not found (expected DATA/<split>/<class>/*.jpg)")

    def walk(path):
        for d, _, names in sorted(os.walk(path, followlinks=True)):
            for n in sorted(names):
                if n.lower().endswith(extensions):
                    yield os.path.join(d, n)

    if not with_classes:
        files, labels, classes = list(walk(root)), None, None
    else:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        files, labels = [], []
        for i, c in enumerate(classes):
            found = list(walk(os.path.join(root, c)))
            files += found
            labels += [i] * len(found)
    if not files:
        raise ImageInputError(f"{root}: no image files ({', '.join(extensions)}) found"
                              + (" in class sub-directories" if with_classes else ""))
    return files, labels, classes


def to_rgb(img):
    """Any PIL mode -> 8-bit RGB (16-bit/float grayscale rescaled, palette transparency resolved)."""
    from PIL import Image

    if img.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path: str):
    """Decode ``path`` fully and convert it to RGB; raises ``ImageInputError`` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageInputError(f"{path}: not a readable image ({type(e).__name__}: {e}); delete or re-encode it, "
                              "or set task.skip_invalid_images=true to skip such files") from None


def probe_image(path: str) -> Optional[str]:
    """Cheap header check: None if PIL recognises the file, else a reason."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        return f"unreadable ({type(e).__name__})"
    return None


class ImageFolderDataset(FairseqDataset):
    """Items ``{"id", "img" (3, S, S) float[, "label"]}``; batches ``{"id", "net_input": {"img"[, "label"]
    [, "mask_indices" (B, N) bool]}}``."""

    def __init__(self, root: str, transform: Callable, with_labels: bool, mask_spec: Optional[BlockMaskSpec] = None,
                 seed: int = 1, skip_invalid: bool = False, seeded_transform: bool = True, shuffle: bool = True):
        self.root = root
        self.files, self.labels, self.classes = scan_image_folder(root, with_labels)
        self.transform, self.mask_spec, self.seed = transform, mask_spec, seed
        self.skip_invalid, self.seeded_transform, self.shuffle = skip_invalid, seeded_transform, shuffle
        self.skipped: Dict[str, int] = {}
        if skip_invalid:
            self._drop_invalid()
        self.sizes = np.ones(len(self.files), dtype=np.int64)
        self.epoch = 1

    def _drop_invalid(self) -> None:
        keep = [i for i, f in enumerate(self.files) if self._count(probe_image(f)) is None]
        if len(keep) < len(self.files):
            logger.warning(f"{self.root}: skipped {len(self.files) - len(keep)} invalid files: {self.skipped}")
            self.files = [self.files[i] for i in keep]
            self.labels = None if self.labels is None else [self.labels[i] for i in keep]
        if not self.files:
            raise ImageInputError(f"{self.root}: no readable images left (skipped: {self.skipped})")

    def _count(self, reason: Optional[str]) -> Optional[str]:
        if reason is not None:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return reason

    def _augment(self, img, index: int) -> torch.Tensor:
        if not self.seeded_transform:
            return self.transform(img)
        seed = int(sample_rng(self.seed, self.epoch, index, AUGMENT_STREAM).integers(0, 2**62))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transform(img)

    def __getitem__(self, index: int):
        try:
            img = load_rgb(self.files[index])
        except ImageInputError:
            if not self.skip_invalid:
                raise
            self._count("unreadable at load time")
            return {"id": index, "img": None}
        item = {"id": index, "img": self._augment(img, index)}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item

    def __len__(self) -> int:
        return len(self.files)

    def num_tokens(self, index: int) -> int:
        return 1

    def size(self, index: int) -> int:
        return 1

    def ordered_indices(self):
        return np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False

    def collater(self, samples):
        samples = [s for s in samples if s.get("img") is not None]
        if not samples:
            return {}
        ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
        net_input = {"img": torch.stack([s["img"] for s in samples])}
        if "label" in samples[0]:
            net_input["label"] = torch.tensor([s["label"] for s in samples], dtype=torch.long)
        if self.mask_spec is not None:
            rngs = [sample_rng(self.seed, self.epoch, i, MASK_STREAM) for i in ids.tolist()]
            net_input["mask_indices"] = torch.from_numpy(block_masks(self.mask_spec, rngs))
        return {"id": ids, "net_input": net_input}
