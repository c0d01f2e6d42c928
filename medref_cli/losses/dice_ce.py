"""Dice + BCE on 1-channel logits: ``monai.losses.DiceCELoss(sigmoid=True)`` (paper eq. 2 and 4).

MONAI 1.6 behaviour, checked by the tests: for a 1-channel input ``DiceCELoss`` uses
``BCEWithLogitsLoss`` as its CE term (older releases ran ``CrossEntropyLoss`` over a single
channel, which is identically zero), so the loss is

    dice_weight * mean_b [1 - (2 sum(p y) + 1e-5) / (sum p + sum y + 1e-5)]
  + ce_weight   * mean over all pixels of BCE-with-logits(x, y),

with ``p = sigmoid(x)``, the Dice term computed per sample (MONAI ``batch=False``) and then
averaged over the batch. Targets are float 0/1 masks of the same (B, 1, H, W) shape.
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss as MonaiDiceCELoss
from torch import nn

from medref_cli.errors import MedrefError


class DiceCELoss(nn.Module):
    """Weighted Dice + BCE-with-logits loss for (B, 1, H, W) logits and 0/1 float targets."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0:
            raise MedrefError(f"loss weights must be >= 0, got dice {dice_weight}, ce {ce_weight}")
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.monai_loss = MonaiDiceCELoss(sigmoid=True, lambda_dice=dice_weight, lambda_ce=ce_weight)

    @staticmethod
    def _check_shapes(logits: torch.Tensor, targets: torch.Tensor) -> None:
        if logits.ndim != 4 or logits.shape[1] != 1 or targets.shape != logits.shape:
            raise ValueError(
                f"expected (B, 1, H, W) logits and targets of the same shape, "
                f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
            )

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss: dice_weight * Dice loss + ce_weight * BCE."""
        self._check_shapes(logits, targets)
        return self.monai_loss(logits, targets.to(logits.dtype))

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"dice": ..., "ce": ...}`` (scalars), for logging."""
        self._check_shapes(logits, targets)
        targets = targets.to(logits.dtype)
        return {"dice": self.monai_loss.dice(logits, targets), "ce": self.monai_loss.bce(logits, targets)}
