"""BEiT-style ViT building blocks for data2vec vision (v1): patch embedding, relative position bias, blocks.

Parameter and buffer names follow the reference ``examples/data2vec/models/data2vec_vision.py`` (itself adapted
from BEiT, microsoft/unilm ``beit/modeling_finetune.py``) so reference state dicts load unchanged:
``patch_embed.conv``, ``rel_pos_bias.relative_position_{bias_table,index}``, ``blocks.{i}.{norm1,attn,norm2,mlp,
gamma_1,gamma_2}``, ``attn.{qkv,q_bias,v_bias,proj}``, ``mlp.{0,2}``, ``norm``. Written from the spec, not copied.

Tensors are batch-first: tokens (B, 1 + N, D) with the cls token first; N = grid_h * grid_w patches.
Attention uses ``F.scaled_dot_product_attention`` with the relative position bias as a float ``attn_mask``.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

TARGET_KINDS = ("end", "fc")  # block output after the residual / FFN branch before the residual


def relative_position_index(grid: Tuple[int, int]) -> Tuple[torch.Tensor, int]:
    """(1 + N, 1 + N) int64 index into a table of ``(2h-1)(2w-1) + 3`` rows, and that row count.

    Patch pairs index their 2-D offset; the last three rows are cls->token, token->cls and cls->cls.
    """
    h, w = grid
    num = (2 * h - 1) * (2 * w - 1) + 3
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    patch_index = (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)
    index = torch.empty(h * w + 1, h * w + 1, dtype=torch.long)
    index[1:, 1:] = patch_index
    index[0, :] = num - 3
    index[:, 0] = num - 2
    index[0, 0] = num - 1
    return index, num


class PatchEmbed(nn.Module):
    """Non-overlapping patches: (B, C, H, W) -> (B, N, D) with a strided Conv2d."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size = image_size
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.conv = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images (model.image_size), got "
                             f"{tuple(img.shape[-2:])}; set task.input_size to the model's image_size")
        return self.conv(img).flatten(2).transpose(1, 2)


class RelativePositionBias(nn.Module):
    """Learned (heads, 1 + N, 1 + N) attention bias indexed by 2-D patch offsets (BEiT)."""

    def __init__(self, grid: Tuple[int, int], num_heads: int):
        super().__init__()
        index, num = relative_position_index(grid)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num, num_heads))
        self.register_buffer("relative_position_index", index)

    def forward(self) -> torch.Tensor:
        n = self.relative_position_index.size(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)  # (H, 1+N, 1+N)


class Attention(nn.Module):
    """BEiT attention: qkv without k-bias (q_bias, v_bias), SDPA with an additive float bias.

    With ``grid`` set the block owns its relative position table (``shared_rel_pos_bias=False``).
    """

    def __init__(self, dim: int, num_heads: int, attention_dropout: float = 0.0,
                 grid: Optional[Tuple[int, int]] = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.has_own_bias = grid is not None
        if grid is not None:
            index, num = relative_position_index(grid)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(num, num_heads))
            self.register_buffer("relative_position_index", index)

    def own_bias(self) -> torch.Tensor:
        n = self.relative_position_index.size(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, c = x.shape
        qkv_bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, qkv_bias).view(b, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if self.has_own_bias:
            bias = self.own_bias() if bias is None else bias + self.own_bias()
        mask = None if bias is None else bias.unsqueeze(0).to(qkv.dtype)  # (1, H, T, T) float bias
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LN block with optional layer scale (``gamma_1``, ``gamma_2``) and stochastic depth.

    Returns (output, ffn_branch) where ffn_branch = drop_path(gamma_2 * mlp(norm2(x))), the "fc" target.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, attention_dropout: float, drop_path: float,
                 layer_scale_init_value: float, grid: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attention_dropout, grid)
        self.drop_path = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if layer_scale_init_value > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None):
        a = self.attn(self.norm1(x), bias)
        x = x + self.drop_path(a if self.gamma_1 is None else self.gamma_1 * a)
        f = self.mlp(self.norm2(x))
        fc = self.drop_path(f if self.gamma_2 is None else self.gamma_2 * f)
        return x + fc, fc


class VisionEncoder(nn.Module):
    """Blocks with a shared (or per-block) relative position bias and a final LayerNorm.

    ``forward(tokens)`` -> final-normed tokens (B, 1 + N, D); ``forward(tokens, collect="end"|"fc")`` -> list of
    per-block outputs without the final norm (the teacher's target layers).
    """

    def __init__(self, grid: Tuple[int, int], dim: int, depth: int, num_heads: int, mlp_ratio: float,
                 attention_dropout: float, drop_path: float, layer_scale_init_value: float,
                 shared_rel_pos_bias: bool = True):
        super().__init__()
        self.rel_pos_bias = RelativePositionBias(grid, num_heads) if shared_rel_pos_bias else None
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, attention_dropout, rates[i], layer_scale_init_value,
                  None if shared_rel_pos_bias else grid)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.final_norm = True  # False after remove_pretraining_modules (fine-tuning pools un-normed tokens)
        self.apply(_init_weights)
        for i, blk in enumerate(self.blocks, start=1):  # BEiT: rescale residual branches by depth
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            blk.mlp[2].weight.data.div_(math.sqrt(2.0 * i))

    def forward(self, x: torch.Tensor, collect: Optional[str] = None):
        bias = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        outs: List[torch.Tensor] = []
        for blk in self.blocks:
            x, fc = blk(x, bias)
            if collect is not None:
                outs.append(x if collect == "end" else fc)
        if collect is not None:
            return outs
        return self.norm(x) if self.final_norm else x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _drop_path(rate: float) -> nn.Module:
    """timm's DropPath (stochastic depth); timm is imported only when it is used (it costs ~4 s per start)."""
    if rate <= 0:
        return nn.Identity()
    from timm.layers import DropPath
    return DropPath(rate)
