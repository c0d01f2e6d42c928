"""Dice / IoU: global (micro over the split) vs per image, conventions for empty images, worked values."""

from __future__ import annotations

import pytest
import torch

from medref_cli.runtime.metrics import SegmentationMeter, dice_per_image, iou_per_image


def image(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None, None]


# Image A: target has 4 foreground pixels, predicted perfectly -> Dice 1, IoU 1
TARGET_A = image([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
PROBS_A = image([[0.9, 0.8, 0.1], [0.7, 0.6, 0.2], [0.0, 0.3, 0.4]])
# Image B: target has 1 foreground pixel, nothing predicted -> TP 0, FN 1 -> Dice 0, IoU 0
TARGET_B = image([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
PROBS_B = image([[0.1, 0.1, 0.1], [0.1, 0.4, 0.1], [0.1, 0.1, 0.1]])


def test_global_differs_from_mean_of_per_image():
    meter = SegmentationMeter()
    meter.update(torch.cat([PROBS_A, PROBS_B]), torch.cat([TARGET_A, TARGET_B]))
    scores = meter.compute()
    # global: TP = 4, FP = 0, FN = 1 -> Dice = 8 / 9, IoU = 4 / 5
    assert scores["dice_global"] == pytest.approx(8 / 9)
    assert scores["iou_global"] == pytest.approx(4 / 5)
    # per image: (1 + 0) / 2 = 0.5, population std = 0.5
    assert scores["dice_per_image_mean"] == pytest.approx(0.5)
    assert scores["dice_per_image_std"] == pytest.approx(0.5)
    assert scores["iou_per_image_mean"] == pytest.approx(0.5)
    assert scores["iou_per_image_std"] == pytest.approx(0.5)
    assert scores["n_images"] == 2
    assert meter.per_image()["dice"].tolist() == [1.0, 0.0]


def test_partial_overlap_worked_values():
    # target 4 pixels; prediction 3 pixels of which 2 on target: TP 2, FP 1, FN 2
    target = image([[1, 1, 1, 1, 0]])
    probs = image([[0.9, 0.9, 0.1, 0.1, 0.8]])
    # Dice = 2*2 / (2*2 + 1 + 2) = 4/7; IoU = 2 / (2 + 1 + 2) = 2/5
    assert dice_per_image(probs, target).tolist() == pytest.approx([4 / 7])
    assert iou_per_image(probs, target).tolist() == pytest.approx([2 / 5])


def test_empty_conventions():
    empty_probs, empty_target = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    # per image: empty prediction and empty target = a perfect answer
    assert dice_per_image(empty_probs, empty_target).tolist() == [1.0]
    assert iou_per_image(empty_probs, empty_target).tolist() == [1.0]
    assert dice_per_image(empty_probs, empty_target, empty_score=0.0).tolist() == [0.0]
    # global over a split with no foreground anywhere: torchmetrics' zero_division = 0
    meter = SegmentationMeter()
    meter.update(empty_probs, empty_target)
    scores = meter.compute()
    assert scores["dice_global"] == 0.0 and scores["iou_global"] == 0.0
    assert scores["dice_per_image_mean"] == 1.0
    # a false positive on an empty target scores 0 per image
    assert dice_per_image(torch.full((1, 1, 3, 3), 0.9), empty_target).tolist() == [0.0]


def test_threshold_is_strict_and_logits_are_supported():
    target = torch.ones(1, 1, 1, 2)
    # probability exactly 0.5 is background (torchmetrics: preds > threshold)
    assert dice_per_image(torch.tensor([[[[0.5, 0.6]]]]), target).tolist() == pytest.approx([2 / 3])
    # logits 0.1 -> 0.525 (foreground), -0.1 -> 0.475 (background)
    logits = torch.tensor([[[[0.1, -0.1]]]])
    assert dice_per_image(logits, target, from_logits=True).tolist() == pytest.approx([2 / 3])
    meter = SegmentationMeter(from_logits=True)
    meter.update(logits, target)
    assert meter.compute()["dice_global"] == pytest.approx(2 / 3)


def test_accumulating_batches_equals_one_batch():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 1, 8, 8, generator=generator)
    targets = (torch.rand(6, 1, 8, 8, generator=generator) > 0.6).float()
    whole, parts = SegmentationMeter(), SegmentationMeter()
    whole.update(probs, targets)
    for start in (0, 2, 4):
        parts.update(probs[start : start + 2], targets[start : start + 2])
    assert whole.compute() == parts.compute()
    parts.reset()
    with pytest.raises(ValueError):
        parts.compute()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_scores_on_cuda():
    cpu_meter, cuda_meter = SegmentationMeter(), SegmentationMeter()
    probs, targets = torch.cat([PROBS_A, PROBS_B]), torch.cat([TARGET_A, TARGET_B])
    cpu_meter.update(probs, targets)
    cuda_meter.update(probs.cuda(), targets.cuda())
    assert cpu_meter.compute() == cuda_meter.compute()


def test_pixel_accuracy_hand_worked_global_and_per_image():
    from medref_cli.runtime.metrics import pixel_accuracy_per_image

    # A: all 9 pixels right -> 1; B: 8 of 9 right (one missed lesion pixel) -> 8/9
    meter = SegmentationMeter()
    meter.update(torch.cat([PROBS_A, PROBS_B]), torch.cat([TARGET_A, TARGET_B]))
    scores = meter.compute()
    assert scores["pixel_acc_global"] == pytest.approx(17 / 18)
    assert scores["pixel_acc_per_image_mean"] == pytest.approx(17 / 18)
    assert scores["pixel_acc_per_image_std"] == pytest.approx(1 / 18)
    assert meter.per_image()["pixel_acc"].tolist() == pytest.approx([1.0, 8 / 9])
    # a 1x5 image with TP 2, FP 1, FN 2, TN 0 -> 2/5 of its pixels right
    target = image([[1, 1, 1, 1, 0]])
    probs = image([[0.9, 0.9, 0.1, 0.1, 0.8]])
    assert pixel_accuracy_per_image(probs, target).tolist() == pytest.approx([2 / 5])
    # global pools pixels: (9 + 2) / (9 + 5) = 11/14, while the per-image mean is (1 + 2/5) / 2 = 0.7
    meter = SegmentationMeter()
    meter.update(PROBS_A, TARGET_A)
    meter.update(probs, target)
    scores = meter.compute()
    assert scores["pixel_acc_global"] == pytest.approx(11 / 14)
    assert scores["pixel_acc_per_image_mean"] == pytest.approx(0.7)
    # an empty prediction of an empty target is all right; the TP/FP/FN totals keep their shape
    meter = SegmentationMeter()
    meter.update(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))
    assert meter.compute()["pixel_acc_global"] == 1.0
    assert meter.totals().tolist() == [0, 0, 0]
    # probability exactly at the threshold is background (strictly greater is foreground)
    assert pixel_accuracy_per_image(image([[0.5, 0.5]]), image([[0, 1]])).tolist() == pytest.approx([0.5])
