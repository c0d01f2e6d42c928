"""Position-label tensor ops (B, 6), bit order left upper/middle/lower, right upper/middle/lower.

Tensor counterparts of the caption-side rules in :mod:`medref_cli.text.augment`
(``laterality_conflict``, ``flip_label``, union of labels); a test keeps the two equal.
Labels may be bool, integer or float tensors holding 0/1; results are bool unless stated.
"""

from __future__ import annotations

import torch

LEFT_BITS = slice(0, 3)
RIGHT_BITS = slice(3, 6)


def names_left(labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the label names at least one left zone."""
    return labels[:, LEFT_BITS].bool().any(dim=1)


def names_right(labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the label names at least one right zone."""
    return labels[:, RIGHT_BITS].bool().any(dim=1)


def laterality_conflict(labels_i: torch.Tensor, labels_j: torch.Tensor) -> torch.Tensor:
    """(B,) bool: row b of ``labels_i`` and row b of ``labels_j`` name opposite sides only.

    A conflict is one label naming only left zones and the other only right zones. A
    bilateral label never conflicts, and neither does an empty one (it names no side).
    """
    left_i, right_i = names_left(labels_i), names_right(labels_i)
    left_j, right_j = names_left(labels_j), names_right(labels_j)
    only_left_i, only_right_i = left_i & ~right_i, right_i & ~left_i
    only_left_j, only_right_j = left_j & ~right_j, right_j & ~left_j
    return (only_left_i & only_right_j) | (only_right_i & only_left_j)


def swap_left_right(labels: torch.Tensor) -> torch.Tensor:
    """The labels of horizontally flipped images: left bits and right bits exchanged (same dtype)."""
    return torch.cat([labels[:, RIGHT_BITS], labels[:, LEFT_BITS]], dim=1)


def union_labels(labels_i: torch.Tensor, labels_j: torch.Tensor) -> torch.Tensor:
    """Bitwise OR of two label batches, in the dtype of ``labels_i`` (the label of "pos_i and pos_j")."""
    return (labels_i.bool() | labels_j.bool()).to(labels_i.dtype)
