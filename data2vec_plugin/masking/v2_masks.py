"""data2vec 2.0 masks as pure seeded functions (numpy), one row per (sample, clone).

* ``block_mask_1d``: spans of ``length`` centred on random centres (audio frames, text tokens);
* ``block_mask_2d``: ``length x length`` blocks on the square patch grid (images), usually with ``inverse``:
  the blocks are the *kept* patches (ratio 1 - R) and everything else is masked;
* ``random_mask``: independent random positions (``length == 1``, MAE-style, text).
Centres are drawn with replacement at density (p + adjust) / block_area so that overlapping blocks cover about p;
the selection is then trimmed or grown at random to exactly ``count`` positions, so every row of a batch has
the same number of masked (and kept) positions. Padding (positions >= ``valid``) is never selected, except when
a row must grow past its valid length (``add_masks`` with a long row in the batch): the first padding positions
are then selected too. With ``inverse`` the selection is the kept set, so padding is always *masked* (never seen
by the student); the model leaves masked padding out of the loss.
``clone_masks`` makes one row per (sample id, clone index) from ``sample_rng(seed, epoch, id, clone, stream)``.
"""
from typing import List, Optional, Sequence

import numpy as np

from .seeding import sample_rng
from .span import span_mask

MASK_STREAM = 7  # sample_rng stream of v2 masks (other streams: crops, augmentation)
CHANNEL_STREAM = 8  # sample_rng stream of v2 channel masks


def _exact(sel: np.ndarray, count: int, valid: int, rng: np.random.Generator) -> np.ndarray:
    """Randomly drop or add selected positions among the first ``valid`` until exactly ``count`` are selected
    (when ``count > valid`` all valid positions and then the first padding positions are selected)."""
    if count > sel.size:
        raise ValueError(f"cannot select {count} of {sel.size} positions")
    sel = sel.copy()
    sel[valid:] = False
    n = int(sel.sum())
    if n > count:
        sel[rng.choice(np.flatnonzero(sel), n - count, replace=False)] = False
    elif n < count:
        free = np.flatnonzero(~sel[:valid])
        need = count - n
        if need <= free.size:
            sel[rng.choice(free, need, replace=False)] = True
        else:
            sel[free] = True
            sel[valid:valid + need - free.size] = True
    return sel


def _selected_count(size: int, prob: float, inverse: bool) -> int:
    return int(size * (1 - prob if inverse else prob))


