"""data2vec 2.0 mask statistics: ratio, equal counts, contiguous kept blocks, clones differ, determinism."""
import numpy as np
import pytest
from scipy import ndimage

from data2vec_plugin.masking.seeding import sample_rng
from data2vec_plugin.masking.v2_masks import block_mask_1d, block_mask_2d, clone_masks


def test_image_inverse_block_mask_ratio_and_kept_blocks():
    m = clone_masks("2d", range(32), 4, 196, 0.8, 3, seed=1, epoch=1, adjust=0.07, inverse=True)
    assert m.shape == (128, 196) and m.dtype == bool
    assert (m.sum(1) == 196 - int(196 * 0.2)).all()  # 157 masked, 39 kept in every row (reference: 157/196)
    sizes = []
    for row in m:
        labels, n = ndimage.label(~row.reshape(14, 14))
        sizes += [int((labels == i).sum()) for i in range(1, n + 1)]
    # kept patches come in blocks: most kept cells sit in connected groups of >= 3 cells
    assert np.mean(np.array(sizes) >= 3) > 0.5 and np.mean(sizes) > 4


def test_audio_span_mask_ratio_equal_counts_and_spans():
    m = clone_masks("1d", [3, 9, 27], 8, 499, 0.5, 5, seed=0, epoch=2, adjust=0.05)
    assert (m.sum(1) == int(499 * 0.5)).all()
    runs = np.diff(np.concatenate([np.zeros((len(m), 1)), m, np.zeros((len(m), 1))], 1), axis=1)
    mean_run = m.sum() / (runs == 1).sum()
    assert mean_run > 3  # spans, not isolated frames


def test_text_random_mask_respects_padding_and_counts():
    m = clone_masks("random", [0, 1], 2, 12, 0.48, 1, seed=0, epoch=1, valid=[12, 9])
    assert (m.sum(1) == int(9 * 0.48)).all()
    assert not m[2:, 9:].any()  # padding of sample 1 (rows 2, 3) never masked


def test_padding_never_masked_1d():
    m = clone_masks("1d", [5, 6], 3, 100, 0.5, 5, seed=0, epoch=1, valid=[100, 60])
    assert not m[3:, 60:].any() and (m.sum(1) == 30).all()


def test_clones_differ_and_masks_are_deterministic():
    a = clone_masks("2d", [7, 8], 3, 196, 0.8, 3, seed=5, epoch=2, adjust=0.07, inverse=True)
    b = clone_masks("2d", [7, 8], 3, 196, 0.8, 3, seed=5, epoch=2, adjust=0.07, inverse=True)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[3])
    c = clone_masks("2d", [7, 8], 3, 196, 0.8, 3, seed=5, epoch=3, adjust=0.07, inverse=True)
    assert not np.array_equal(a, c)
    # a row depends only on (seed, epoch, id, clone): same id in another batch -> same rows
    d = clone_masks("2d", [8], 3, 196, 0.8, 3, seed=5, epoch=2, adjust=0.07, inverse=True)
    assert np.array_equal(a[3:], d)


@pytest.mark.parametrize("prob,adjust", [(0.5, 0.0), (0.65, 0.05)])
def test_exact_count_single_rows(prob, adjust):
    for i in range(20):
        r1 = block_mask_1d(200, prob, 10, sample_rng(0, 0, i), adjust)
        r2 = block_mask_2d(64, prob, 2, sample_rng(0, 1, i), adjust)
        assert r1.sum() == int(200 * prob) and r2.sum() == int(64 * prob)


def test_invalid_prob_raises():
    with pytest.raises(ValueError):
        clone_masks("1d", [0], 1, 10, 1.0, 2, seed=0, epoch=0)
