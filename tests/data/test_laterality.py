"""Laterality measure: worked examples for each step and the verdict thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medref_cli.data.laterality import (
    centroid_x,
    laterality_verdict,
    measure_laterality,
    measure_laterality_tensors,
    named_side,
)


@pytest.mark.parametrize(
    ("label", "side"),
    [
        ((1, 0, 0, 0, 0, 0), "left"),
        ((0, 1, 1, 0, 0, 0), "left"),
        ((0, 0, 0, 0, 0, 1), "right"),
        ((1, 0, 0, 0, 0, 1), None),
        ((0, 0, 0, 0, 0, 0), None),
        (None, None),
    ],
)
def test_named_side(label, side):
    assert named_side(label) == side


def test_centroid_x_worked_example():
    mask = np.zeros((4, 8), dtype=np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # columns 1 and 2: centres 1.5 and 2.5 of 8 -> mean 2.0 / 8
    assert centroid_x(mask) == pytest.approx(0.25)
    assert centroid_x(np.zeros((4, 8))) is None


@pytest.mark.parametrize(
    ("share", "count", "verdict"),
    [
        (0.97, 333, "image"),
        (0.8, 10, "image"),
        (0.79, 100, "undetermined"),
        (0.5, 100, "undetermined"),
        (0.2, 50, "patient"),
        (0.0, 12, "patient"),
        (1.0, 9, "undetermined"),  # too few samples
        (None, 0, "undetermined"),
    ],
)
def test_verdict_thresholds(share, count, verdict):
    assert laterality_verdict(share, count) == verdict


def test_measure_counts_only_single_side_samples_with_a_lesion():
    left, right, both = (1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 0), (1, 0, 0, 1, 0, 0)
    pairs = [(left, 0.2)] * 8 + [(right, 0.9)] * 3 + [(left, 0.7)] + [(both, 0.5)] * 5 + [(left, None)] * 4
    report = measure_laterality(pairs)
    assert report.count == 12 and report.share == pytest.approx(11 / 12) and report.verdict == "image"
    mirrored = [(label, None if x is None else 1 - x) for label, x in pairs]
    report = measure_laterality(mirrored)
    assert report.share == pytest.approx(1 / 12) and report.verdict == "patient"


def test_tensor_version_agrees_with_the_array_version():
    rng = np.random.default_rng(0)
    masks = (rng.random((20, 1, 12, 12)) > 0.8).astype(np.uint8)
    masks[3] = 0
    labels = np.zeros((20, 6), dtype=np.uint8)
    labels[::2, 0] = 1
    labels[1::2, 4] = 1
    labels[5, 1] = 1
    labels[5, 3] = 1  # both sides: skipped
    expected = measure_laterality((tuple(l), centroid_x(m[0])) for l, m in zip(labels, masks))
    got = measure_laterality_tensors(torch.from_numpy(masks), torch.from_numpy(labels))
    assert got.count == expected.count and got.share == pytest.approx(expected.share)
