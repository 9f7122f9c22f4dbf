"""EMA teacher: fp32 master weights kept outside the student's module tree.

The teacher is a frozen copy of one student sub-module. It is *not* registered as a child module, so
``model.parameters()``, the optimizer, DDP and ``model.half()`` never see it. Its parameters are the fp32 master
weights themselves; ``step`` updates them with fused multi-tensor ops (``torch._foreach_lerp_``).
"""
import copy
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn


def annealed_decay(num_updates: int, start: float, end: float, anneal_steps: int) -> float:
    """Linear schedule from ``start`` at update 0 to ``end`` at ``anneal_steps``, constant afterwards."""
    if start == end or anneal_steps <= 0 or num_updates >= anneal_steps:
        return float(end)
    frac = max(num_updates, 0) / anneal_steps
    return float(start + (end - start) * frac)


class EMATeacher:
    """Teacher = exponential moving average of ``student``'s parameters.

    Args:
        student: the student sub-module to mirror (e.g. the transformer encoder).
        copy_keys: parameter-name prefixes that are copied from the student at every step instead of averaged
            (the reference's "skip keys", e.g. the positional convolution of data2vec_audio).
    Buffers are always copied from the student.
    """

    def __init__(self, student: nn.Module, copy_keys: Sequence[str] = ()):
        self.module = copy.deepcopy(student).float()
        self.module.requires_grad_(False)
        self.module.eval()
        self.copy_keys = tuple(copy_keys)
        self.num_steps = 0
        self._cache = None  # (student id, param count, pairs): the tensor lists are built once, not per step

    # -------------------------------------------------------------------------------------------------------- step
    def _pairs(self, student: nn.Module):
        teacher_params = dict(self.module.named_parameters())
        avg_t: List[torch.Tensor] = []
        avg_s: List[torch.Tensor] = []
        copy_t: List[torch.Tensor] = []
        copy_s: List[torch.Tensor] = []
        for name, p in student.named_parameters():
            t = teacher_params.get(name)
            if t is None:
                raise KeyError(f"EMA teacher has no parameter '{name}'; was the student changed after the teacher?")
            if name.startswith(self.copy_keys) or not p.requires_grad:
                copy_t.append(t)
                copy_s.append(p)
            else:
                avg_t.append(t)
                avg_s.append(p)
        return avg_t, avg_s, copy_t, copy_s

    def _cached_pairs(self, student: nn.Module):
        key = (id(student), len(list(student.parameters())))
        if self._cache is None or self._cache[0] != key:
            t_buf = dict(self.module.named_buffers())
            buffers = [(t_buf[n], b) for n, b in student.named_buffers() if n in t_buf]
            self._cache = (key, self._pairs(student), buffers)
        return self._cache[1], self._cache[2]

    @torch.no_grad()
    def step(self, student: nn.Module, decay: float) -> None:
        """teacher <- decay * teacher + (1 - decay) * student (fp32), copy keys and buffers copied."""
        (avg_t, avg_s, copy_t, copy_s), buffers = self._cached_pairs(student)
        device = avg_t[0].device if avg_t else None
        if device is not None and avg_s and avg_s[0].device != device:
            self.to(avg_s[0].device)
            (avg_t, avg_s, copy_t, copy_s), buffers = self._cached_pairs(student)
        if decay < 1.0 and avg_t:
            src = [s if s.dtype == torch.float32 else s.float() for s in avg_s]
            torch._foreach_lerp_(avg_t, src, 1.0 - decay)
        if copy_t:
            torch._foreach_copy_(copy_t, copy_s)
        for t, b in buffers:
            t.copy_(b)
        self.num_steps += 1

    # --------------------------------------------------------------------------------------------------- utilities
    def to(self, device: torch.device) -> "EMATeacher":
        """Move to ``device``; the teacher always stays fp32."""
        self.module.to(device=device, dtype=torch.float32)
        self._cache = None
        return self

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Teacher state as a plain name -> tensor dict (fp32; the reference's ``_ema`` layout)."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        own = self.module.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"EMA teacher state ('_ema') does not match the model: missing {missing[:8]}, unexpected "
                f"{unexpected[:8]}. Was the checkpoint written for a different model size or ema setting?"
            )
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(state[k].to(v.dtype))

    def reset_from(self, student: nn.Module) -> None:
        """Re-initialise the teacher as an exact copy of ``student`` (used when a checkpoint has no ``_ema``)."""
        own = self.module.state_dict()
        self.load_state_dict({k: v for k, v in student.state_dict().items() if k in own})


def ema_parameters(teacher: Optional[EMATeacher]) -> Iterable[torch.Tensor]:
    return [] if teacher is None else list(teacher.module.parameters())
