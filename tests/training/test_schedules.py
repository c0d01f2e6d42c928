"""Schedules: EMA momentum warm-up, lambda_u ramp, cosine lr, the optimiser builder (worked values)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medref_cli.errors import MedrefError
from medref_cli.training.schedules import (
    build_cosine_scheduler,
    build_optimizer,
    cosine_lr,
    ema_momentum,
    lambda_u_weight,
)


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [
        (-3.0, 0.99),  # still in burn-in: the start value
        (0.0, 0.99),
        (5.0, 0.99 + 0.009 * 5 / 20),  # 0.99225
        (10.0, 0.9945),
        (20.0, 0.999),
        (35.0, 0.999),
    ],
)
def test_ema_momentum_warmup(epochs, expected):
    assert ema_momentum(epochs, start=0.99, end=0.999, warmup_epochs=20) == pytest.approx(expected)


def test_ema_momentum_constant_without_warmup():
    assert ema_momentum(0.0, start=0.99, end=0.999, warmup_epochs=0) == 0.999


@pytest.mark.parametrize(
    ("epochs", "ramp", "expected"),
    [
        (0.0, 15, 0.0),
        (7.5, 15, 0.15),  # halfway: 0.3 / 2
        (3.0, 15, 0.06),  # 0.3 * 3 / 15
        (15.0, 15, 0.3),
        (40.0, 15, 0.3),
        (0.0, 0, 0.3),  # no ramp: full weight at once
    ],
)
def test_lambda_u_ramp(epochs, ramp, expected):
    assert lambda_u_weight(epochs, lambda_u=0.3, ramp_epochs=ramp) == pytest.approx(expected)


def test_negative_ramp_raises():
    with pytest.raises(MedrefError):
        lambda_u_weight(1.0, ramp_epochs=-1)


def test_cosine_lr_worked_values():
    # base 3e-4, min 1e-6: start 3e-4, half-way (3e-4 + 1e-6) / 2 = 1.505e-4, end 1e-6
    assert cosine_lr(0, 100, 3e-4, 1e-6) == pytest.approx(3e-4)
    assert cosine_lr(50, 100, 3e-4, 1e-6) == pytest.approx(1.505e-4)
    assert cosine_lr(25, 100, 3e-4, 1e-6) == pytest.approx(1e-6 + 2.99e-4 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_lr(100, 100, 3e-4, 1e-6) == pytest.approx(1e-6)
    assert cosine_lr(150, 100, 3e-4, 1e-6) == pytest.approx(1e-6)


def test_torch_cosine_scheduler_follows_the_closed_form():
    model = nn.Linear(2, 1)
    optimizer = build_optimizer(model, lr=3e-4, weight_decay=0.05)
    scheduler = build_cosine_scheduler(optimizer, total_steps=10, min_lr=1e-6)
    for step in range(11):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(step, 10, 3e-4, 1e-6), rel=1e-6)
        optimizer.step()
        scheduler.step()


def test_optimizer_skips_frozen_parameters_and_uses_fused_on_cpu():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)  # e.g. a frozen text encoder
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    params = optimizer.param_groups[0]["params"]
    assert len(params) == 2 and all(p.requires_grad for p in params)
    assert optimizer.param_groups[0]["fused"] is True
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
    model(torch.ones(1, 2)).sum().backward()
    before = model[1].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model[1].weight)


def test_optimizer_without_trainable_parameters_raises():
    model = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(MedrefError):
        build_optimizer(model)
