"""Image modality encoder of data2vec 2.0: the generic ``ModalityEncoder`` plus the encoder-decoder transformer
decoder's input (reference ``ImageEncoder.decoder_input`` with ``transformer_decoder`` and ``enc_dec_transformer``).

For ``EncDecTransformerDecoder`` the decoder sees two tensors instead of the full sequence:
* queries ``q`` (B', M, D): the fixed 2-D sin-cos positions of the M masked patches (``ids_masked``, ascending, i.e.
  the reference's row-major ``pos[mask]`` order, which is also the order of the targets);
* keys/values ``kv`` (B', K, D): the student's encoder output without extra tokens (after the decoder input
  dropout), plus — with ``decoder.add_positions_all`` — the positions of the kept patches (``ids_keep``, the order
  in which the encoder saw them).
The decoder's output then already holds one row per masked patch: ``decode_masked`` only flattens it.

Deliberate deviations from the reference: (1) the input dropout is not in-place, so it does not leak into the
encoder output used afterwards (cls loss, a second decoder); (2) the kept positions are gathered at ``ids_keep``
rather than selected with ``pos[~mask]``, which is the same for ``keep_masked_pct = 0`` (the reference fails
otherwise) and stays aligned with ``kv`` whatever the sort order; (3) a ``shared_decoder`` next to an enc-dec image
decoder gets the ordinary full-sequence input (the reference hands it (q, kv) and fails).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .v2_modality import MaskInfo, ModalityEncoder, gather_rows
from .v2_transformer_decoders import EncDecTransformerDecoder


class ImageModalityEncoder(ModalityEncoder):
    """``ModalityEncoder`` whose encoder-decoder transformer decoder is fed (masked positions, kept tokens)."""

    def enc_dec_input(self, x: torch.Tensor, info: MaskInfo) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B', E + K, D) -> (q (B', M, D), kv (B', K, D))."""
        o = self.opts
        if self.fixed_positional_encoder is None:
            raise ValueError("enc_dec_transformer needs modalities.image.fixed_positions=true")
        x = F.dropout(x, o.decoder_input_dropout, training=self.training)
        kv = x[:, o.num_extra_tokens:]
        pos = self.fixed_positional_encoder(kv).expand(kv.size(0), -1, -1)
        if o.add_positions_all:
            kv = kv + gather_rows(pos, info.ids_keep)
        return gather_rows(pos, info.ids_masked), kv

    def decode_masked(self, decoder: nn.Module, x: torch.Tensor, info: MaskInfo) -> torch.Tensor:
        """(N, D) predictions at the masked positions; the enc-dec decoder predicts only those."""
        if not isinstance(decoder, EncDecTransformerDecoder):
            return super().decode_masked(decoder, x, info)
        out = decoder(*self.enc_dec_input(x, info))
        return out.reshape(-1, out.size(-1))
