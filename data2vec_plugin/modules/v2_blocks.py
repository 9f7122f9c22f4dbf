"""data2vec 2.0 transformer blocks (``AltBlock``), block stacks and ALiBi biases.

Parameter names follow the reference data2vec 2.0 / timm ViT layout (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``) so reference state dicts load unchanged. Attention runs through
``F.scaled_dot_product_attention`` with one additive float mask that carries both the (scaled) ALiBi bias and the
key padding (-inf). Tensors are batch-first (B, T, C).

References: Baevski et al. 2022, "Efficient Self-supervised Learning with Contextualized Target Representations
for Vision, Speech and Language"; Press et al. 2021 (ALiBi). Facts taken from fairseq
examples/data2vec/models/modalities/{modules,base}.py (not copied).
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout (timm ``Mlp`` names)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class AltAttention(nn.Module):
    """Self-attention with fused ``qkv`` and an optional additive float mask (B, H, T, T) or (B, 1, 1, T)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_bias is not None:
            attn_bias = attn_bias.to(qkv.dtype)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_bias,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class AltBlock(nn.Module):
    """data2vec 2.0 block. Post-LN (default): ``x = norm2(r + mlp(r))`` with ``r = norm1(x + attn(x))``.

    Returns (output, target) where target is the FFN output before residual/``norm2`` (``ffn_targets``) or the
    block output. The pre-LN variant uses a standard FFN residual (the reference drops it, spec B16).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, mlp_drop: float = 0.0, post_mlp_drop: float = 0.0,
                 drop_path: float = 0.0, norm_eps: float = 1e-6, norm_affine: bool = True,
                 layer_norm_first: bool = False, ffn_targets: bool = True):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.ffn_targets = ffn_targets
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.attn = AltAttention(dim, num_heads, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), mlp_drop)
        self.post_mlp_dropout = nn.Dropout(post_mlp_drop)

    def forward(self, x: torch.Tensor, attn_bias: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.layer_norm_first:
            x = x + self.drop_path(self.attn(self.norm1(x), attn_bias))
            h = self.mlp(self.norm2(x))
            out = x + self.drop_path(self.post_mlp_dropout(h))
        else:
            r = self.norm1(x + self.drop_path(self.attn(x, attn_bias)))
            h = self.mlp(r)
            out = self.norm2(r + self.drop_path(self.post_mlp_dropout(h)))
        return out, (h if self.ffn_targets else out)


def attention_bias(num_heads: int, padding_mask: Optional[torch.Tensor], alibi: Optional[torch.Tensor],
                   scale: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """Combine ALiBi (B, H_a, T, T) times ``scale`` (broadcastable) and key padding (B, T) into one float mask."""
    bias = None
    if alibi is not None:
        bias = alibi if scale is None else alibi * scale.to(alibi.dtype)
        if bias.size(1) < num_heads:  # the bias covers the first H_a heads only
            bias = F.pad(bias, (0, 0, 0, 0, 0, num_heads - bias.size(1)))
    if padding_mask is not None:
        pad = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
        pad = pad.masked_fill(padding_mask, float("-inf"))[:, None, None, :]
        bias = pad if bias is None else bias + pad
    return bias


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, padding_mask: Optional[torch.Tensor],
               alibi: Optional[torch.Tensor], alibi_scale: Optional[torch.Tensor], layerdrop: float = 0.0,
               collect: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Apply ``blocks`` (each skipped with prob ``layerdrop`` in training).

    Args:
        alibi_scale: None (bias already scaled) or (L, 1, H_a, 1, 1) per-layer scales, ``L == len(blocks)``
            or 1 (shared).
    Returns: output and, if ``collect``, the per-block targets.
    """
    heads = blocks[0].attn.num_heads if len(blocks) else 1
    shared = None
    if alibi is None or alibi_scale is None or alibi_scale.size(0) == 1:
        s = None if alibi_scale is None else alibi_scale[0]
        shared = attention_bias(heads, padding_mask, alibi, s, x.dtype)
    drop = torch.rand(len(blocks)).tolist() if blocks.training and layerdrop > 0 else None
    results: List[torch.Tensor] = []
    for i, blk in enumerate(blocks):
        if drop is not None and drop[i] <= layerdrop:
            continue
        bias = shared if shared is not None or alibi is None else attention_bias(
            heads, padding_mask, alibi, alibi_scale[i], x.dtype)
        x, t = blk(x, bias)
        if collect:
            results.append(t)
    return x, results


