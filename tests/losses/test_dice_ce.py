"""DiceCELoss: both the Dice and the BCE term act, with worked values."""

from __future__ import annotations

import math

import pytest
import torch

from medref_cli.losses.dice_ce import DiceCELoss

SMOOTH = 1e-5  # MONAI's smooth_nr = smooth_dr default


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(x: float, y: float) -> float:
    """BCE-with-logits of one pixel: softplus(-x) for y = 1, softplus(x) for y = 0."""
    return math.log1p(math.exp(-x)) if y == 1 else math.log1p(math.exp(x))


def soft_dice_loss(logits: list[float], target: list[float]) -> float:
    p = [sigmoid(x) for x in logits]
    intersection = sum(pi * yi for pi, yi in zip(p, target))
    return 1.0 - (2.0 * intersection + SMOOTH) / (sum(p) + sum(target) + SMOOTH)


ZERO_LOGITS = torch.zeros(1, 1, 2, 2)
HALF_TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
# p = 0.5 everywhere: sum(p*y) = 1, sum(p) = 2, sum(y) = 2
# Dice loss = 1 - (2*1 + 1e-5) / (2 + 2 + 1e-5) = 0.49999875
# BCE = ln 2 = 0.69314718 at every pixel
DICE_HALF = 1.0 - (2.0 + SMOOTH) / (4.0 + SMOOTH)
LN2 = math.log(2.0)


@pytest.mark.parametrize(
    ("dice_weight", "ce_weight", "expected"),
    [
        (1.0, 1.0, DICE_HALF + LN2),  # 1.19314593
        (1.0, 2.0, DICE_HALF + 2 * LN2),  # 1.88629311: the CE weight changes the loss
        (1.0, 0.0, DICE_HALF),
        (0.0, 1.0, LN2),  # the CE term alone is not zero for 1 channel
        (2.0, 1.0, 2 * DICE_HALF + LN2),
    ],
)
def test_weighted_terms_on_zero_logits(dice_weight, ce_weight, expected):
    loss = DiceCELoss(dice_weight=dice_weight, ce_weight=ce_weight)(ZERO_LOGITS, HALF_TARGET)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert DICE_HALF == pytest.approx(0.49999875, abs=1e-8)


def test_two_samples_match_hand_computation():
    logits = [[2.0, -1.0, 0.0, 1.0], [-2.0, -2.0, -2.0, -2.0]]
    targets = [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    # Dice per sample, then the batch mean (MONAI batch=False)
    dice = (soft_dice_loss(logits[0], targets[0]) + soft_dice_loss(logits[1], targets[1])) / 2
    # BCE: mean over all 8 pixels
    ce = sum(bce(x, y) for xs, ys in zip(logits, targets) for x, y in zip(xs, ys)) / 8
    # sample 0: p = (0.8808, 0.2689, 0.5, 0.7311), dice loss 0.264127; sample 1: dice loss 0.999979
    assert soft_dice_loss(logits[0], targets[0]) == pytest.approx(0.264127, abs=1e-6)
    assert ce == pytest.approx((0.126928 + 0.313262 + 0.693147 + 0.313262 + 4 * 0.126928) / 8, abs=1e-6)
    x = torch.tensor(logits).view(2, 1, 2, 2)
    y = torch.tensor(targets).view(2, 1, 2, 2)
    loss_fn = DiceCELoss()
    assert loss_fn(x, y).item() == pytest.approx(dice + ce, abs=1e-6)
    terms = loss_fn.terms(x, y)
    assert terms["dice"].item() == pytest.approx(dice, abs=1e-6)
    assert terms["ce"].item() == pytest.approx(ce, abs=1e-6)


def test_both_terms_send_gradient():
    x = torch.tensor([[[[2.0, -1.0], [0.0, 1.0]]]], requires_grad=True)
    y = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    grads = {}
    for name, weights in {"dice": (1.0, 0.0), "ce": (0.0, 1.0)}.items():
        x.grad = None
        DiceCELoss(*weights)(x, y).backward()
        grads[name] = x.grad.clone()
        assert grads[name].abs().sum() > 0
    # BCE gradient is (sigmoid(x) - y) / N
    expected_ce = (torch.sigmoid(x.detach()) - y) / 4
    assert torch.allclose(grads["ce"], expected_ce, atol=1e-6)
    assert not torch.allclose(grads["dice"], grads["ce"])


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        DiceCELoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError):
        DiceCELoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_paper_reading_has_both_terms_and_the_reference_reading_is_dice_only():
    """Paper eq. 2: Dice + BCE (the default ce_weight 1). The reference's MONAI 1.0.1 DiceCELoss drops
    the CE term for one channel: train.ce_weight 0 gives exactly the Dice term."""
    from medref_cli.config import load_config

    assert load_config().train.ce_weight == 1.0
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    p = torch.sigmoid(logits)
    dice = (1 - (2 * (p * target).sum((1, 2, 3)) + 1e-5) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1e-5)).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert DiceCELoss(1.0, 0.0)(logits, target).item() == pytest.approx(dice.item(), rel=1e-5)
    assert DiceCELoss(1.0, 1.0)(logits, target).item() == pytest.approx((dice + bce).item(), rel=1e-5)
