"""RoBERTa dynamic masking: statistics, specials, determinism per (seed, epoch, id), dataset batch layout."""
import numpy as np
import pytest
import torch
from fairseq.data import Dictionary

from data2vec_plugin.data.text_dataset import TokenMaskDataset
from data2vec_plugin.masking import sample_rng
from data2vec_plugin.masking.token import token_mask

V, MASK = 50, 49


def _tokens(n, t, rng):
    x = rng.integers(4, MASK, size=(n, t))
    x[:, 0], x[:, -1] = 0, 2  # <s> ... </s>
    return x


def _probs():
    p = np.ones(V)
    p[:4] = 0
    p[MASK] = 0
    return p / p.sum()


def test_mask_statistics_80_10_10_and_specials_never_masked():
    x = _tokens(400, 128, np.random.default_rng(0))
    kinds, n_maskable = [], 0
    for i, row in enumerate(x):
        maskable = (row >= 4) & (row != MASK)
        m = token_mask(row, maskable, sample_rng(1, 1, i, 0), MASK, _probs())
        assert not m.selected[~maskable].any()              # <s>, </s> never selected
        assert np.array_equal(m.tokens[~m.selected], row[~m.selected])
        assert (m.tokens[m.kind == 1] == MASK).all()
        assert (m.tokens[m.kind == 2] >= 4).all() and (m.tokens[m.kind == 2] != MASK).all()
        assert (m.tokens[m.kind == 3] == row[m.kind == 3]).all()
        kinds.append(m.kind[m.selected])
        n_maskable += maskable.sum()
    k = np.concatenate(kinds)
    assert abs(len(k) / n_maskable - 0.15) < 0.005
    assert abs((k == 1).mean() - 0.8) < 0.03
    assert abs((k == 2).mean() - 0.1) < 0.02
    assert abs((k == 3).mean() - 0.1) < 0.02


def test_mask_is_deterministic_per_seed_epoch_id():
    row = _tokens(1, 200, np.random.default_rng(1))[0]
    maskable = (row >= 4)

    def sel(seed, epoch, sid):
        return token_mask(row, maskable, sample_rng(seed, epoch, sid, 0), MASK, _probs()).tokens

    assert np.array_equal(sel(1, 1, 7), sel(1, 1, 7))
    assert not np.array_equal(sel(1, 1, 7), sel(1, 2, 7))   # new masks every epoch
    assert not np.array_equal(sel(1, 1, 7), sel(1, 1, 8))
    assert not np.array_equal(sel(1, 1, 7), sel(2, 1, 7))


def test_short_sequence_gets_one_mask_and_bad_probs_raise():
    row = np.array([0, 10, 2])
    m = token_mask(row, row >= 4, sample_rng(0, 1, 0), MASK, _probs())
    assert m.selected.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="sum to at most 1"):
        token_mask(row, row >= 4, sample_rng(0, 1, 0), MASK, _probs(), 0.15, 0.6, 0.6)


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = [torch.tensor(r) for r in rows]
        self.sizes = np.array([len(r) for r in rows])

    def __getitem__(self, i):
        return self.rows[i]

    def __len__(self):
        return len(self.rows)


def test_dataset_batch_layout_and_epochs():
    d = Dictionary()
    for i in range(40):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    rng = np.random.default_rng(0)
    rows = [np.concatenate([[0], rng.integers(4, 44, size=n), [2]]) for n in (30, 20, 25)]
    ds = TokenMaskDataset(_Blocks(rows), d, seed=3)
    b = ds.collater([ds[i] for i in range(3)])
    src, tgt = b["net_input"]["src_tokens"], b["net_input"]["target_tokens"]
    assert src.shape == tgt.shape == (3, 32) and torch.equal(b["target"], tgt)
    assert b["net_input"]["src_lengths"].tolist() == [32, 22, 27]
    sel = tgt.ne(d.pad())
    orig = torch.full_like(src, d.pad())
    for i, r in enumerate(rows):
        orig[i, :len(r)] = torch.tensor(r)
    assert torch.equal(torch.where(sel, tgt, src), orig)   # the teacher's sentence is recoverable
    assert not sel[:, 0].any() and sel.any(1).all()
    first = ds[0]["source"]
    ds.set_epoch(2)
    assert not torch.equal(ds[0]["source"], first)
    ds.set_epoch(1)
    assert torch.equal(ds[0]["source"], first)
