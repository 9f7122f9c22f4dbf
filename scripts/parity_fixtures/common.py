"""Helpers shared by every fixture generator: plain containers, loss-input recording, config resolution, teacher
perturbation, reload check, saving."""
import copy
import os
import sys

import torch  # noqa: F401  (import torch/fairseq before anything from examples)
import fairseq  # noqa: F401
import numpy as np
import torch.nn.functional as torchF
from omegaconf import OmegaConf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = 1234

# ----------------------------------------------------------------------------- helpers


def plain(obj):
    """Recursively convert to plain containers; tensors are detached + cloned (CPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not a plain value: {type(obj)}")


def scalar(t):
    if isinstance(t, torch.Tensor):
        return float(t.detach().float().item())
    return float(t)


class FProxy:
    """Stands in for `torch.nn.functional` inside a reference module; records the
    (prediction, target) pairs handed to mse_loss / smooth_l1_loss."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(torchF, name)

    def mse_loss(self, input, target, *a, **kw):
        self.calls.append((input.detach().clone(), target.detach().clone()))
        return torchF.mse_loss(input, target, *a, **kw)

    def smooth_l1_loss(self, input, target, *a, **kw):
        self.calls.append((input.detach().clone(), target.detach().clone()))
        return torchF.smooth_l1_loss(input, target, *a, **kw)


class record_loss_inputs:
    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.orig = self.module.F
        self.proxy = FProxy()
        self.module.F = self.proxy
        return self.proxy

    def __exit__(self, *exc):
        self.module.F = self.orig
        return False


def build_cfg(dc_cls, overrides, root_extra=None):
    """Resolve a reference model config the way fairseq-hydra-train does:
    structured defaults + overrides under a root (so II("model.x") / II("optimization.x")
    resolve), to_container(resolve=True, enum_to_str=True), then merge back into the
    dataclass (fairseq.dataclass.utils.merge_with_parent)."""
    from fairseq.dataclass.utils import merge_with_parent

    root = {
        "common": {"seed": SEED, "tpu": False},
        "optimization": {"max_update": 100},
        "task": {"tokens_per_sample": 32},
    }
    if root_extra:
        root.update(root_extra)
    root = OmegaConf.create(root)
    model_node = OmegaConf.merge(OmegaConf.structured(dc_cls), OmegaConf.create(overrides))
    root.model = model_node
    plain_cfg = OmegaConf.to_container(root.model, resolve=True, enum_to_str=True)
    cfg = merge_with_parent(dc_cls(), OmegaConf.create(plain_cfg), remove_missing=False)
    return cfg, plain_cfg


def perturb_teacher(ema, gen, scale=0.01):
    """Make the teacher differ from the student: teacher_float_entry += scale*randn,
    for every float entry of the teacher state dict (params and float buffers, except
    the fairseq 'version' buffers), then refresh ema.fp32_params."""
    with torch.no_grad():
        sd = ema.model.state_dict()
        for k in sorted(sd.keys()):
            t = sd[k]
            if not torch.is_floating_point(t) or "version" in k:
                continue
            t.add_(scale * torch.randn(t.shape, generator=gen, dtype=t.dtype))
        ema.build_fp32_params()
        # fp32_params must now equal the teacher's state
        sd2 = ema.model.state_dict()
        for k, v in ema.fp32_params.items():
            assert torch.equal(v, sd2[k].float() if torch.is_floating_point(sd2[k]) else sd2[k]), k


def check_state_dict_reload(model_factory, state_dict, prepare=None):
    """Reload the saved state dict into a freshly built reference model (strict)."""
    m = model_factory()
    if prepare is not None:
        prepare(m)
    sd = copy.deepcopy(state_dict)
    m.load_state_dict(sd, strict=True)
    return m


def recompute_loss(pred, target, loss_beta, scale):
    if loss_beta == 0:
        l = torchF.mse_loss(pred.float(), target.float(), reduction="none").sum(-1)
    else:
        l = torchF.smooth_l1_loss(pred.float(), target.float(), reduction="none", beta=loss_beta).sum(-1)
    return l.sum() * scale


def save_fixture(out_dir, name, obj):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.pt")
    obj = plain(obj)
    torch.save(obj, path)
    back = torch.load(path, weights_only=True)
    assert set(back.keys()) == set(obj.keys())
    print(f"[ok] wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB)", file=sys.stderr)
    return path


def quiet(fn, *args):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)
