"""Measure whether "left"/"right" in a data set's captions mean the image's or the patient's side.

Among the samples whose position label names one side only (bits on the left or on the right,
not both) and whose mask is not empty, count the share whose mask centroid lies in the image
half that the caption names (left half: centroid x < width / 2). A high share (>= 0.8) means
the captions follow the image ("image"), a low one (<= 0.2) the patient, who faces the viewer
("patient"); anything between, or fewer than `min_count` samples, is "undetermined".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_SHARE = 0.8
PATIENT_SHARE = 0.2
MIN_COUNT = 10


@dataclass(frozen=True)
class LateralityReport:
    share: float | None  # share of single-side samples whose centroid is in the named image half
    count: int  # single-side samples with a non-empty mask
    verdict: str  # image | patient | undetermined

    def to_dict(self) -> dict:
        return {"share": self.share, "count": self.count, "verdict": self.verdict}

    def describe(self) -> str:
        if self.share is None:
            return f"{self.verdict} (no single-side caption with a non-empty mask)"
        return (
            f"{self.verdict} ({self.share:.1%} of {self.count} single-side captions have their mask "
            f"centroid in the named half of the image)"
        )


def named_side(label: Sequence[int] | None) -> str | None:
    """'left' / 'right' when the 6-bit label names that side only, else None."""
    if label is None or len(label) != 6:
        return None
    left, right = any(label[:3]), any(label[3:])
    if left and not right:
        return "left"
    if right and not left:
        return "right"
    return None


def centroid_x(mask: np.ndarray) -> float | None:
    """Horizontal centroid of a (H, W) mask as a fraction of the width (pixel centres), None if empty."""
    columns = np.nonzero(mask)[1]
    if columns.size == 0:
        return None
    return float((columns.mean() + 0.5) / mask.shape[1])


def in_named_half(side: str, x: float) -> bool:
    return x < 0.5 if side == "left" else x > 0.5


def laterality_verdict(share: float | None, count: int, min_count: int = MIN_COUNT) -> str:
    if share is None or count < min_count:
        return "undetermined"
    if share >= IMAGE_SHARE:
        return "image"
    if share <= PATIENT_SHARE:
        return "patient"
    return "undetermined"


def measure_laterality(
    samples: Iterable[tuple[Sequence[int] | None, float | None]], min_count: int = MIN_COUNT
) -> LateralityReport:
    """From (label, centroid x) pairs; pairs with a two-sided or no label, or no centroid, are skipped."""
    hits = count = 0
    for label, x in samples:
        side = named_side(label)
        if side is None or x is None:
            continue
        count += 1
        hits += in_named_half(side, x)
    share = hits / count if count else None
    return LateralityReport(share, count, laterality_verdict(share, count, min_count))


def measure_laterality_tensors(masks, labels, min_count: int = MIN_COUNT) -> LateralityReport:
    """The same measure on cached tensors: masks (N, 1, H, W) in {0, 1}, labels (N, 6); any device."""
    import torch

    masks = masks.flatten(0, 1).float()  # (N, H, W)
    width = masks.shape[-1]
    column_mass = masks.sum(dim=1)  # (N, W)
    total = column_mass.sum(dim=1)
    centres = (torch.arange(width, device=masks.device, dtype=torch.float32) + 0.5) / width
    xs = (column_mass * centres).sum(dim=1) / total.clamp_min(1)
    pairs = [
        (tuple(int(v) for v in label), float(x) if t > 0 else None)
        for label, x, t in zip(labels.cpu().tolist(), xs.cpu().tolist(), total.cpu().tolist())
    ]
    return measure_laterality(pairs, min_count)
