"""Segmentation metrics at a probability threshold: Dice, IoU and pixel accuracy, global and per image.

Conventions (the names in results say which is which):

- **Binarisation.** A pixel is predicted foreground when its probability is strictly greater
  than ``threshold`` (0.5), as torchmetrics does; pass ``from_logits=True`` to apply the
  sigmoid first. Targets are 0/1 masks (any dtype; nonzero = foreground).
- **Global** (``dice_global``, ``iou_global``): TP, FP and FN summed over every pixel of
  every image of the split, then ``Dice = 2TP / (2TP + FP + FN)``, ``IoU = TP / (TP + FP + FN)``:
  the reference implementation's torchmetrics micro ``Dice()`` and ``BinaryJaccardIndex()``.
  When the whole split has no predicted and no true foreground the denominator is 0 and the
  score is ``zero_division`` (0.0, the torchmetrics default).
- **Pixel accuracy** (``pixel_acc_global``): ``(TP + TN) / (TP + FP + FN + TN)`` over every
  pixel of the split, the reference's torchmetrics ``Accuracy(task="binary")``, which it logs as
  ``acc`` beside Dice and IoU. It is dominated by the background and reported for comparison only.
- **Per image** (``dice_per_image_*``, ``iou_per_image_*``, ``pixel_acc_per_image_*``): the same
  formulas for each image alone, then mean and population standard deviation (ddof = 0) over images. An image with
  an empty prediction and an empty target scores ``empty_score`` (1.0: a perfect answer).

Counts stay on the device (int64) during accumulation; nothing syncs with the host until
:meth:`SegmentationMeter.compute`.
"""

from __future__ import annotations

import torch


def binarize(scores: torch.Tensor, threshold: float = 0.5, from_logits: bool = False) -> torch.Tensor:
    """Bool foreground map: ``sigmoid(scores) > threshold`` if ``from_logits`` else ``scores > threshold``."""
    probs = torch.sigmoid(scores) if from_logits else scores
    return probs > threshold


