"""RoBERTa/BERT dynamic token masking as a pure, seeded function (numpy; no fairseq imports).

Of the maskable positions (everything except special symbols), ``round_prob(mask_prob * n)`` distinct positions are
selected (probabilistic rounding, at least one when ``n > 0`` and ``mask_prob > 0``). Each selected position
independently becomes a random token with probability ``random_token_prob``, stays unchanged with probability
``leave_unmasked_prob``, and becomes ``<mask>`` otherwise (defaults 15% / 10% / 10% => 80/10/10). The caller passes
a generator from ``sample_rng(seed, epoch, sample_id, k)`` so masks are reproducible and change every epoch.
"""
from typing import NamedTuple, Optional

import numpy as np


class TokenMask(NamedTuple):
    tokens: np.ndarray     # (T,) input tokens after masking
    selected: np.ndarray   # (T,) bool, positions chosen for prediction
    kind: np.ndarray       # (T,) int8: 0 = not selected, 1 = <mask>, 2 = random token, 3 = unchanged


def check_mask_probs(mask_prob: float, leave_unmasked_prob: float, random_token_prob: float) -> None:
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if leave_unmasked_prob < 0 or random_token_prob < 0 or leave_unmasked_prob + random_token_prob > 1.0:
        raise ValueError(f"leave_unmasked_prob ({leave_unmasked_prob}) and random_token_prob ({random_token_prob}) "
                         "must be >= 0 and sum to at most 1")


def token_mask(tokens: np.ndarray, maskable: np.ndarray, rng: np.random.Generator, mask_idx: int,
               replacement_probs: Optional[np.ndarray], mask_prob: float = 0.15, leave_unmasked_prob: float = 0.1,
               random_token_prob: float = 0.1) -> TokenMask:
    """Mask one sequence.

    Args:
        tokens: (T,) int token ids.
        maskable: (T,) bool, False at special symbols (never selected).
        rng: numpy Generator (``sample_rng(seed, epoch, id, k)``).
        mask_idx: id of ``<mask>``.
        replacement_probs: (V,) probabilities of random replacement tokens (0 at special symbols); required when
            ``random_token_prob > 0``.
        mask_prob, leave_unmasked_prob, random_token_prob: see module docstring.
    Returns: ``TokenMask``.
    """
    check_mask_probs(mask_prob, leave_unmasked_prob, random_token_prob)
    candidates = np.flatnonzero(maskable)
    num = int(mask_prob * len(candidates) + rng.random())
    if mask_prob > 0 and len(candidates) > 0:
        num = min(max(num, 1), len(candidates))
    chosen = rng.choice(candidates, size=num, replace=False) if num > 0 else candidates[:0]
    u = rng.random(num)
    kind = np.zeros(len(tokens), dtype=np.int8)
    kind[chosen] = np.where(u < random_token_prob, 2, np.where(u < random_token_prob + leave_unmasked_prob, 3, 1))
    out = np.array(tokens, copy=True)
    out[kind == 1] = mask_idx
    n_random = int((kind == 2).sum())
    if n_random:
        if replacement_probs is None:
            raise ValueError("random_token_prob > 0 needs replacement_probs")
        out[kind == 2] = rng.choice(len(replacement_probs), size=n_random, p=replacement_probs)
    return TokenMask(out, kind > 0, kind)
