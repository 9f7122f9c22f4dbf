"""Transformer blocks with fairseq's parameter names, SDPA attention and per-layer FFN outputs.

Tensors are batch-first (B, T, C). Parameter names match fairseq's ``TransformerSentenceEncoderLayer`` /
``TransformerEncoderLayer`` (``self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``fc1``, ``fc2``,
``final_layer_norm``) so reference state dicts load unchanged.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def get_activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation_fn '{name}', choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def attention_mask_from_padding(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(B, T) bool padding (True = pad) -> (B, 1, 1, T) bool SDPA mask (True = attend), or None."""
    if padding_mask is None:
        return None
    return (~padding_mask)[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention via ``F.scaled_dot_product_attention`` (fairseq MultiheadAttention names)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class TransformerLayer(nn.Module):
    """Post-LN (default) or pre-LN transformer layer returning (output, ffn_output).

    ``ffn_output`` is the FFN result after ``fc2``, before dropout, residual and LayerNorm: the data2vec target.
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0, activation_fn: str = "gelu",
                 layer_norm_first: bool = False, ln_eps: float = 1e-5):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.activation = get_activation(activation_fn)
        self.self_attn = SelfAttention(dim, num_heads, attention_dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(activation_dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=ln_eps)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=ln_eps)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout2(self.activation(self.fc1(x))))

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), attn_mask))
            ffn = self._ffn(self.final_layer_norm(x))
            return x + self.dropout3(ffn), ffn
        x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x, attn_mask)))
        ffn = self._ffn(x)
        return self.final_layer_norm(x + self.dropout3(ffn)), ffn


def run_layers(layers: nn.ModuleList, x: torch.Tensor, padding_mask: Optional[torch.Tensor],
               layerdrop: float = 0.0, min_layer: int = 0, max_layer: Optional[int] = None
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Apply ``layers`` (skipping each with prob ``layerdrop`` in training); collect FFN outputs of layers
    >= ``min_layer`` (values at padded positions are left as computed). Stops after ``max_layer`` if given."""
    attn_mask = attention_mask_from_padding(padding_mask)
    outputs: List[torch.Tensor] = []
    drop = torch.rand(len(layers)).tolist() if layers.training and layerdrop > 0 else None
    for i, layer in enumerate(layers):
        if drop is None or drop[i] > layerdrop:
            x, ffn = layer(x, attn_mask)
            if i >= min_layer:
                outputs.append(ffn)
        if max_layer is not None and i + 1 >= max_layer:
            break
    return x, outputs
