"""The cache-blocked (B, A, C) -> (B, C, A) copy: bit-identical to transpose().contiguous(), gradients too."""
import torch

from data2vec_plugin.modules.fast_transpose import SwapLastDims, swap_last_dims


def test_blocked_copy_equals_transpose_for_large_and_small_tensors():
    for shape in [(3, 1000, 300), (2, 130, 7), (1, 65, 4100)]:
        x = torch.randn(*shape)
        y = swap_last_dims(x)
        assert y.is_contiguous() and torch.equal(y, x.transpose(1, 2))
    v = torch.randn(2, 300, 1000).transpose(1, 2)  # non-contiguous input
    assert torch.equal(swap_last_dims(v), v.transpose(1, 2))


def test_autograd_swap_passes_the_gradient_back_swapped():
    x = torch.randn(2, 600, 500, requires_grad=True)
    w = torch.randn(2, 500, 600)
    (SwapLastDims.apply(x) * w).sum().backward()
    assert torch.equal(x.grad, w.transpose(1, 2))
