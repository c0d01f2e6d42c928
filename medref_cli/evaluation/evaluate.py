"""Evaluate a model on a device-resident split: Dice, IoU and pixel accuracy, global and per image.

Global = TP/FP/FN accumulated over every pixel of the split (the reference implementation's
definition, the paper's numbers); per image = each image scored alone, then mean and std.
Predictions are thresholded at `threshold` (0.5) on the sigmoid of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medref_cli.data.cache import SplitTensors
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import sequential_batches
from medref_cli.runtime.scoring import score_batches


@dataclass
class EvalResult:
    # dice_global, iou_global, pixel_acc_global, {dice,iou,pixel_acc}_per_image_mean/std, n_images
    metrics: dict[str, float]
    ids: list[str]
    dice: list[float]  # per image, in `ids` order
    iou: list[float]

    def prefixed(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": float(v) for k, v in self.metrics.items()}


@torch.inference_mode()
def evaluate_split(
    model: nn.Module,
    split: SplitTensors,
    text_cache: TextFeatureCache,
    threshold: float = 0.5,
    batch_size: int = 32,
    amp: bool = True,
    channels_last: bool = False,
    positions: torch.Tensor | None = None,
) -> EvalResult:
    """`positions` (N, 6): the soft position input of a model with one (default: the split's labels)."""
    meter = score_batches(model, split, text_cache, sequential_batches(len(split), batch_size), threshold, amp,
                          channels_last, positions)
    per_image = meter.per_image()
    return EvalResult(meter.compute(), list(split.ids), per_image["dice"].tolist(), per_image["iou"].tolist())
