import numpy as np
import pytest

from data2vec_plugin.masking import sample_rng, span_mask


def rngs(n, seed=1, epoch=1, offset=0):
    return [sample_rng(seed, epoch, i + offset) for i in range(n)]


def test_ratio_close_to_reference_on_long_inputs():
    # the reference gives ~49% masked frames at p=0.65, L=10 (spans overlap)
    m = span_mask([5000] * 8, 5000, 0.65, 10, rngs(8), min_masks=1)
    assert 0.46 < m.mean() < 0.52


def test_padding_never_masked_and_same_count_per_row():
    lengths = [200, 150, 100]
    m = span_mask(lengths, 200, 0.65, 10, rngs(3), min_masks=1, require_same_masks=True)
    for i, n in enumerate(lengths):
        assert not m[i, n:].any()
    counts = m.sum(1)
    assert len(set(counts.tolist())) == 1 and counts[0] > 0


def test_deterministic_per_seed_epoch_id():
    a = span_mask([300] * 2, 300, 0.65, 10, rngs(2))
    b = span_mask([300] * 2, 300, 0.65, 10, rngs(2))
    c = span_mask([300] * 2, 300, 0.65, 10, rngs(2, epoch=2))
    d = span_mask([300] * 2, 300, 0.65, 10, rngs(2, seed=2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_row_independent_of_batch_mates_without_equalising():
    a = span_mask([300, 300], 300, 0.5, 5, [sample_rng(1, 1, 7), sample_rng(1, 1, 8)], require_same_masks=False)
    b = span_mask([300], 300, 0.5, 5, [sample_rng(1, 1, 7)], require_same_masks=False)
    assert np.array_equal(a[0], b[0])


def test_mask_dropout_and_bad_args():
    full = span_mask([400], 400, 0.5, 10, rngs(1))
    dropped = span_mask([400], 400, 0.5, 10, rngs(1), mask_dropout=0.5)
    assert dropped.sum() == full.sum() - round(full.sum() * 0.5)
    with pytest.raises(ValueError, match="mask_prob"):
        span_mask([10], 10, 1.5, 2, rngs(1))
    with pytest.raises(ValueError, match="mask_selection"):
        span_mask([100], 100, 0.5, 5, rngs(1), selection="bogus")


@pytest.mark.parametrize("selection", ["uniform", "normal", "poisson"])
def test_other_span_selections_work(selection):
    m = span_mask([500] * 2, 500, 0.5, 10, rngs(2), selection=selection, mask_other=2)
    assert 0.1 < m.mean() < 0.9


def test_no_overlap_keeps_min_space():
    m = span_mask([500], 500, 0.3, 5, rngs(1), no_overlap=True, min_space=2, require_same_masks=False)[0]
    idx = np.flatnonzero(m)
    gaps = np.diff(idx)
    assert m.sum() > 0 and all(g == 1 or g > 2 for g in gaps)
