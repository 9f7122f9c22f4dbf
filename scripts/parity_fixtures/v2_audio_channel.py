"""data2vec 2.0 audio fixture with channel masking (v2_audio_channel)."""
import torch

from .common import SEED, record_loss_inputs
from .v2_audio import make_v2_audio

V2_CHANNEL_PROB = 0.3
V2_CHANNEL_LENGTH = 4


def v2_channel_mask(rows, channels, seed=SEED + 13):
    """(rows, channels) bool channel mask drawn once with the reference's own compute_mask_indices. Its RNG is
    np.random.default_rng(seed_i) per row, fresh OS entropy unless seed/epoch/indices are all given (the reference's
    channel call gives none): pass them so the fixture is reproducible (seed_i = hash((seed, 1, row)) % 1e6)."""
    from fairseq.data.data_utils import compute_mask_indices

    m = compute_mask_indices((rows, channels), None, V2_CHANNEL_PROB, V2_CHANNEL_LENGTH,
                             seed=seed, epoch=1, indices=torch.arange(rows))
    m = torch.from_numpy(m).bool()
    assert m.any(1).all() and not m.all(1).any() and not (m == m[:1]).all(), m
    return m


class reference_fixed_channel_mask:
    """Inside: the reference's `compute_mask_indices` as imported in modalities/base.py returns `mask` (as numpy) for
    the channel-mask call of ModalitySpecificEncoder.apply_mask (padding_mask None, shape (B', embed_dim)); every
    other call goes to the original. Counts the replaced calls; restored on exit."""

    def __init__(self, mask):
        self.mask = mask
        self.calls = 0

    def __enter__(self):
        from examples.data2vec.models.modalities import base

        self.orig = orig = base.compute_mask_indices

        def compute_mask_indices(shape, padding_mask, *args, **kwargs):
            if padding_mask is None and tuple(shape) == tuple(self.mask.shape):
                self.calls += 1
                return self.mask.numpy().copy()
            return orig(shape, padding_mask, *args, **kwargs)

        base.compute_mask_indices = compute_mask_indices
        return self

    def __exit__(self, *exc):
        from examples.data2vec.models.modalities import base

        base.compute_mask_indices = self.orig
        return False


def check_channel_mask_matters(model, fwd_kwargs, mask):
    """The fixed channel mask must change the student's predictions (it only reaches them through the pos conv)."""
    from examples.data2vec.models import data2vec2 as ref

    enc_cfg = model.modality_encoders["AUDIO"].modality_cfg
    preds = []
    for prob in (V2_CHANNEL_PROB, 0.0):
        enc_cfg.mask_channel_prob = prob
        with record_loss_inputs(ref) as rec, torch.no_grad():
            model(**fwd_kwargs, mask=True, precomputed_mask=mask.clone())
        preds.append(rec.calls[-1][0])
    assert not torch.allclose(preds[0], preds[1], atol=1e-4), "channel mask has no effect"


def make_v2_audio_channel(out_dir):
    """v2 audio with mask_channel_prob > 0; the reference's random channel mask is replaced by a fixed one."""
    cm = v2_channel_mask(4, 32)  # (B * clone_batch, embed_dim)
    with reference_fixed_channel_mask(cm) as fixed:
        path = make_v2_audio(
            out_dir,
            "v2_audio_channel",
            dict(mask_channel_prob=V2_CHANNEL_PROB, mask_channel_length=V2_CHANNEL_LENGTH),
            f" Channel masking: mask_channel_prob={V2_CHANNEL_PROB}, mask_channel_length={V2_CHANNEL_LENGTH}; the "
            "reference draws the (B*clone_batch, embed_dim) channel mask in ModalitySpecificEncoder.apply_mask with "
            "compute_mask_indices((B', C), None, p, len), unseeded (np.random.default_rng(None) per row): that call "
            "was patched (modalities/base.py's compute_mask_indices) to return the fixed mask stored in "
            "'channel_mask' (True = channel zeroed, rows ordered like the mask rows), drawn once by "
            "compute_mask_indices(seed=SEED+13, epoch=1, indices=rows). The reference zeroes those channels (every "
            "time step) of the masked full sequence that feeds the relative positional conv; the kept tokens come "
            "from the unmasked features. Pass it as forward(channel_mask=...).",
            extra={"channel_mask": cm},
            check=check_channel_mask_matters,
        )
    # eval + train masked forwards, the reload check and the 2 forwards of check_channel_mask_matters (1 with prob 0)
    assert fixed.calls == 4, fixed.calls
    return path