def block_mask_1d(size: int, prob: float, length: int, rng: np.random.Generator, adjust: float = 0.0,
                  inverse: bool = False, valid: Optional[int] = None, count: Optional[int] = None,
                  dropout: float = 0.0) -> np.ndarray:
    """(size,) bool, True = masked.

    Args:
        prob: mask ratio R; adjust: extra centre density A; length: span length.
        inverse: select spans to keep (ratio 1 - R) and mask the rest.
        valid: positions >= valid are padding: never selected (so never masked, or always masked with
            ``inverse``) unless ``count`` exceeds ``valid``.
        count: exact number of selected positions (default int(valid * p'), p' = R or 1 - R).
        dropout: extra centres in proportion (reference ``mask_dropout``), trimmed back to ``count``.
    """
    valid = size if valid is None else valid
    p = 1 - prob if inverse else prob
    count = _selected_count(valid, prob, inverse) if count is None else count
    n_centres = int(valid * (p + adjust) / length * (1 + dropout))
    centres = rng.integers(0, max(valid, 1), n_centres)
    idx = np.clip(centres[:, None] + np.arange(length)[None, :] - length // 2, 0, max(valid - 1, 0))
    sel = np.zeros(size, dtype=bool)
    sel[idx.reshape(-1)] = True
    sel = _exact(sel, count, valid, rng)
    return ~sel if inverse else sel


def block_mask_2d(num_patches: int, prob: float, length: int, rng: np.random.Generator, adjust: float = 0.0,
                  inverse: bool = False, count: Optional[int] = None, dropout: float = 0.0) -> np.ndarray:
    """(num_patches,) bool on a sqrt(L) x sqrt(L) grid (row-major), True = masked. See ``block_mask_1d``."""
    d = int(round(np.sqrt(num_patches)))
    if d * d != num_patches:
        raise ValueError(f"block masks need a square patch grid, got {num_patches} patches")
    p = 1 - prob if inverse else prob
    count = _selected_count(num_patches, prob, inverse) if count is None else count
    n_centres = int(num_patches * (p + adjust) / length ** 2 * (1 + dropout))
    c = rng.integers(0, num_patches, n_centres)
    off = np.arange(length) - length // 2
    rows = np.clip((c // d)[:, None, None] + off[None, :, None], 0, d - 1)
    cols = np.clip((c % d)[:, None, None] + off[None, None, :], 0, d - 1)
    sel = np.zeros(num_patches, dtype=bool)
    sel[(rows * d + cols).reshape(-1)] = True
    sel = _exact(sel, count, num_patches, rng)
    return ~sel if inverse else sel


def random_mask(size: int, prob: float, rng: np.random.Generator, valid: Optional[int] = None,
                count: Optional[int] = None) -> np.ndarray:
    """(size,) bool with exactly ``count`` (default int(valid * prob)) random masked positions among ``valid``."""
    valid = size if valid is None else valid
    count = int(valid * prob) if count is None else count
    sel = np.zeros(size, dtype=bool)
    sel[rng.choice(valid, count, replace=False)] = True
    return sel


def clone_masks(kind: str, ids: Sequence[int], clones: int, size: int, prob: float, length: int, seed: int,
                epoch: int, adjust: float = 0.0, inverse: bool = False, dropout: float = 0.0,
                valid: Optional[Sequence[int]] = None, add_masks: bool = False) -> np.ndarray:
    """(len(ids) * clones, size) bool masks, sample-major (id0-clone0, id0-clone1, ...), equal counts per row.

    Args:
        kind: "1d" (spans), "2d" (image blocks) or "random" (length 1).
        valid: per-sample number of non-padding positions (default: all); the common count is computed from the
            shortest row so that every row masks the same number of positions.
        add_masks: spans ("1d") only, as in the reference: take the common count from the LONGEST row and grow
            the other rows (spilling onto padding if a row is too short) instead of trimming to the shortest.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {prob}")
    valid = [size] * len(ids) if valid is None else [int(v) for v in valid]
    shortest = min(valid) if valid else size
    span_base = max(valid) if (add_masks and valid) else shortest
    rows: List[np.ndarray] = []
    for i, sid in enumerate(ids):
        for c in range(clones):
            rng = sample_rng(seed, epoch, int(sid), c, MASK_STREAM)
            if kind == "2d":
                rows.append(block_mask_2d(size, prob, length, rng, adjust, inverse, dropout=dropout))
            elif kind == "random" or length <= 1:
                rows.append(random_mask(size, prob, rng, valid[i], int(shortest * prob)))
            elif kind == "1d":
                count = _selected_count(span_base, prob, inverse)
                rows.append(block_mask_1d(size, prob, length, rng, adjust, inverse, valid[i], count, dropout))
            else:
                raise ValueError(f"unknown mask kind '{kind}', choose 1d, 2d or random")
    return np.stack(rows) if rows else np.zeros((0, size), dtype=bool)


def channel_masks(ids: Sequence[int], clones: int, channels: int, prob: float, length: int, seed: int,
                  epoch: int) -> np.ndarray:
    """(len(ids) * clones, channels) bool channel masks (True = zeroed), sample-major like ``clone_masks``.

    Static spans of ``length`` channels at ratio ``prob`` with equal counts per row, as the reference's
    ``compute_mask_indices((B, C), None, mask_channel_prob, mask_channel_length)``, but seeded per (id, clone).
    """
    if channels <= 0:
        raise ValueError("channel masks need the feature dimension (channels > 0)")
    rngs = [sample_rng(seed, epoch, int(sid), c, CHANNEL_STREAM) for sid in ids for c in range(clones)]
    return span_mask([channels] * len(rngs), channels, prob, min(length, channels), rngs)
