"""The position predictor's loss terms on a hand-worked case (one image, six zones)."""

from __future__ import annotations

import math

import pytest
import torch

from medref_cli.losses.position import position_loss, position_loss_terms, positive_weights

LN3 = math.log(3.0)
# p = sigmoid(z) = 0.5, 0.75, 0.25, 0.5, 0.5, 0.5
LOGITS = torch.tensor([[0.0, LN3, -LN3, 0.0, 0.0, 0.0]])
TARGET = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])

# per entry -[t ln p + (1 - t) ln(1 - p)]
BCE = (math.log(2) + math.log(4) + math.log(4 / 3) + 3 * math.log(2)) / 6
# positives: -(1 - p)^0 ln p; negatives: -p^2 ln(1 - p)
ASYMMETRIC = (2 * math.log(2) + 0.75**2 * math.log(4) + 0.25**2 * math.log(4 / 3) + 2 * 0.25 * math.log(2)) / 6
# sum(p) / 6 = 3 / 6, sum(t) / 6 = 2 / 6: |d| = 1/6 < 1, smooth-L1 = d^2 / 2
CARDINALITY = 0.5 * (1 / 6) ** 2


def test_each_term_and_the_reference_weighting_by_hand():
    terms = position_loss_terms(LOGITS, TARGET, gamma_negative=2.0, gamma_positive=0.0)
    assert float(terms["bce"]) == pytest.approx(BCE, rel=1e-6)
    assert float(terms["asymmetric"]) == pytest.approx(ASYMMETRIC, rel=1e-6)
    assert float(terms["cardinality"]) == pytest.approx(CARDINALITY, rel=1e-6)
    total, _ = position_loss(LOGITS, TARGET)  # bce_mix 0.5, gamma_neg 2, gamma_pos 0, cardinality 0.1
    assert float(total) == pytest.approx(0.5 * BCE + 0.5 * ASYMMETRIC + 0.1 * CARDINALITY, rel=1e-6)


def test_gamma_positive_focuses_the_positive_entries():
    terms = position_loss_terms(LOGITS, TARGET, gamma_negative=0.0, gamma_positive=1.0)
    # positives (p = 0.5 twice): -(1 - p) ln p; negatives with gamma 0: plain -ln(1 - p)
    expected = (2 * 0.5 * math.log(2) + math.log(4) + math.log(4 / 3) + 2 * math.log(2)) / 6
    assert float(terms["asymmetric"]) == pytest.approx(expected, rel=1e-6)


def test_cardinality_of_every_zone_predicted_against_none():
    logits = torch.full((1, 6), 20.0)  # p ~ 1 everywhere
    target = torch.zeros(1, 6)
    # shares 1 and 0: |d| ~ 1, where smooth-L1's two pieces meet at 0.5
    assert float(position_loss_terms(logits, target)["cardinality"]) == pytest.approx(0.5, abs=1e-5)


def test_positive_weights_are_negatives_over_positives_clamped():
    labels = torch.tensor([[1, 1, 0, 1, 0, 1],
                           [0, 1, 0, 1, 0, 0],
                           [0, 1, 0, 0, 0, 0],
                           [0, 1, 0, 0, 1, 0]])
    # zone 0: 3/1; zone 1: 0/4 -> 0.25; zone 2: no positive, 4/max(0,1) = 4; zone 3: 2/2; zone 4: 3/1; zone 5: 3
    assert positive_weights(labels).tolist() == pytest.approx([3.0, 0.25, 4.0, 1.0, 3.0, 3.0])
    many = torch.zeros(10, 6)
    many[0] = 1
    assert positive_weights(many).tolist() == pytest.approx([4.0] * 6)  # 9/1 clamped to 4


def test_pos_weight_scales_the_positive_bce_entries_only():
    w = torch.tensor([2.0, 1.0, 1.0, 3.0, 1.0, 1.0])
    terms = position_loss_terms(LOGITS, TARGET, pos_weight=w)
    expected = (2 * math.log(2) + math.log(4) + math.log(4 / 3) + 3 * math.log(2) + 2 * math.log(2)) / 6
    assert float(terms["bce"]) == pytest.approx(expected, rel=1e-6)
    # bce_mix 1 and no cardinality: the reference's stand-alone trainer's BCEWithLogitsLoss(pos_weight)
    total, _ = position_loss(LOGITS, TARGET, bce_mix=1.0, cardinality_weight=0.0, pos_weight=w)
    reference = torch.nn.BCEWithLogitsLoss(pos_weight=w)(LOGITS, TARGET)
    assert float(total) == pytest.approx(float(reference), rel=1e-6)
