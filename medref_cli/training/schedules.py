"""Schedules of the semi-supervised phase and the optimiser.

Progress in the SSL phase is measured in epochs since burn-in ended (``epochs_into_ssl``,
a float, so a caller may pass ``epoch - burnin + step / steps_per_epoch`` for a per-step
ramp); negative values count as 0. Settings of the reference: EMA momentum 0.99 -> 0.999
over 20 epochs, lambda_u 0 -> 0.3 over 15 epochs, AdamW lr 3e-4 with cosine decay to 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from medref_cli.errors import MedrefError


def _linear_progress(epochs_into_ssl: float, ramp_epochs: float) -> float:
    """0 -> 1 linearly over ``ramp_epochs``, then 1; 1 at once when ``ramp_epochs`` is 0."""
    if ramp_epochs < 0:
        raise MedrefError(f"ramp length must be >= 0 epochs, got {ramp_epochs}")
    if ramp_epochs == 0:
        return 1.0
    return min(max(epochs_into_ssl, 0.0) / ramp_epochs, 1.0)


def ema_momentum(
    epochs_into_ssl: float, start: float = 0.99, end: float = 0.999, warmup_epochs: float = 20
) -> float:
    """EMA momentum: ``start`` at the start of SSL, linear to ``end`` after ``warmup_epochs``, then
    constant (``end`` throughout when ``warmup_epochs`` is 0)."""
    return start + (end - start) * _linear_progress(epochs_into_ssl, warmup_epochs)


def lambda_u_weight(epochs_into_ssl: float, lambda_u: float = 0.3, ramp_epochs: float = 15) -> float:
    """Unsupervised loss weight: 0 at the start of SSL, linear to ``lambda_u`` over ``ramp_epochs``
    (``lambda_u`` throughout when ``ramp_epochs`` is 0)."""
    return lambda_u * _linear_progress(epochs_into_ssl, ramp_epochs)


def cosine_lr(step: int, total_steps: int, base_lr: float, min_lr: float) -> float:
    """Closed-form cosine annealing: ``min_lr + (base_lr - min_lr) (1 + cos(pi step / total)) / 2``,
    held at ``min_lr`` after ``total_steps`` (what ``CosineAnnealingLR`` gives for step <= total)."""
    if total_steps <= 0:
        raise MedrefError(f"total_steps must be > 0, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


FUSED_DEVICE_TYPES = ("cuda", "cpu")


def trainable_parameters(model_or_params: nn.Module | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors that require grad (a frozen text encoder is left out of the optimiser)."""
    params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    return [p for p in params if p.requires_grad]


def build_optimizer(
    model_or_params: nn.Module | Iterable[torch.Tensor],
    lr: float = 3e-4,
    weight_decay: float = 0.05,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters. ``fused=None`` picks the fused kernel when every
    parameter is a floating-point tensor on a CPU or CUDA device."""
    params = trainable_parameters(model_or_params)
    if not params:
        raise MedrefError("the model has no trainable parameters")
    if fused is None:
        fused = all(p.is_floating_point() and p.device.type in FUSED_DEVICE_TYPES for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def build_cosine_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, min_lr: float = 1e-6
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine decay from the optimiser's lr to ``min_lr`` over ``total_steps`` scheduler steps."""
    if total_steps <= 0:
        raise MedrefError(f"total_steps must be > 0, got {total_steps}")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)
