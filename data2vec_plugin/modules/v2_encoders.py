"""Modality pieces of data2vec 2.0: audio padding conversion and positional conv, image patches and fixed 2-D
sin-cos positions, text token embeddings. Key names match the reference layout (spec §4.4)."""
import math
import numpy as np
import torch
from fairseq.modules import PositionalEmbedding
from torch import nn

from .audio import ConvSpec, TransposeLast, frame_padding_mask
from .v2_modality import ModalityEncoder


class AudioModalityEncoder(ModalityEncoder):
    """Audio: the padding mask (B, S samples) is converted to frames with the CNN length formula."""

    conv_spec: ConvSpec = ()

    def convert_padding_mask(self, x, padding_mask):
        if padding_mask is None or padding_mask.size(1) == x.size(1):
            return padding_mask
        return frame_padding_mask(padding_mask, x.size(1), self.conv_spec)


def audio_positional_conv(dim: int, width: int, groups: int, depth: int, pre_ln: bool = False) -> nn.Module:
    """(B, T, D) -> (B, T, D): ``depth`` x [Conv1d(k = max(3, width // depth), groups) -> LN(no affine) -> GELU]."""
    k = max(3, width // depth)

    def block():
        trim = [] if k % 2 else [_TrimTime()]
        return nn.Sequential(nn.Conv1d(dim, dim, k, padding=k // 2, groups=groups), *trim, TransposeLast(),
                             nn.LayerNorm(dim, elementwise_affine=False), TransposeLast(), nn.GELU())
    enc = nn.Sequential(TransposeLast(), *[block() for _ in range(depth)], TransposeLast())
    return nn.Sequential(nn.LayerNorm(dim), enc) if pre_ln else enc


class _TrimTime(nn.Module):
    def forward(self, x):
        return x[..., :-1]


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, D) via a strided conv ``proj`` (timm names)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"input_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.grid = img_size, img_size // patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.size(0), -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} images, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """(grid*grid, dim) fixed 2-D sin-cos positions (MAE convention: first half encodes the column, second half the row)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)


class FixedPositions(nn.Module):
    """Non-trainable (1, N, D) positions, saved in the state dict as ``positions``."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        grid = int(math.isqrt(num_positions))
        pos = torch.from_numpy(sincos_2d(dim, grid)).float().unsqueeze(0)
        self.positions = nn.Parameter(pos, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.positions.to(x.dtype)


class TextLocalEncoder(nn.Module):
    """Tokens (B, T) -> scale * embed_tokens + learned/sinusoidal positions -> [LayerNorm] -> dropout."""

    def __init__(self, vocab_size: int, dim: int, max_positions: int, pad_idx: int, scale_embedding: bool,
                 layernorm_embedding: bool, dropout: float, positions: bool, learned_pos: bool):
        super().__init__()
        self.pad_idx = pad_idx
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(vocab_size, dim, pad_idx)
        self.embed_positions = (PositionalEmbedding(max_positions, dim, pad_idx, learned=learned_pos)
                                if positions else None)
        self.layernorm_embedding = nn.LayerNorm(dim) if layernorm_embedding else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed_scale * self.embed_tokens(tokens)
        if self.embed_positions is not None:
            x = x + self.embed_positions(tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return self.dropout(x)


def project_audio_features(feature_dim: int, embed_dim: int) -> nn.Module:
    """(B, C, T) CNN output -> (B, T, D): TransposeLast -> LayerNorm(C) -> Linear(C, D)."""
    return nn.Sequential(TransposeLast(), nn.LayerNorm(feature_dim), nn.Linear(feature_dim, embed_dim))


def patch_local_encoder(img_size: int, patch: int, in_chans: int, patch_dim: int, embed_dim: int) -> nn.Module:
    enc = PatchEmbed(img_size, patch, in_chans, patch_dim)
    return enc if patch_dim == embed_dim else nn.Sequential(enc, nn.Linear(patch_dim, embed_dim))


def patchify(imgs: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C) pixel patches (row-major grid, channels last)."""
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // patch) * (w // patch), patch * patch * c)

