"""The position predictor's loss: BCE, an asymmetric focal term and a cardinality term (ISPG).

For logits z (B, 6), targets t in {0, 1} and p = sigmoid(z) clamped to [1e-6, 1 - 1e-6]:

    BCE          = mean over all B x 6 entries of the (positive-weighted) binary cross-entropy
    asymmetric   = mean of  -t (1 - p)^gamma_pos log p  -  (1 - t) p^gamma_neg log(1 - p)
    cardinality  = smooth-L1 (beta 1) between sum(p) / 6 and sum(t) / 6, mean over the batch
    loss         = bce_mix x BCE + (1 - bce_mix) x asymmetric + cardinality_weight x cardinality

as the reference's ISPG wrapper defines it (`engine/wrapper_semi_soft_position.py`,
`_position_loss`: bce_mix 0.5, gamma_neg 2, gamma_pos 0, cardinality 0.1). Its stand-alone
predictor trainer (`train_position_predictor.py`) uses the BCE alone, with per-zone positive weights
negatives / positives on the training labels clamped to [0.25, 4]: `pos_weight` gives those to the
BCE term here, and bce_mix 1 with cardinality_weight 0 is that trainer's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PROB_EPS = 1e-6
POS_WEIGHT_RANGE = (0.25, 4.0)


def positive_weights(labels: Tensor) -> Tensor:
    """(6,) negatives / max(positives, 1) per zone over (N, 6) labels, clamped to [0.25, 4]."""
    labels = labels.float()
    positives = labels.sum(dim=0)
    negatives = labels.shape[0] - positives
    return (negatives / positives.clamp_min(1.0)).clamp(*POS_WEIGHT_RANGE)


def position_loss_terms(logits: Tensor, target: Tensor, gamma_negative: float = 2.0, gamma_positive: float = 0.0,
                        pos_weight: Tensor | None = None) -> dict[str, Tensor]:
    """The three unweighted terms {"bce", "asymmetric", "cardinality"} (scalars)."""
    logits = logits.float()
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    p = torch.sigmoid(logits).clamp(PROB_EPS, 1.0 - PROB_EPS)
    positive = -target * (1.0 - p).pow(gamma_positive) * p.log()
    negative = -(1.0 - target) * p.pow(gamma_negative) * (1.0 - p).log()
    cardinality = F.smooth_l1_loss(p.sum(dim=1) / p.shape[1], target.sum(dim=1) / p.shape[1])
    return {"bce": bce, "asymmetric": (positive + negative).mean(), "cardinality": cardinality}


def position_loss(logits: Tensor, target: Tensor, bce_mix: float = 0.5, gamma_negative: float = 2.0,
                  gamma_positive: float = 0.0, cardinality_weight: float = 0.1,
                  pos_weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """(weighted total, the unweighted terms)."""
    terms = position_loss_terms(logits, target, gamma_negative, gamma_positive, pos_weight)
    total = bce_mix * terms["bce"] + (1.0 - bce_mix) * terms["asymmetric"] + cardinality_weight * terms["cardinality"]
    return total, terms
