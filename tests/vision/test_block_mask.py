"""BEiT block masking: exact counts, block sizes, aspect bounds, determinism per (seed, epoch, id)."""
import math

import numpy as np
import pytest

from data2vec_plugin.masking import sample_rng
from data2vec_plugin.masking.block import BlockMaskSpec, block_mask_2d, block_masks

CASES = [((14, 14), 75, 16, 196), ((14, 14), 118, 16, 196), ((4, 4), 6, 2, 16), ((8, 8), 38, 4, 64),
         ((6, 10), 20, 3, 12)]


def components(mask):
    """Sizes of 4-connected components of a 2-D bool array."""
    seen = np.zeros_like(mask)
    sizes = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, n = [start], 0
        seen[start] = True
        while stack:
            y, x = stack.pop()
            n += 1
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                q = (y + dy, x + dx)
                if 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q] and not seen[q]:
                    seen[q] = True
                    stack.append(q)
        sizes.append(n)
    return sizes


@pytest.mark.parametrize("grid,num,lo,hi", CASES)
def test_exact_count_and_min_block_size(grid, num, lo, hi):
    for sid in range(150):
        m = block_mask_2d(grid, num, lo, hi, sample_rng(7, 1, sid, 3))
        assert m.shape == grid and m.dtype == bool
        assert int(m.sum()) == num
        assert min(components(m)) >= lo, (sid, components(m))


def test_aspect_ratio_and_area_bounds():
    blocks = []
    for sid in range(200):
        block_mask_2d((14, 14), 75, 16, 196, sample_rng(0, 0, sid), min_aspect=0.3, blocks=blocks)
    assert len(blocks) > 200
    for top, left, h, w, aspect in blocks:
        assert 0.3 - 1e-9 <= aspect <= 1 / 0.3 + 1e-9
        assert (h - 0.5) / (w + 0.5) <= 1 / 0.3 and (h + 0.5) / (w - 0.5) >= 0.3  # rounding of sqrt(area*r)
        assert 16 <= h * w and h < 14 and w < 14 and top + h <= 14 and left + w <= 14
    aspects = np.log([b[4] for b in blocks])
    assert aspects.min() < math.log(0.5) and aspects.max() > math.log(2.0)  # both orientations drawn


def test_narrow_aspect_range():
    blocks = []
    for sid in range(50):
        block_mask_2d((14, 14), 60, 9, 196, sample_rng(0, 0, sid), min_aspect=1.0, blocks=blocks)
    assert all(abs(b[2] - b[3]) <= 1 for b in blocks)  # aspect 1 -> (nearly) square blocks


def test_deterministic_per_seed_epoch_id():
    spec = BlockMaskSpec((14, 14), 75, 16, 196)
    a = block_masks(spec, [sample_rng(1, 2, i, 3) for i in range(8)])
    b = block_masks(spec, [sample_rng(1, 2, i, 3) for i in range(8)])
    assert a.shape == (8, 196) and (a == b).all()
    assert (block_masks(spec, [sample_rng(1, 2, 5, 3)])[0] == a[5]).all()  # independent of batch composition
    assert len({r.tobytes() for r in a}) == 8  # different ids -> different masks
    assert not (block_masks(spec, [sample_rng(1, 3, 0, 3)])[0] == a[0]).all()  # new epoch -> new mask
    assert not (block_masks(spec, [sample_rng(2, 2, 0, 3)])[0] == a[0]).all()  # new seed -> new mask


def test_edge_counts():
    assert block_mask_2d((4, 4), 0, 2, 16, sample_rng(0, 0, 0)).sum() == 0
    assert block_mask_2d((4, 4), 16, 2, 16, sample_rng(0, 0, 0)).all()
    m = block_mask_2d((4, 4), 3, 8, 16, sample_rng(0, 0, 0))  # fewer masks than the block minimum
    assert m.sum() == 3 and components(m) == [3]


def test_spec_validation():
    with pytest.raises(ValueError, match="num_mask_patches"):
        BlockMaskSpec((4, 4), 17, 2, 16)
    with pytest.raises(ValueError, match="min_mask_patches_per_block"):
        BlockMaskSpec((4, 4), 6, 8, 4)
    with pytest.raises(ValueError, match="mask_min_aspect"):
        BlockMaskSpec((4, 4), 6, 2, 16, min_aspect=2.0)
