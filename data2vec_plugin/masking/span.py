"""wav2vec 2.0 / data2vec span masking over frames or tokens, as pure seeded functions.

Semantics follow fairseq's ``compute_mask_indices`` (static/uniform/normal/poisson span lengths, probabilistic
rounding of the span count, padding never masked, ``require_same_masks`` equalising the count per row,
``mask_dropout``), but every random draw comes from a generator the caller passes in, so a mask is a function of
(seed, epoch, sample id) and can be computed in dataloader workers.
"""
from typing import List, Sequence

import numpy as np

SPAN_SELECTIONS = ("static", "uniform", "normal", "poisson")


def _span_lengths(rng: np.random.Generator, n: int, length: int, selection: str, other: float) -> np.ndarray:
    if selection == "static":
        return np.full(n, length, dtype=np.int64)
    if selection == "uniform":
        return rng.integers(int(other), length * 2 + 1, size=n)
    if selection == "normal":
        return np.maximum(1, np.round(rng.normal(length, other, size=n))).astype(np.int64)
    if selection == "poisson":
        return np.round(rng.poisson(length, size=n)).astype(np.int64)
    raise ValueError(f"unknown mask_selection '{selection}', choose one of {SPAN_SELECTIONS}")


def span_mask_1d(size: int, mask_prob: float, mask_length: int, rng: np.random.Generator, min_masks: int = 0,
                 selection: str = "static", mask_other: float = 0.0, no_overlap: bool = False,
                 min_space: int = 0) -> np.ndarray:
    """Sorted indices (< ``size``) masked in one sequence of ``size`` valid positions."""
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    num = int(mask_prob * size / float(mask_length) + rng.random())
    num = max(min_masks, num)
    if num == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = _span_lengths(rng, num, mask_length, selection, mask_other)
    if lengths.sum() == 0:
        lengths[0] = min(mask_length, size - 1)
    if no_overlap:
        return _non_overlapping(size, lengths, min_space, rng)
    min_len = int(lengths.min())
    if size - min_len <= num:
        min_len = size - num - 1
    num = min(num, max(size - min_len, 1))
    starts = rng.choice(max(size - min_len, 1), num, replace=False)
    idx = (starts[:, None] + np.arange(int(lengths.max()))[None, :])
    idx = idx[np.arange(idx.shape[1])[None, :] < lengths[:num, None]]
    return np.unique(idx[idx < size])


def _non_overlapping(size: int, lengths: np.ndarray, min_space: int, rng: np.random.Generator) -> np.ndarray:
    """Place spans one by one in free segments, keeping ``min_space`` between them (fairseq's no_overlap)."""
    parts = [(0, size)]
    out: List[int] = []
    for length in sorted(lengths.tolist(), reverse=True):
        sizes = np.array([e - s - length - min_space for s, e in parts], dtype=np.int64)
        sizes[sizes < 0] = 0
        if sizes.sum() == 0:
            break
        k = int(rng.choice(len(parts), p=sizes / sizes.sum()))
        s, e = parts.pop(k)
        start = int(rng.integers(s, e - length - min_space + 1)) if e - length - min_space > s else s
        out.extend(range(start, start + length))
        if start - s - min_space >= length:
            parts.append((s, start - min_space + 1))
        if e - start - length - min_space > length:
            parts.append((start + length + min_space, e))
    return np.unique(np.asarray(out, dtype=np.int64))


def span_mask(valid_lengths: Sequence[int], total_length: int, mask_prob: float, mask_length: int,
              rngs: Sequence[np.random.Generator],
              min_masks: int = 0, selection: str = "static", mask_other: float = 0.0,
              no_overlap: bool = False, min_space: int = 0, require_same_masks: bool = True,
              mask_dropout: float = 0.0) -> np.ndarray:
    """(B, total_length) bool mask, True = masked. Row i only masks positions < valid_lengths[i].

    ``rngs[i]`` drives row i (so a row's spans do not depend on its batch mates). With ``require_same_masks`` every row keeps a random
    subset of its spans' positions so that all rows mask the same count (the smallest one), as the reference does.
    """
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    rows = [span_mask_1d(int(n), mask_prob, mask_length, rng, min_masks, selection, mask_other, no_overlap,
                         min_space) for n, rng in zip(valid_lengths, rngs)]
    mask = np.zeros((len(rows), total_length), dtype=bool)
    target = min((len(r) for r in rows), default=0)
    for i, (idx, rng) in enumerate(zip(rows, rngs)):
        if require_same_masks and len(idx) > target:
            idx = np.sort(rng.choice(idx, target, replace=False))
        if mask_dropout > 0 and len(idx) > 0:
            n_drop = int(round(len(idx) * mask_dropout))
            if n_drop > 0:
                idx = np.delete(idx, rng.choice(len(idx), n_drop, replace=False))
        mask[i, idx] = True
    return mask
