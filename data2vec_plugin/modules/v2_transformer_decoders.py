"""Transformer decoders of data2vec 2.0 for the image modality (alternatives to the conv ``Decoder2d``).

* ``TransformerDecoder`` (``transformer_decoder: true``, ``enc_dec_transformer: false``): the full sequence built by
  ``ModalityEncoder.decoder_input`` (kept tokens back in place, mask tokens elsewhere) -> ``input_proj``
  Linear(D, d) -> a ``BlockEncoder`` of self-attention ``AltBlock``s of width d (8 heads, no norm) -> ``proj``
  Linear(d, D). Output (B, T, D); predictions are read at the masked positions.
* ``EncDecTransformerDecoder`` (both options true): queries = fixed positions of the masked patches (B, M, D),
  keys/values = the student's encoder output for the kept patches (B, K, D). ``input_proj`` Linear(D, d) on the
  queries -> ``EncDecBlock``s (cross-attention only, post-LN, 8 heads, qkv bias; the first block has no attention
  residual) -> ``proj`` Linear(d, D). Output (B, M, D): one row per masked patch, ascending position order.

Parameter names equal the reference (``input_proj``, ``encoder.blocks.{i}.*``, ``blocks.{i}.attn.{q_proj,kv_proj,
proj}``, ``blocks.{i}.norm{1,2}``, ``blocks.{i}.mlp.fc{1,2}``, ``proj``) so reference checkpoints load unchanged.
Attention uses ``F.scaled_dot_product_attention`` (same maths as the reference's explicit softmax).
Deliberate deviation: ``EncDecBlock`` only implements the post-LN form (the reference decoder never builds the
pre-LN one). Facts from fairseq examples/data2vec/models/modalities/modules.py (not copied).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import nn

from .v2_blocks import BlockEncoder, Mlp

DECODER_HEADS = 8  # the reference hard-codes 8 heads for both transformer decoders


class TransformerDecoder(nn.Module):
    """Self-attention decoder over the full (B, T, D) sequence -> (B, T, D).

    Args:
        input_dim: model width D.
        decoder_dim: decoder width d.
        encoder: ``BlockEncoder`` of ``AltBlock(d, 8)`` blocks without norm (built with the model's block factory).
    """

    def __init__(self, input_dim: int, decoder_dim: int, encoder: BlockEncoder):
        super().__init__()
        self.input_proj = nn.Linear(input_dim, decoder_dim)
        self.encoder = encoder
        self.proj = nn.Linear(decoder_dim, input_dim)

    def reset_parameters(self) -> None:
        """BERT init of every sub-module (reference ``reset_parameters``)."""
        self.apply(init_bert_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        x = self.encoder(x, None, None, None)
        return self.proj(x)


class EncDecAttention(nn.Module):
    """Cross-attention: queries (B, M, d) attend to keys/values projected from (B, K, D_kv)."""

    def __init__(self, q_dim: int, kv_dim: int, num_heads: int = DECODER_HEADS, qkv_bias: bool = True):
        super().__init__()
        if q_dim % num_heads:
            raise ValueError(f"decoder_dim {q_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(q_dim, q_dim, bias=qkv_bias)
        self.kv_proj = nn.Linear(kv_dim, 2 * q_dim, bias=qkv_bias)
        self.proj = nn.Linear(q_dim, q_dim)

    def split_heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """(B, L, parts * d) -> (parts, B, H, L, d / H)."""
        b, n, _ = x.shape
        return x.view(b, n, parts, self.num_heads, -1).permute(2, 0, 3, 1, 4)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        b, m, c = q.shape
        query = self.split_heads(self.q_proj(q), 1)[0]
        key, value = self.split_heads(self.kv_proj(kv), 2)
        bias = None
        if padding_mask is not None:
            bias = torch.zeros(padding_mask.shape, dtype=query.dtype, device=query.device)
            bias = bias.masked_fill(padding_mask, float("-inf"))[:, None, None, :]
        y = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(b, m, c))


class EncDecBlock(nn.Module):
    """Post-LN cross-attention block: ``r = norm1([q +] attn(q, kv))``; ``out = norm2(r + mlp(r))``.

    Args:
        q_dim, kv_dim: query (decoder) and key/value (encoder) widths.
        num_heads: attention heads.
        mlp_ratio: FFN hidden width = ``q_dim * mlp_ratio``.
        first_residual: add the query to the attention output (the reference disables it in the first block).
    """

    def __init__(self, q_dim: int, kv_dim: int, num_heads: int = DECODER_HEADS, mlp_ratio: float = 4.0,
                 first_residual: bool = True):
        super().__init__()
        self.first_residual = first_residual
        self.norm1 = nn.LayerNorm(q_dim)
        self.attn = EncDecAttention(q_dim, kv_dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(q_dim)
        self.mlp = Mlp(q_dim, int(q_dim * mlp_ratio))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        x = self.attn(q, kv, padding_mask)
        if self.first_residual:
            x = x + q
        r = self.norm1(x)
        return self.norm2(r + self.mlp(r))


class EncDecTransformerDecoder(nn.Module):
    """Queries (B, M, D) + keys/values (B, K, D) -> predictions (B, M, D).

    Args:
        input_dim: model width D (queries in, keys/values, output).
        decoder_dim: decoder width d.
        layers: number of ``EncDecBlock``s.
    """

    def __init__(self, input_dim: int, decoder_dim: int, layers: int):
        super().__init__()
        self.input_proj = nn.Linear(input_dim, decoder_dim)
        self.blocks = nn.Sequential(*[
            EncDecBlock(decoder_dim, input_dim, DECODER_HEADS, 4.0, first_residual=i > 0) for i in range(layers)])
        self.proj = nn.Linear(decoder_dim, input_dim)

    def reset_parameters(self) -> None:
        """BERT init of every sub-module (reference ``reset_parameters``)."""
        self.apply(init_bert_params)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        x = self.input_proj(q)
        for block in self.blocks:
            x = block(x, kv, padding_mask)
        return self.proj(x)
