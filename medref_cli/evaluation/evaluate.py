"""Evaluate a model on a device-resident split: Dice, IoU and pixel accuracy, global and per image.

Global = TP/FP/FN accumulated over every pixel of the split (the reference implementation's
definition, the paper's numbers); per image = each image scored alone, then mean and std.
Predictions are thresholded at `threshold` (0.5) on the sigmoid of the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import to_unit
from medref_cli.evaluation.metrics import SegmentationMeter
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.training.batches import model_input, sequential_batches, take
from medref_cli.training.precision import autocast


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
def predict_probs(
    model: nn.Module,
    split: SplitTensors,
    index: torch.Tensor,
    text_cache: TextFeatureCache,
    amp: bool = True,
    channels_last: bool = False,
    captions: list[str] | None = None,
) -> torch.Tensor:
    """Sigmoid probabilities (B, 1, H, W) float32 for the rows `index` of a split."""
    batch = take(split, index)
    device = split.images.device
    text = text_cache.encode(captions if captions is not None else batch.captions)
    with autocast(device, amp):
        logits = model(model_input(to_unit(batch.images), channels_last), text).logits
    return torch.sigmoid(logits.float())


def _score(model: nn.Module, split: SplitTensors, text_cache: TextFeatureCache, batches: Sequence[torch.Tensor],
           threshold: float, amp: bool, channels_last: bool) -> SegmentationMeter:
    """The model's predictions for the rows of `batches`, scored in eval mode (its mode restored)."""
    was_training = model.training
    model.eval()
    meter = SegmentationMeter(threshold=threshold)
    try:
        for index in batches:
            probs = predict_probs(model, split, index, text_cache, amp, channels_last)
            meter.update(probs, split.masks[index.to(split.images.device)])
    finally:
        model.train(was_training)
    return meter


@torch.inference_mode()
def evaluate_split(
    model: nn.Module,
    split: SplitTensors,
    text_cache: TextFeatureCache,
    threshold: float = 0.5,
    batch_size: int = 32,
    amp: bool = True,
    channels_last: bool = False,
) -> EvalResult:
    meter = _score(model, split, text_cache, sequential_batches(len(split), batch_size), threshold, amp,
                   channels_last)
    per_image = meter.per_image()
    return EvalResult(meter.compute(), list(split.ids), per_image["dice"].tolist(), per_image["iou"].tolist())


@torch.inference_mode()
def pixel_counts(
    model: nn.Module,
    split: SplitTensors,
    text_cache: TextFeatureCache,
    batches: Sequence[torch.Tensor],
    threshold: float = 0.5,
    amp: bool = True,
    channels_last: bool = False,
) -> torch.Tensor:
    """(TP, FP, FN) int64 over the rows of `batches` (zeros for none), on the split's device: what the
    global Dice and IoU are made of, summable over shards of a split."""
    return _score(model, split, text_cache, batches, threshold, amp, channels_last).totals(split.images.device)
