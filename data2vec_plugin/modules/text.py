"""Text token encoder for data2vec text (v1): token + positional embeddings, embedding LayerNorm, transformer.

Parameter names match fairseq's ``TransformerEncoder`` as used by the reference ``Data2VecTextEncoder``
(``embed_tokens``, ``embed_positions``, ``layernorm_embedding``, ``layers.{i}.*``, ``layer_norm`` (pre-LN only),
``version`` buffer), so reference state dicts and the reference teacher state (``encoder._ema``) load unchanged.
Positions come from fairseq's ``PositionalEmbedding`` (learned: ``max_positions + pad + 1`` rows, numbered from
``pad + 1`` over non-pad tokens). Tensors are batch-first (B, T, C).
"""
import math
from typing import List, NamedTuple, Optional

import torch
from fairseq.modules import PositionalEmbedding
from torch import nn

from .transformer import TransformerLayer, run_layers


class TextEncoderOutput(NamedTuple):
    x: torch.Tensor                      # (B, T, C) final output (pads zeroed only at the input)
    layer_results: List[torch.Tensor]    # per-layer FFN outputs (B, T, C), pads zeroed, layers >= min_layer
    padding_mask: torch.Tensor           # (B, T) bool, True = pad
    embedding: torch.Tensor              # (B, T, C) scaled token embeddings (reference "encoder_embedding")
    inner_states: Optional[List[torch.Tensor]]  # embeddings output then every layer output, if requested


class TextTokenEncoder(nn.Module):
    """Token encoder: ``scale * embed_tokens + embed_positions`` -> [LayerNorm] -> dropout -> layers.

    Args:
        vocab_size, padding_idx: dictionary size and pad index.
        dim, ffn_dim, layers, heads: transformer size.
        max_positions: longest sequence supported by the positional embedding.
        learned_pos: learned (True) or sinusoidal positions; no_positions disables them.
        layernorm_embedding: LayerNorm after the embeddings (reference ``layernorm_embedding``).
        scale_embedding: multiply token embeddings by sqrt(dim) (False = the reference's no_scale_embedding).
        normalize_before: pre-LN layers plus a final ``layer_norm`` (the paper uses post-LN).
        dropout, attention_dropout, activation_dropout, activation_fn, layerdrop: as in fairseq.
    """

    def __init__(self, vocab_size: int, padding_idx: int, dim: int, ffn_dim: int, layers: int, heads: int,
                 max_positions: int, learned_pos: bool = True, no_positions: bool = False,
                 layernorm_embedding: bool = True, scale_embedding: bool = False, normalize_before: bool = False,
                 dropout: float = 0.1, attention_dropout: float = 0.0, activation_dropout: float = 0.0,
                 activation_fn: str = "gelu", layerdrop: float = 0.0):
        super().__init__()
        self.register_buffer("version", torch.Tensor([3]))
        self.padding_idx = padding_idx
        self.layerdrop = layerdrop
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(vocab_size, dim, padding_idx)
        self.embed_positions = (None if no_positions else
                                PositionalEmbedding(max_positions, dim, padding_idx, learned=learned_pos))
        self.layernorm_embedding = nn.LayerNorm(dim) if layernorm_embedding else None
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, ffn_dim, heads, dropout, attention_dropout, activation_dropout, activation_fn,
                             layer_norm_first=normalize_before) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(dim) if normalize_before else None

    def embed(self, tokens: torch.Tensor):
        """(B, T) tokens -> (embedded input (B, T, C), scaled token embeddings, padding mask (B, T))."""
        padding_mask = tokens.eq(self.padding_idx)
        token_emb = self.embed_scale * self.embed_tokens(tokens)
        x = token_emb if self.embed_positions is None else token_emb + self.embed_positions(tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout(x)
        x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return x, token_emb, padding_mask

    def _layers_with_states(self, x, padding_mask, states: List[torch.Tensor], min_layer: int):
        outs: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x, ffn_out = run_layers(nn.ModuleList([layer]), x, padding_mask, self.layerdrop)
            states.append(x)
            if i >= min_layer:
                outs.extend(ffn_out)
        return x, outs

    def forward(self, tokens: torch.Tensor, min_layer: int = 0, return_all_hiddens: bool = False
                ) -> TextEncoderOutput:
        """Encode ``tokens`` (B, T); collect FFN outputs (the data2vec targets) of layers >= ``min_layer``."""
        x, token_emb, padding_mask = self.embed(tokens)
        if return_all_hiddens:
            states = [x]
            x, outs = self._layers_with_states(x, padding_mask, states, min_layer)
        else:
            states = None
            x, outs = run_layers(self.layers, x, padding_mask, self.layerdrop, min_layer)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return TextEncoderOutput(x, outs, padding_mask, token_emb, states)
