"""Modality-specific encoder of data2vec 2.0: local features -> (mask, keep unmasked) -> prenet; decoder input.

Shapes: ``source`` is modality specific (waveform (B, S), image (B, C, H, W), tokens (B, T)); the local encoder
returns (B, T, D). With ``clone_batch = M`` the student sees B*M rows (sample-major: sample0-clone0,
sample0-clone1, ...). A mask is (B*M, T) bool (True = masked) with the same number of masked positions per row;
the student encoder then only sees the K = T - M_masked kept positions (+ extra tokens).
Sub-module names match the reference (``local_encoder``, ``project_features``, ``fixed_positional_encoder``,
``relative_positional_encoder``, ``context_encoder``, ``decoder``, ``extra_tokens``, ``alibi_scale``,
``alibi_bias``).
"""
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.modules import GradMultiply
from torch import nn

from .v2_blocks import AlibiCache, alibi_table, gather_alibi


@dataclass
class EncoderOptions:
    """Behavioural options of a modality encoder (explicit values, no config object)."""
    num_extra_tokens: int = 0
    init_extra_token_zero: bool = True
    mask_noise_std: float = 0.01
    encoder_zero_mask: bool = True
    keep_masked_pct: float = 0.0
    local_grad_mult: float = 1.0
    prenet_depth: int = 0
    use_alibi: bool = False
    alibi_heads: int = 1
    alibi_dims: int = 1
    alibi_distance: str = "manhattan"
    alibi_scale: float = 1.0
    learned_alibi_scale: bool = False
    alibi_scale_per_head: bool = False
    alibi_scale_per_layer: bool = False
    learned_alibi: bool = False
    alibi_max_pos: Optional[int] = None
    model_depth: int = 1
    decoder_input_dropout: float = 0.0
    add_positions_masked: bool = False
    add_positions_all: bool = False


class MaskInfo(NamedTuple):
    mask: torch.Tensor          # (B', T) bool, True = masked
    ids_restore: torch.Tensor   # (B', T) position of each original token in [kept..., masked...]
    ids_keep: torch.Tensor      # (B', K) kept positions (ascending)
    ids_masked: torch.Tensor    # (B', T - K) masked positions (ascending)


class EncoderOutput(NamedTuple):
    x: torch.Tensor                         # (B', E + K, D)
    local_features: torch.Tensor            # (B, T, D) unmasked local features (teacher input)
    padding_mask: Optional[torch.Tensor]    # (B', E + K) bool or None
    alibi: Optional[torch.Tensor]           # (B', H_a, E + K, E + K) unscaled ALiBi or None
    alibi_scale: Optional[torch.Tensor]     # (L or 1, 1, H_a or 1, 1, 1) scales for the main blocks
    mask_info: Optional[MaskInfo]


def make_mask_info(mask: torch.Tensor, num_masked: Optional[int] = None, keep_masked_pct: float = 0.0
                   ) -> MaskInfo:
    """Index tensors of a (B, T) mask with equal masked counts per row.

    ``num_masked`` avoids a device->host read when the caller knows the count (the data pipeline does).
    """
    mask = mask.bool()
    t = mask.size(1)
    m = int(mask[0].sum()) if num_masked is None else int(num_masked)
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = t - m + (round(m * keep_masked_pct) if keep_masked_pct > 0 else 0)
    return MaskInfo(mask, ids_restore, ids_shuffle[:, :keep], ids_shuffle[:, t - m:])