class BlockEncoder(nn.Module):
    """Modality prenet (``context_encoder``): [norm] -> dropout -> blocks [-> norm when pre-LN]."""

    def __init__(self, blocks: nn.ModuleList, norm: Optional[nn.Module], layer_norm_first: bool,
                 layerdrop: float, dropout: float):
        super().__init__()
        self.blocks = blocks
        self.norm = norm
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, padding_mask, alibi, alibi_scale):
        if self.norm is not None and not self.layer_norm_first:
            x = self.norm(x)
        x = self.dropout(x)
        if len(self.blocks):
            x, _ = run_blocks(self.blocks, x, padding_mask, alibi, alibi_scale, self.layerdrop)
        if self.norm is not None and self.layer_norm_first:
            x = self.norm(x)
        return x


# ------------------------------------------------------------------------------------------------------- ALiBi
def alibi_slopes(heads: int) -> List[float]:
    """Geometric head slopes of ALiBi; non powers of two take every other slope of the next power."""
    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    if math.log2(heads).is_integer():
        return power_of_2(heads)
    p = 2 ** math.floor(math.log2(heads))
    return power_of_2(p) + alibi_slopes(2 * p)[0::2][: heads - p]


def alibi_table(positions: int, heads: int, dims: int = 1, distance: str = "manhattan") -> torch.Tensor:
    """(H, T, T) float32 bias ``-slope_h * dist(i, j)``; 1-D |i - j| or 2-D grid distance (T = n*n)."""
    if dims == 1:
        idx = torch.arange(positions)
        dist = (idx[None, :] - idx[:, None]).abs().float()
    elif dims == 2:
        n = int(round(math.sqrt(positions)))
        if n * n != positions:
            raise ValueError(f"2-D ALiBi needs a square number of positions, got {positions}")
        r, c = torch.arange(positions) // n, torch.arange(positions) % n
        dr, dc = (r[:, None] - r[None, :]).float(), (c[:, None] - c[None, :]).float()
        if distance == "manhattan":
            dist = dr.abs() + dc.abs()
        elif distance == "euclidean":
            dist = torch.sqrt(dr ** 2 + dc ** 2)
        else:
            raise ValueError(f"alibi_distance must be 'manhattan' or 'euclidean', got '{distance}'")
    else:
        raise ValueError(f"alibi_dims must be 1 or 2, got {dims}")
    return -torch.tensor(alibi_slopes(heads))[:, None, None] * dist[None]


class AlibiCache:
    """Grow-on-demand cache of ALiBi tables per (dims, heads, distance, device)."""

    def __init__(self):
        self._tables: Dict[tuple, torch.Tensor] = {}

    def get(self, positions: int, heads: int, device, dims: int = 1, distance: str = "manhattan"
            ) -> torch.Tensor:
        key = (dims, heads, distance, str(device))
        t = self._tables.get(key)
        if t is None or t.size(-1) < positions or (dims == 2 and t.size(-1) != positions):
            t = alibi_table(positions, heads, dims, distance).to(device)
            self._tables[key] = t
        return t[:, :positions, :positions]


def gather_alibi(table: torch.Tensor, keep: Optional[torch.Tensor], batch: int) -> torch.Tensor:
    """(H, T, T) table -> (B, H, K, K) rows/cols of the kept positions ``keep`` (B, K), or expanded (B, H, T, T)."""
    if keep is None:
        return table.unsqueeze(0).expand(batch, -1, -1, -1)
    return table[:, keep.unsqueeze(-1), keep.unsqueeze(-2)].permute(1, 0, 2, 3)
