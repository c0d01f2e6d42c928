"""Label-tensor rules: the laterality conflict table, the left/right swap, and agreement with the text side."""

from __future__ import annotations

import itertools

import pytest
import torch

from medref_cli.augment.labels import laterality_conflict, swap_left_right, union_labels
from medref_cli.text import flip_label
from medref_cli.text import laterality_conflict as text_laterality_conflict

LU = [1, 0, 0, 0, 0, 0]
LEFT = [1, 1, 1, 0, 0, 0]
RM = [0, 0, 0, 0, 1, 0]
RIGHT_LOWER_MIDDLE = [0, 0, 0, 0, 1, 1]
BILATERAL = [0, 0, 1, 0, 0, 1]
EMPTY = [0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("q_i", "q_j", "conflict"),
    [
        (LU, RM, True),  # only left vs only right
        (RIGHT_LOWER_MIDDLE, LEFT, True),  # only right vs only left
        (LU, LEFT, False),  # same side
        (RM, RIGHT_LOWER_MIDDLE, False),
        (LU, BILATERAL, False),  # bilateral never conflicts
        (BILATERAL, RM, False),
        (BILATERAL, BILATERAL, False),
        (EMPTY, RM, False),  # an empty label names no side
        (EMPTY, EMPTY, False),
    ],
)
def test_conflict_table(q_i, q_j, conflict):
    result = laterality_conflict(torch.tensor([q_i]), torch.tensor([q_j]))
    assert result.tolist() == [conflict]


def test_conflict_is_vectorised_and_accepts_float_or_bool():
    labels_i = torch.tensor([LU, LU, BILATERAL], dtype=torch.float32)
    labels_j = torch.tensor([RM, LEFT, RM], dtype=torch.bool)
    assert laterality_conflict(labels_i, labels_j).tolist() == [True, False, False]


ALL_LABELS = [list(bits) for bits in itertools.product([0, 1], repeat=6)]


def test_agrees_with_text_side_on_all_label_pairs():
    pairs = list(itertools.product(ALL_LABELS, ALL_LABELS))
    labels_i = torch.tensor([a for a, _ in pairs])
    labels_j = torch.tensor([b for _, b in pairs])
    tensor_rule = laterality_conflict(labels_i, labels_j).tolist()
    text_rule = [text_laterality_conflict(a, b) for a, b in pairs]
    assert tensor_rule == text_rule
    assert sum(text_rule) == 2 * 7 * 7  # (2^3 - 1) only-left x (2^3 - 1) only-right, both orders


def test_swap_left_right_matches_text_flip():
    swapped = swap_left_right(torch.tensor(ALL_LABELS)).tolist()
    assert swapped == [list(flip_label(bits)) for bits in ALL_LABELS]
    assert swap_left_right(torch.tensor([LU])).tolist() == [[0, 0, 0, 1, 0, 0]]


def test_union_labels():
    union = union_labels(torch.tensor([LU, EMPTY]), torch.tensor([RM, EMPTY]))
    assert union.tolist() == [[1, 0, 0, 0, 1, 0], EMPTY]
