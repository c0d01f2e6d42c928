"""A model's predictions on the rows of a device-resident split, and their pixel counts.

Shared by the validation of the training loops and the test evaluation: predictions are thresholded
at `threshold` (0.5) on the sigmoid of the logits and scored by `SegmentationMeter`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medref_cli.data.cache import SplitTensors
from medref_cli.data.views import to_unit
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import model_input, take
from medref_cli.runtime.metrics import SegmentationMeter
from medref_cli.runtime.precision import autocast


@torch.inference_mode()
def predict_probs(
    model: nn.Module,
    split: SplitTensors,
    index: torch.Tensor,
    text_cache: TextFeatureCache,
    amp: bool = True,
    channels_last: bool = False,
    captions: list[str] | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sigmoid probabilities (B, 1, H, W) float32 for the rows `index` of a split.

    A model with a soft position input (ISPG) reads `positions` (N, 6) of the whole split at those
    rows, or, when none are given, the split's position labels (the caption's own positions)."""
    batch = take(split, index)
    device = split.images.device
    text = text_cache.encode(captions if captions is not None else batch.captions)
    if getattr(model, "takes_positions", False):
        rows = batch.labels.float() if positions is None else positions.to(device)[batch.index]
        text = text.with_positions(rows)
    elif positions is not None:
        raise ValueError("positions given to a model without a soft position input")
    with autocast(device, amp):
        logits = model(model_input(to_unit(batch.images), channels_last), text).logits
    return torch.sigmoid(logits.float())


def score_batches(model: nn.Module, split: SplitTensors, text_cache: TextFeatureCache,
                  batches: Sequence[torch.Tensor], threshold: float, amp: bool,
                  channels_last: bool, positions: torch.Tensor | None = None) -> SegmentationMeter:
    """The model's predictions for the rows of `batches`, scored in eval mode (its mode restored);
    `positions` (N, 6): the soft position input of a model with one (see `predict_probs`)."""
    was_training = model.training
    model.eval()
    meter = SegmentationMeter(threshold=threshold)
    try:
        for index in batches:
            probs = predict_probs(model, split, index, text_cache, amp, channels_last, positions=positions)
            meter.update(probs, split.masks[index.to(split.images.device)])
    finally:
        model.train(was_training)
    return meter


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
    return score_batches(model, split, text_cache, batches, threshold, amp, channels_last).totals(split.images.device)
