"""Mixin for the nn.Module that owns an EMA teacher and writes it under ``<prefix>_ema`` in its state dict.

* The teacher is not a child module: ``parameters()``, optimizers, DDP and ``.half()`` never see it; ``.to()``
  moves it (device only, it stays fp32).
* ``ema_step(n)`` steps at most once per optimizer update ``n`` (guarded by an update counter), which makes
  ``update_freq > 1`` and repeated ``set_num_updates`` calls safe. The plugin's tasks call it right after the
  optimizer step; models also call it from ``set_num_updates`` so that foreign tasks still drive the teacher.
* Loading accepts state dicts with or without ``_ema``: without it the teacher is re-initialised from the loaded
  student weights; an ``_ema`` for a model that has no teacher (fine-tuning) is dropped.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from .ema import EMATeacher, annealed_decay

EMA_KEY = "_ema"


class TeacherHolderMixin:
    _teacher: Optional[EMATeacher] = None
    _ema_updates: Optional[int] = None
    _teacher_source: Optional[str] = None

    def init_teacher(self, source_name: str, copy_keys: Sequence[str], decay: float, end_decay: float,
                     anneal_steps: int) -> None:
        """Create the teacher as a copy of ``getattr(self, source_name)`` (a sub-module name or ``""`` = self)."""
        self._teacher_source = source_name
        self._ema_schedule = (float(decay), float(end_decay), int(anneal_steps))
        self._teacher = None
        self._teacher = EMATeacher(self._teacher_student(), copy_keys)
        self._needs_teacher_reset = False
        self.register_load_state_dict_post_hook(TeacherHolderMixin._after_load)

    def _teacher_student(self) -> nn.Module:
        return self if not self._teacher_source else getattr(self, self._teacher_source)

    @property
    def teacher(self) -> Optional[EMATeacher]:
        return self._teacher

    def drop_teacher(self) -> None:
        self._teacher = None

    def ema_decay_at(self, num_updates: int) -> float:
        start, end, steps = self._ema_schedule
        return annealed_decay(num_updates, start, end, steps)

    def ema_step(self, num_updates: int) -> bool:
        """Step the teacher for optimizer update ``num_updates`` unless that update was already applied."""
        if self._teacher is None:
            return False
        if self._ema_updates is None or num_updates <= self._ema_updates:
            self._ema_updates = num_updates if self._ema_updates is None else self._ema_updates
            return False
        self._ema_updates = num_updates
        decay = self.ema_decay_at(num_updates)
        if decay < 1.0 or self._teacher.copy_keys:
            self._teacher.step(self._teacher_student(), decay)
        return True

    def observe_num_updates(self, num_updates: int) -> None:
        """Record the update counter; step if an optimizer update happened that the teacher has not seen."""
        if self._ema_updates is None:
            self._ema_updates = num_updates
        elif num_updates > self._ema_updates:
            self.ema_step(num_updates)

    # ------------------------------------------------------------------------------------------------ persistence
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        if self._teacher is not None:
            state[prefix + EMA_KEY] = self._teacher.state_dict()
        return state

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        ema = state_dict.pop(prefix + EMA_KEY, None)
        if self._teacher is not None:
            if ema is None:
                self._needs_teacher_reset = True
            else:
                self._teacher.load_state_dict(ema)
                self._needs_teacher_reset = False
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @staticmethod
    def _after_load(module, incompatible_keys) -> None:
        if module._teacher is not None and getattr(module, "_needs_teacher_reset", False):
            module._teacher.reset_from(module._teacher_student())
            module._needs_teacher_reset = False

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        if self._teacher is not None:
            probe = fn(torch.zeros(1, device=self._teacher.device))
            if probe.device != self._teacher.device:
                self._teacher.to(probe.device)
        return out