def confusion_per_image(
    predicted: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(TP, FP, FN), each (B,) int64, of bool predictions against 0/1 targets, per image."""
    predicted = predicted.bool().flatten(1)
    truth = targets.bool().flatten(1)
    tp = (predicted & truth).sum(dim=1)
    fp = (predicted & ~truth).sum(dim=1)
    fn = (~predicted & truth).sum(dim=1)
    return tp, fp, fn


def true_negatives(predicted: torch.Tensor, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """(B,) int64 TN: the pixels of each image that are neither TP, FP nor FN."""
    pixels = predicted[0].numel() if predicted.shape[0] else 0
    return pixels - tp - fp - fn


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, if_zero: float) -> torch.Tensor:
    numerator, denominator = numerator.double(), denominator.double()
    safe = denominator.clamp(min=1.0)
    return torch.where(denominator > 0, numerator / safe, torch.full_like(denominator, if_zero))


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, if_empty: float) -> torch.Tensor:
    """2TP / (2TP + FP + FN), ``if_empty`` where the denominator is 0 (float64)."""
    return _ratio(2 * tp, 2 * tp + fp + fn, if_empty)


def iou_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, if_empty: float) -> torch.Tensor:
    """TP / (TP + FP + FN), ``if_empty`` where the denominator is 0 (float64)."""
    return _ratio(tp, tp + fp + fn, if_empty)


def pixel_accuracy_from_counts(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor, if_empty: float = 0.0
) -> torch.Tensor:
    """(TP + TN) / (TP + FP + FN + TN), ``if_empty`` where there are no pixels (float64)."""
    return _ratio(tp + tn, tp + fp + fn + tn, if_empty)


def pixel_accuracy_per_image(
    probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5, from_logits: bool = False
) -> torch.Tensor:
    """(B,) float64 share of each image's pixels whose binarised prediction equals the target."""
    predicted = binarize(probs, threshold, from_logits)
    tp, fp, fn = confusion_per_image(predicted, targets)
    return pixel_accuracy_from_counts(tp, fp, fn, true_negatives(predicted, tp, fp, fn))


def dice_per_image(
    probs: torch.Tensor,
    targets: torch.Tensor,
    threshold: float = 0.5,
    empty_score: float = 1.0,
    from_logits: bool = False,
) -> torch.Tensor:
    """(B,) float64 Dice of each image; empty prediction and empty target score ``empty_score``."""
    counts = confusion_per_image(binarize(probs, threshold, from_logits), targets)
    return dice_from_counts(*counts, if_empty=empty_score)


def iou_per_image(
    probs: torch.Tensor,
    targets: torch.Tensor,
    threshold: float = 0.5,
    empty_score: float = 1.0,
    from_logits: bool = False,
) -> torch.Tensor:
    """(B,) float64 IoU of each image; empty prediction and empty target score ``empty_score``."""
    counts = confusion_per_image(binarize(probs, threshold, from_logits), targets)
    return iou_from_counts(*counts, if_empty=empty_score)


class SegmentationMeter:
    """Accumulates a split's Dice, IoU and pixel accuracy, both global (micro) and per image.

    ``update(probs, targets)`` takes a (B, 1, H, W) batch of probabilities (or logits with
    ``from_logits=True``) and 0/1 targets; ``compute()`` returns a dict of Python floats:
    ``dice_global, iou_global, pixel_acc_global``, ``{dice,iou,pixel_acc}_per_image_{mean,std}``
    and ``n_images``. ``per_image()`` gives the per-image values (CPU).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = False,
        empty_score: float = 1.0,
        zero_division: float = 0.0,
    ) -> None:
        self.threshold = threshold
        self.from_logits = from_logits
        self.empty_score = empty_score
        self.zero_division = zero_division
        self.reset()

    def reset(self) -> None:
        self._totals: torch.Tensor | None = None  # (4,) int64: TP, FP, FN, TN over the split
        self._per_image: list[torch.Tensor] = []  # (B, 4) int64 per batch

    @torch.no_grad()
    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        if probs.shape != targets.shape:
            raise ValueError(f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} differ in shape")
        predicted = binarize(probs, self.threshold, self.from_logits)
        tp, fp, fn = confusion_per_image(predicted, targets)
        counts = torch.stack((tp, fp, fn, true_negatives(predicted, tp, fp, fn)), 1)
        self._per_image.append(counts)
        batch_totals = counts.sum(dim=0)
        self._totals = batch_totals if self._totals is None else self._totals + batch_totals

    def totals(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(TP, FP, FN) int64 over every update so far (zeros before the first), on `device` when empty."""
        if self._totals is None:
            return torch.zeros(3, dtype=torch.int64, device=device)
        return self._totals[:3]

    def _all_counts(self) -> torch.Tensor:
        if not self._per_image:
            raise ValueError("SegmentationMeter.compute() called before any update()")
        return torch.cat(self._per_image)

    def per_image(self) -> dict[str, torch.Tensor]:
        """``{"dice", "iou", "pixel_acc"}`` -> (N,) float64 CPU tensors, in the order of the updates."""
        tp, fp, fn, tn = self._all_counts().cpu().unbind(dim=1)
        return {
            "dice": dice_from_counts(tp, fp, fn, self.empty_score),
            "iou": iou_from_counts(tp, fp, fn, self.empty_score),
            "pixel_acc": pixel_accuracy_from_counts(tp, fp, fn, tn),
        }

    def compute(self) -> dict[str, float]:
        values = self.per_image()
        tp, fp, fn, tn = self._totals.cpu().unbind(0)
        return {
            "dice_global": float(dice_from_counts(tp, fp, fn, self.zero_division)),
            "iou_global": float(iou_from_counts(tp, fp, fn, self.zero_division)),
            "pixel_acc_global": float(pixel_accuracy_from_counts(tp, fp, fn, tn)),
            "dice_per_image_mean": float(values["dice"].mean()),
            "dice_per_image_std": float(values["dice"].std(correction=0)),
            "iou_per_image_mean": float(values["iou"].mean()),
            "iou_per_image_std": float(values["iou"].std(correction=0)),
            "pixel_acc_per_image_mean": float(values["pixel_acc"].mean()),
            "pixel_acc_per_image_std": float(values["pixel_acc"].std(correction=0)),
            "n_images": int(values["dice"].numel()),
        }
