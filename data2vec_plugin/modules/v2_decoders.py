"""Lightweight convolutional decoders of data2vec 2.0 (1-D for audio/text, 2-D on the image patch grid).

Each block: Conv (kernel k, 'same' padding, groups) -> LayerNorm over channels (no affine) -> GELU, with a
residual connection between consecutive blocks of equal width (``residual``), then a projection back to the model
width (a Linear, or an MLP Linear(d, d*ratio) -> GELU -> ... -> Linear(., D) when ``projection_layers > 1``).
Key names match the reference (``blocks.{i}.0``, ``proj`` / ``proj.{0,2}``).
"""
import torch
import torch.nn.functional as F
from torch import nn


class _ChannelLayerNorm(nn.Module):
    """LayerNorm without affine over dim 1 of (B, C, ...)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps).movedim(-1, 1)


class _TrimLast(nn.Module):
    """Drop the last position on every spatial axis after an even kernel (fairseq SamePad/SamePad2d)."""

    def __init__(self, kernel: int, dims: int):
        super().__init__()
        self.trim = kernel % 2 == 0
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.trim:
            return x
        return x[..., :-1] if self.dims == 1 else x[..., :-1, :-1]


def _projection(dim: int, out_dim: int, layers: int, ratio: float) -> nn.Module:
    mods, cur = [], dim
    for i in range(layers - 1):
        nxt = int(cur * ratio) if i == 0 else cur
        mods += [nn.Linear(cur, nxt), nn.GELU()]
        cur = nxt
    mods.append(nn.Linear(cur, out_dim))
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


class ConvDecoder(nn.Module):
    """Conv decoder over a sequence (``dims=1``) or an ``h x w`` grid (``dims=2``); (B, T, D) -> (B, T, D).

    Args:
        input_dim: model width D (input and output).
        dim, groups, kernel, layers: decoder width, conv groups, kernel size, number of blocks.
        residual: add the previous block's output when widths match.
        projection_layers, projection_ratio: projection MLP depth and first expansion ratio.
        grid: (h, w) for ``dims=2``.
    """

    def __init__(self, input_dim: int, dim: int, groups: int, kernel: int, layers: int, residual: bool = True,
                 projection_layers: int = 1, projection_ratio: float = 2.0, dims: int = 1, grid=None):
        super().__init__()
        if dims == 2 and grid is None:
            raise ValueError("a 2-D decoder needs the patch grid size")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.dims, self.grid, self.residual = dims, grid, residual
        self.blocks = nn.Sequential(*[
            nn.Sequential(conv(input_dim if i == 0 else dim, dim, kernel, padding=kernel // 2, groups=groups),
                          _TrimLast(kernel, dims), _ChannelLayerNorm(), nn.GELU())
            for i in range(layers)])
        self.proj = _projection(dim, input_dim, projection_layers, projection_ratio)

    def reset_parameters(self) -> None:
        for m in self.proj.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        x = x.transpose(1, 2)
        if self.dims == 2:
            x = x.reshape(b, c, *self.grid)
        residual = x
        for block in self.blocks:
            x = block(x)
            if self.residual and residual.size(1) == x.size(1):
                x = x + residual
            residual = x
        return self.proj(x.reshape(b, x.size(1), t).transpose(1, 2))
