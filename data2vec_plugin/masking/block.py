"""BEiT block masking on a patch grid (data2vec vision v1), seeded and with an exact masked count.

Algorithm (BEiT, Bao et al. 2021, ``masking_generator.py``; data2vec §7.3 of the spec): while fewer than
``num_masks`` cells are masked, draw up to ``attempts`` rectangles with area ~ U(min_patches, max_here) and
log-uniform aspect ratio in [min_aspect, 1/min_aspect], ``max_here = min(remaining, max_patches)``; place it at a
random position and accept it if it adds between 1 and ``max_here`` new cells.

Deliberate differences from the reference (bug B13 and B8 in the spec):
* randomness comes only from the numpy ``Generator`` passed in (built from seed, epoch and sample id);
* rectangles smaller than ``min_patches`` after rounding are redrawn, so every block has >= min_patches cells;
* the count is exact: when the remainder is below ``min_patches`` or no rectangle fits, the mask is grown by
  random cells adjacent to masked ones (so no block smaller than ``min_patches`` appears);
* integer dtype is plain ``bool`` (the reference's ``np.int`` fails on numpy >= 1.24).
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class BlockMaskSpec:
    """What a vision model asks the data pipeline to mask (see ``Data2VecVisionModel.data_mask_spec``)."""
    grid: Tuple[int, int]
    num_masks: int
    min_patches: int
    max_patches: int
    min_aspect: float = 0.3
    image_size: Optional[int] = None

    def __post_init__(self):
        h, w = self.grid
        if not 0 <= self.num_masks <= h * w:
            raise ValueError(f"num_mask_patches={self.num_masks} must be in [0, {h * w}] for a {h}x{w} patch grid")
        if self.min_patches < 1 or self.max_patches < self.min_patches:
            raise ValueError(f"need 1 <= min_mask_patches_per_block ({self.min_patches}) <= "
                             f"max_mask_patches_per_block ({self.max_patches})")
        if not 0 < self.min_aspect <= 1:
            raise ValueError(f"mask_min_aspect={self.min_aspect} must be in (0, 1]")


def _try_block(mask: np.ndarray, min_patches: int, max_here: int, log_aspect: Tuple[float, float],
               rng: np.random.Generator, attempts: int, blocks: Optional[list]) -> int:
    """One BEiT placement round; returns the number of newly masked cells (0 if every attempt failed)."""
    height, width = mask.shape
    for _ in range(attempts):
        area = rng.uniform(min_patches, max_here)
        aspect = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if not (h < height and w < width) or h * w < min_patches:
            continue
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        region = mask[top:top + h, left:left + w]
        new = h * w - int(region.sum())
        if 0 < new <= max_here:
            region[...] = True
            if blocks is not None:
                blocks.append((top, left, h, w, aspect))
            return new
    return 0


def _grow(mask: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Mask ``count`` more cells, each adjacent (4-neighbourhood) to the current mask when possible."""
    for _ in range(count):
        frontier = np.zeros_like(mask)
        frontier[1:] |= mask[:-1]
        frontier[:-1] |= mask[1:]
        frontier[:, 1:] |= mask[:, :-1]
        frontier[:, :-1] |= mask[:, 1:]
        candidates = np.flatnonzero(frontier & ~mask)
        if candidates.size == 0:
            candidates = np.flatnonzero(~mask)
        mask.flat[candidates[int(rng.integers(0, candidates.size))]] = True


def block_mask_2d(grid: Tuple[int, int], num_masks: int, min_patches: int, max_patches: int,
                  rng: np.random.Generator, min_aspect: float = 0.3, attempts: int = 10,
                  blocks: Optional[List[tuple]] = None) -> np.ndarray:
    """BEiT block mask with exactly ``num_masks`` True cells.

    Args:
        grid: (height, width) of the patch grid.
        num_masks: number of masked patches (exact).
        min_patches / max_patches: area range of one rectangle (in patches).
        rng: numpy Generator, e.g. ``sample_rng(seed, epoch, sample_id, k)``.
        min_aspect: aspect ratios are log-uniform in [min_aspect, 1 / min_aspect].
        attempts: rectangle draws per placement round (10 in BEiT).
        blocks: optional list that receives (top, left, h, w, sampled_aspect) of every placed rectangle.
    Returns: (height, width) bool array.
    """
    mask = np.zeros(grid, dtype=bool)
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    min_patches = min(min_patches, max(num_masks, 1))
    count = 0
    while count < num_masks:
        remaining = num_masks - count
        max_here = min(remaining, max_patches)
        if max_here < min_patches:
            break
        new = _try_block(mask, min_patches, max_here, log_aspect, rng, attempts, blocks)
        if new == 0:
            break
        count += new
    if count < num_masks:
        _grow(mask, num_masks - count, rng)
    return mask


def block_masks(spec: BlockMaskSpec, rngs) -> np.ndarray:
    """(B, N) bool masks, one per generator in ``rngs`` (row-major over the grid, matching patch order)."""
    rows = [block_mask_2d(spec.grid, spec.num_masks, spec.min_patches, spec.max_patches, rng, spec.min_aspect)
            for rng in rngs]
    n = spec.grid[0] * spec.grid[1]
    return np.stack(rows).reshape(len(rows), n) if rows else np.zeros((0, n), dtype=bool)
