"""Audio building blocks: CNN feature encoder, convolutional positional embedding, audio transformer encoder.

Parameter names match fairseq's wav2vec 2.0 modules (``conv_layers.{i}.0``, ``pos_conv.0.weight_g`` ...), so
reference data2vec_audio state dicts load unchanged.
"""
import ast
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fast_transpose import SwapLastDims
from .transformer import TransformerLayer, run_layers

ConvSpec = List[Tuple[int, int, int]]


def parse_conv_spec(spec: str) -> ConvSpec:
    """Parse a wav2vec conv spec such as ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"`` without ``eval``."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [ev(e) for e in node.elts]
            return vals if isinstance(node, ast.List) else tuple(vals)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError
    try:
        layers = ev(ast.parse(spec.strip(), mode="eval"))
        layers = [tuple(int(v) for v in layer) for layer in layers]
        if not layers or any(len(layer) != 3 or min(layer) <= 0 for layer in layers):
            raise ValueError
    except (ValueError, SyntaxError, TypeError):
        raise ValueError(f"conv_feature_layers '{spec}' is not a list of (dim, kernel, stride) tuples, e.g. "
                         "\"[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2\"") from None
    return layers


def conv_output_lengths(lengths: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """Frames produced from ``lengths`` samples: L <- floor((L - k) / s) + 1 per layer (0 if too short)."""
    out = lengths.long()
    for _, k, s in spec:
        out = torch.div(out - k, s, rounding_mode="floor") + 1
    return out.clamp_min(0)


def receptive_field(spec: ConvSpec) -> int:
    """Smallest number of samples that yields one frame."""
    n = 1
    for _, k, s in reversed(spec):
        n = (n - 1) * s + k
    return n


class TransposeLast(nn.Module):
    def forward(self, x):
        return x.transpose(-2, -1)


class Fp32LayerNorm(nn.LayerNorm):
    def forward(self, x):
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


class Fp32GroupNorm(nn.GroupNorm):
    def forward(self, x):
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).type_as(x)


class ConvBlock(nn.Sequential):
    """conv -> dropout -> [norm] -> GELU, with the reference's sub-module indices (``0`` conv, ``2`` norm).

    ``layer_norm`` mode normalises channels: the reference transposes the conv output to (B, T, C), normalises,
    transposes back and applies GELU to the transposed view. Here the conv output is swapped once into a contiguous
    (B, T, C) tensor, LayerNorm *and* GELU run on it, and it is swapped back to a contiguous (B, C, T) tensor, both
    swaps (and their gradients) with the cache-blocked copy of ``fast_transpose``: bit-identical values, but the
    strided copies and the GELU backward on a strided view were about half of a CPU audio training step
    (profile in bench/RESULTS.md).
    """

    def forward(self, x):
        if not isinstance(self[2], nn.Sequential):  # default mode (GroupNorm / no norm): already contiguous
            return super().forward(x)
        x = SwapLastDims.apply(self[1](self[0](x)))
        return SwapLastDims.apply(self[3](self[2][1](x)))


class ConvFeatureEncoder(nn.Module):
    """Raw waveform (B, S) -> features (B, C, T). ``mode``: ``default`` (GroupNorm on layer 0) or ``layer_norm``."""

    def __init__(self, spec: ConvSpec, mode: str = "default", conv_bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got '{mode}'")
        self.spec = spec
        layers, c_in = [], 1
        for i, (dim, k, s) in enumerate(spec):
            conv = nn.Conv1d(c_in, dim, k, stride=s, bias=conv_bias)
            nn.init.kaiming_normal_(conv.weight)
            block = [conv, nn.Dropout(dropout)]
            if mode == "layer_norm":
                block.append(nn.Sequential(TransposeLast(), Fp32LayerNorm(dim), TransposeLast()))
            elif i == 0:
                block.append(Fp32GroupNorm(dim, dim))
            block.append(nn.GELU())
            layers.append(ConvBlock(*block))
            c_in = dim
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        x = source.unsqueeze(1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class WeightNormConv1d(nn.Conv1d):
    """Conv1d with weight normalisation over every dim but the kernel axis (keys ``weight_g``, ``weight_v``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        v = self.weight.detach().clone()
        del self.weight
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))

    def forward(self, x):
        norm = torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True)
        weight = self.weight_v * (self.weight_g / norm)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SamePad(nn.Module):
    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x):
        return x[:, :, :-self.remove] if self.remove else x


def conv_positional_embedding(dim: int, width: int, groups: int, depth: int) -> nn.Sequential:
    """wav2vec 2.0 / data2vec convolutional relative positional embedding (input and output (B, C, T))."""
    if depth <= 1:
        conv = WeightNormConv1d(dim, dim, width, padding=width // 2, groups=groups)
        with torch.no_grad():
            nn.init.normal_(conv.weight_v, mean=0.0, std=math.sqrt(4.0 / (width * dim)))
            conv.weight_g.copy_(torch.linalg.vector_norm(conv.weight_v, dim=(0, 1), keepdim=True))
            nn.init.zeros_(conv.bias)
        return nn.Sequential(conv, SamePad(width), nn.GELU())
    k = max(3, width // depth)
    return nn.Sequential(*[
        nn.Sequential(nn.Conv1d(dim, dim, k, padding=k // 2, groups=groups), SamePad(k), TransposeLast(),
                      nn.LayerNorm(dim, elementwise_affine=False), TransposeLast(), nn.GELU())
        for _ in range(depth)
    ])


class AudioTransformerEncoder(nn.Module):
    """Conv positional embedding + LayerNorm + transformer layers (the reference's ``encoder`` module)."""

    def __init__(self, dim: int, ffn_dim: int, layers: int, heads: int, conv_pos: int, conv_pos_groups: int,
                 pos_conv_depth: int = 1, dropout: float = 0.1, attention_dropout: float = 0.1,
                 activation_dropout: float = 0.0, activation_fn: str = "gelu", layer_norm_first: bool = False,
                 layerdrop: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.pos_conv = conv_positional_embedding(dim, conv_pos, conv_pos_groups, pos_conv_depth)
        self.layers = nn.ModuleList([
            TransformerLayer(dim, ffn_dim, heads, dropout, attention_dropout, activation_dropout, activation_fn,
                             layer_norm_first) for _ in range(layers)
        ])
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None, min_layer: int = 0,
                max_layer: Optional[int] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """x (B, T, C) -> (output (B, T, C), FFN outputs of layers >= ``min_layer``)."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        x, ffn_outputs = run_layers(self.layers, x, padding_mask, self.layerdrop, min_layer, max_layer)
        if self.layer_norm_first and max_layer is None:
            x = self.layer_norm(x)
        return x, ffn_outputs


def frame_padding_mask(padding_mask: Optional[torch.Tensor], num_frames: int, spec: ConvSpec
                       ) -> Optional[torch.Tensor]:
    """Sample-level padding mask (B, S) -> frame-level (B, T), True = padded frame."""
    if padding_mask is None:
        return None
    lengths = conv_output_lengths((~padding_mask).sum(-1), spec)
    return torch.arange(num_frames, device=padding_mask.device)[None, :] >= lengths[:, None]


def frames_per_sample(lengths: Sequence[int], spec: ConvSpec) -> List[int]:
    return conv_output_lengths(torch.as_tensor(list(lengths)), spec).tolist()