def learned_alibi_bias(table: torch.Tensor, positions: int) -> torch.Tensor:
    """Learned ALiBi table (1, H, P, P) -> (H, T, T) float32 bias for ``positions`` = T.

    As in the reference ``_learned_alibi_bias``: when T > P the table is replicate-padded by ceil((T - P) / 2) on
    every side of both position axes (so it is shifted, not extended at the end), then cropped to [:T, :T].
    Deviation: the reference asserts that the table is float32; here a half-precision table (``model.half()``)
    is cast to float32 instead, which keeps the gradient path into the parameter.
    """
    table = table.float()
    p = table.size(-1)
    if p < positions:
        pad = math.ceil((positions - p) / 2)
        table = F.pad(table, (pad, pad, pad, pad), mode="replicate")
    return table[0, :, :positions, :positions]


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) gathered at idx (B, K) along dim 1."""
    view = idx.view(idx.shape + (1,) * (x.dim() - 2)).expand(idx.shape + x.shape[2:])
    return torch.gather(x, 1, view)


class ModalityEncoder(nn.Module):
    def __init__(self, opts: EncoderOptions, embed_dim: int, local_encoder: nn.Module, project_features: nn.Module,
                 fixed_positional_encoder: Optional[nn.Module], relative_positional_encoder: Optional[nn.Module],
                 context_encoder: nn.Module, decoder: Optional[nn.Module], alibi_cache: AlibiCache):
        super().__init__()
        self.opts = opts
        self.local_encoder = local_encoder
        self.project_features = project_features
        self.fixed_positional_encoder = fixed_positional_encoder
        self.relative_positional_encoder = relative_positional_encoder
        self.context_encoder = context_encoder
        self.decoder = decoder
        self.alibi_cache = alibi_cache
        self.extra_tokens = None
        if opts.num_extra_tokens > 0:
            tokens = torch.zeros(1, opts.num_extra_tokens, embed_dim)
            if not opts.init_extra_token_zero:
                nn.init.normal_(tokens)
            elif opts.num_extra_tokens > 1:
                nn.init.normal_(tokens[:, 1:])
            self.extra_tokens = nn.Parameter(tokens)
        self.alibi_scale = None
        if opts.use_alibi:
            shape = (opts.prenet_depth + opts.model_depth if opts.alibi_scale_per_layer else 1, 1,
                     opts.alibi_heads if opts.alibi_scale_per_head else 1, 1, 1)
            self.alibi_scale = nn.Parameter(torch.full(shape, float(opts.alibi_scale)),
                                            requires_grad=opts.learned_alibi_scale)
        self.alibi_bias = None
        if opts.use_alibi and opts.learned_alibi:
            self.alibi_bias = nn.Parameter(self._initial_alibi_table())

    def _initial_alibi_table(self) -> torch.Tensor:
        """(1, H, P, P) fixed ALiBi table for ``alibi_max_pos`` = P positions: the init of ``learned_alibi``."""
        o = self.opts
        if o.alibi_max_pos is None or o.alibi_max_pos < 1:
            raise ValueError(f"learned_alibi needs alibi_max_pos >= 1 (learned table size), got {o.alibi_max_pos}")
        return alibi_table(o.alibi_max_pos, o.alibi_heads, o.alibi_dims, o.alibi_distance).unsqueeze(0)

    def reset_parameters(self) -> None:
        if self.decoder is not None:
            self.decoder.reset_parameters()

    # ---------------------------------------------------------------------------------------------- named steps
    def local_features(self, source: torch.Tensor) -> torch.Tensor:
        """Modality input -> (B, T, D) features (gradient scaled by ``local_grad_mult``; 0 = frozen)."""
        g = self.opts.local_grad_mult
        if g > 0:
            x = self.local_encoder(source)
            if g != 1.0:
                x = GradMultiply.apply(x, g)
        else:
            with torch.no_grad():
                x = self.local_encoder(source)
        return self.project_features(x)

    def convert_padding_mask(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        return padding_mask

    def apply_mask(self, x: torch.Tensor, info: MaskInfo, channel_mask: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
        """Masked positions of the full sequence -> zero (``encoder_zero_mask``) or N(0, mask_noise_std); then
        channels in ``channel_mask`` (B', D) -> zero (``mask_channel_prob``)."""
        m = info.mask.unsqueeze(-1)
        if self.opts.encoder_zero_mask:
            x = x * (~m).to(x.dtype)
        else:
            x = torch.where(m, torch.randn_like(x) * self.opts.mask_noise_std, x)
        if channel_mask is not None:
            x = x.masked_fill(channel_mask.unsqueeze(1), 0.0)
        return x

    def _alibi(self, t: int, batch: int, keep: Optional[torch.Tensor], device) -> Optional[torch.Tensor]:
        if self.alibi_scale is None:
            return None
        o = self.opts
        if self.alibi_bias is not None:
            table = learned_alibi_bias(self.alibi_bias, t)
        else:
            table = self.alibi_cache.get(t, o.alibi_heads, device, o.alibi_dims, o.alibi_distance)
        return gather_alibi(table, keep, batch)

    def _scales(self) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(prenet scales, main-block scales) of the clamped ALiBi scale."""
        if self.alibi_scale is None:
            return None, None
        s = self.alibi_scale.clamp_min(0)
        if s.size(0) == 1:
            return s, s
        return s[: self.opts.prenet_depth], s[self.opts.prenet_depth:]

    def contextualized_features(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor],
                                mask_info: Optional[MaskInfo] = None, remove_masked: bool = True,
                                clone_batch: int = 1, channel_mask: Optional[torch.Tensor] = None) -> EncoderOutput:
        """Local features (B, T, D) -> prenet output of the kept (or all) positions, plus extra tokens first.

        As in the reference, the full sequence is masked (and ``channel_mask`` applied) only when it is needed
        in full: as input of a relative positional encoder (audio) or when masked positions are not removed; the
        kept tokens themselves are taken from the unmasked features."""
        padding_mask = self.convert_padding_mask(x, padding_mask)
        local = x
        t = x.size(1)
        if self.fixed_positional_encoder is not None:
            x = x + self.fixed_positional_encoder(x)
        if mask_info is not None and clone_batch > 1:
            x = x.repeat_interleave(clone_batch, 0)
            padding_mask = None if padding_mask is None else padding_mask.repeat_interleave(clone_batch, 0)
        remove = mask_info is not None and remove_masked
        masked = x
        if mask_info is not None and (self.relative_positional_encoder is not None or not remove_masked):
            masked = self.apply_mask(x, mask_info, channel_mask)
            x = x if remove else masked
        if self.relative_positional_encoder is not None:
            x = x + self.relative_positional_encoder(masked)
        if remove:
            x = gather_rows(x, mask_info.ids_keep)
            padding_mask = None if padding_mask is None else gather_rows(padding_mask, mask_info.ids_keep)
        alibi = self._alibi(t, x.size(0), mask_info.ids_keep if remove else None, x.device)
        x, padding_mask, alibi = self.add_extra_tokens(x, padding_mask, alibi)
        pre_scale, main_scale = self._scales()
        x = self.context_encoder(x, padding_mask, alibi, pre_scale)
        return EncoderOutput(x, local, padding_mask, alibi, main_scale, mask_info)

    def add_extra_tokens(self, x, padding_mask, alibi):
        if self.extra_tokens is None:
            return x, padding_mask, alibi
        n = self.extra_tokens.size(1)
        x = torch.cat([self.extra_tokens.expand(x.size(0), -1, -1).to(x.dtype), x], dim=1)
        padding_mask = None if padding_mask is None else F.pad(padding_mask, (n, 0))
        alibi = None if alibi is None else F.pad(alibi, (n, 0, n, 0))
        return x, padding_mask, alibi

    def forward(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                mask_info: Optional[MaskInfo] = None, remove_masked: bool = True, clone_batch: int = 1
                ) -> EncoderOutput:
        return self.contextualized_features(self.local_features(source), padding_mask, mask_info, remove_masked,
                                            clone_batch)

    # -------------------------------------------------------------------------------------------------- decoder
    def decoder_input(self, x: torch.Tensor, info: MaskInfo) -> torch.Tensor:
        """Encoder output (B', E + K, D) -> full sequence (B', T, D): kept tokens back in place, mask tokens
        ~N(0, mask_noise_std) elsewhere (optionally plus fixed positions)."""
        o = self.opts
        x = F.dropout(x, o.decoder_input_dropout, training=self.training)
        x = x[:, o.num_extra_tokens:]
        t = info.ids_restore.size(1)
        noise = x.new_empty(x.size(0), t - x.size(1), x.size(-1)).normal_(0, o.mask_noise_std) \
            if o.mask_noise_std > 0 else x.new_zeros(x.size(0), t - x.size(1), x.size(-1))
        x = gather_rows(torch.cat([x, noise], dim=1), info.ids_restore)
        if o.add_positions_masked or o.add_positions_all:
            if self.fixed_positional_encoder is None:
                raise ValueError("decoder.add_positions_* needs fixed positions (image modality)")
            pos = self.fixed_positional_encoder(x)
            if o.add_positions_masked:
                x = x + pos * info.mask.unsqueeze(-1).to(x.dtype)
            if o.add_positions_all:
                x = x + pos
        return x

    def decode_masked(self, decoder: nn.Module, x: torch.Tensor, info: MaskInfo) -> torch.Tensor:
        """Run ``decoder`` on ``decoder_input`` -> (N, D) predictions at the masked positions (row-major)."""
        full = decoder(self.decoder_input(x, info))
        return gather_rows(full, info.ids_masked).reshape(-1, full.size(-1))

    def remove_pretraining_modules(self) -> None:
        self.decoder = None
