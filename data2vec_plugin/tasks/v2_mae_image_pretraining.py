"""fairseq adapter: ``mae_image_pretraining`` with the reference's fields (spec §3.5), so reference data2vec 2.0
image checkpoints load with ``load_model_ensemble_and_task`` and reference yamls run. Backed by the plugin's
``data2vec2_image_pretraining`` data pipeline: masks follow the model's settings (the reference copies them into
``precompute_mask_config`` by interpolation; here that block is validated against the model instead)."""
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from .v2_image_pretraining import ImagePretrainingBase

logger = logging.getLogger(__name__)
UNSUPPORTED = {"multi_data": None, "local_cache_path": None, "beit_transforms": False, "target_transform": False,
               "no_transform": False, "subsample": 1, "dataset_type": "imagefolder"}


@dataclass
class MaeImagePretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "image folder root with train/ and val/ sub-folders"})
    multi_data: Optional[List[str]] = field(default=None, metadata={"help": "several roots; not supported"})
    input_size: int = field(default=224, metadata={"help": "crop side in pixels"})
    local_cache_path: Optional[str] = field(default=None, metadata={"help": "reference cache dir; not supported"})
    key: str = field(default="imgs", metadata={"help": "net_input key of the images; the plugin model reads "
                                                       "'source' (the reference v2 configs set key: source)"})
    beit_transforms: bool = field(default=False, metadata={"help": "BEiT augmentation; not supported"})
    target_transform: bool = field(default=False, metadata={"help": "separate teacher view; not supported"})
    no_transform: bool = field(default=False, metadata={"help": "disable augmentation; not supported"})
    rebuild_batches: bool = field(default=True, metadata={"help": "reference option; batches are rebuilt every "
                                                                  "epoch anyway (masks depend on the epoch)"})
    precompute_mask_config: Optional[Dict[str, Any]] = field(default=None, metadata={
        "help": "reference mask block; masks always come from the model (mask_prob, ... must agree)"})
    subsample: float = field(default=1, metadata={"help": "fraction of the data; not supported (must be 1)"})
    seed: int = field(default=II("common.seed"), metadata={"help": "seed of augmentations and masks"})
    dataset_type: str = field(default="imagefolder", metadata={"help": "only 'imagefolder' is supported"})


@register_task("mae_image_pretraining", dataclass=MaeImagePretrainingConfig)
class MaeImagePretrainingTask(ImagePretrainingBase):
    cfg: MaeImagePretrainingConfig

    def _options(self, c):
        bad = {k: getattr(c, k) for k, v in UNSUPPORTED.items() if getattr(c, k) != v}
        if bad:
            raise ValueError(f"mae_image_pretraining: {bad} are not supported by the plugin")
        if c.key != "source":
            raise ValueError(f"mae_image_pretraining: task.key={c.key!r}; data2vec_multi reads 'source' "
                             "(set task.key=source as the reference v2 configs do)")
        self._check_mask_block(c.precompute_mask_config)
        return 0.2, False, c.seed

    def _check_mask_block(self, block) -> None:
        if not block:
            return
        spec = self.mask_spec
        ours = {"mask_prob": spec.mask_prob, "mask_length": spec.mask_length, "inverse_mask": spec.inverse_mask,
                "mask_prob_adjust": spec.mask_prob_adjust, "clone_batch": spec.clone_batch,
                "mask_dropout": spec.mask_dropout, "patch_size": spec.patch_size}
        diff = {k: (v, ours[k]) for k, v in dict(block).items() if k in ours and v != ours[k]}
        if diff or dict(block).get("expand_adjacent") or dict(block).get("non_overlapping"):
            raise ValueError(f"task.precompute_mask_config disagrees with the model (task, model): {diff}; "
                             "expand_adjacent/non_overlapping are not supported")
