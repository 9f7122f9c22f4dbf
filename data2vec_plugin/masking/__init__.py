"""Pure, seeded masking functions (no fairseq imports)."""
from .seeding import sample_rng
from .span import SPAN_SELECTIONS, span_mask, span_mask_1d

__all__ = ["sample_rng", "span_mask", "span_mask_1d", "SPAN_SELECTIONS"]
