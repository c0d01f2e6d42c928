"""The EMA teacher: theta_T <- m theta_T + (1 - m) theta_S after every student step.

Conventions:

- the teacher is a deep copy of the student taken at construction, in eval mode, with
  ``requires_grad=False`` everywhere; calling it runs under ``torch.no_grad()``;
- ``update`` averages every trainable parameter of the student (``requires_grad=True``) and
  every floating-point buffer (BatchNorm running mean/var, as the reference does) with
  momentum ``m``; integer buffers (``num_batches_tracked``) are copied from the student.
  Parameters the student keeps frozen (e.g. a frozen text encoder) are not touched: they
  are equal in both models from the deep copy on, so averaging them would be a no-op;
- a student wrapped by ``torch.compile`` or DistributedDataParallel is unwrapped before pairing;
- the averaging uses ``torch._foreach_lerp_``: ``t + (1 - m) (s - t) = m t + (1 - m) s``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from medref_cli.errors import MedrefError


def _unwrap(module: nn.Module) -> nn.Module:
    from medref_cli.runtime.step_model import core

    return core(module)


def _paired(
    teacher_items: list[tuple[str, torch.Tensor]], student_items: list[tuple[str, torch.Tensor]], kind: str
):
    teacher_names = [name for name, _ in teacher_items]
    student_names = [name for name, _ in student_items]
    if teacher_names != student_names:
        raise ValueError(f"EMA teacher and student have different {kind}: the student's architecture changed")
    return [(t, s) for (_, t), (_, s) in zip(teacher_items, student_items, strict=True)]


class EMATeacher:
    """An exponential-moving-average copy of a student model (see the module docstring)."""

    def __init__(self, student: nn.Module) -> None:
        self.model = copy.deepcopy(_unwrap(student))
        self.model.requires_grad_(False)
        self.model.eval()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.model(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """Move the teacher towards ``student``: t = momentum * t + (1 - momentum) * s."""
        if not 0.0 <= momentum <= 1.0:
            raise MedrefError(f"EMA momentum must be in [0, 1], got {momentum}")
        student = _unwrap(student)
        params = _paired(list(self.model.named_parameters()), list(student.named_parameters()), "parameters")
        trainable = [(t, s) for t, s in params if s.requires_grad]
        buffers = _paired(list(self.model.named_buffers()), list(student.named_buffers()), "buffers")
        averaged = trainable + [(t, s) for t, s in buffers if t.is_floating_point()]
        copied = [(t, s) for t, s in buffers if not t.is_floating_point()]
        if averaged:
            teacher_tensors = [t for t, _ in averaged]
            student_tensors = [s.detach() for _, s in averaged]
            torch._foreach_lerp_(teacher_tensors, student_tensors, 1.0 - momentum)
        for t, s in copied:
            t.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)

    def to(self, *args: Any, **kwargs: Any) -> EMATeacher:
        self.model.to(*args, **kwargs)
        return self
