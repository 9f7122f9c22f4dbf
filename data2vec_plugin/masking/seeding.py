"""Reproducible per-sample random generators: every mask is a function of (seed, epoch, sample id[, clone])."""

import numpy as np


def sample_rng(seed: int, epoch: int, sample_id: int, *extra: int) -> np.random.Generator:
    """numpy Generator seeded by SeedSequence(seed, epoch, id, ...): independent of process, worker and order."""
    key = [int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(sample_id) & 0xFFFFFFFFFFFF]
    key += [int(e) & 0xFFFFFFFF for e in extra]
    return np.random.default_rng(np.random.SeedSequence(key))

