"""mAP, macro-F1, exact match and the other position scores on a hand-worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medref_cli.runtime.position_metrics import (
    average_precision,
    defined,
    multilabel_metrics,
    per_image_scores,
)

# four images x six zones
TARGETS = np.array([[1, 0, 1, 1, 0, 0],
                    [0, 0, 1, 1, 1, 0],
                    [1, 0, 0, 1, 0, 0],
                    [0, 0, 0, 1, 0, 1]])
PROBS = np.array([[0.9, 0.1, 0.2, 0.6, 0.1, 0.4],
                  [0.8, 0.2, 0.1, 0.6, 0.9, 0.4],
                  [0.8, 0.3, 0.6, 0.6, 0.2, 0.4],
                  [0.3, 0.4, 0.4, 0.6, 0.3, 0.6]])


def test_average_precision_steps_once_per_distinct_score():
    # 0.9 (pos): P 1, R 1/2; 0.8 and 0.8 (one pos): P 2/3, R 1  ->  1/2 x 1 + 1/2 x 2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.8, 0.3]) == pytest.approx(5 / 6)
    # two negatives ranked first: P 1/3 at R 1/2, P 1/2 at R 1
    assert average_precision([1, 1, 0, 0], [0.2, 0.1, 0.6, 0.4]) == pytest.approx(5 / 12)
    assert average_precision([0, 0, 0, 1], [0.4, 0.4, 0.4, 0.4]) == pytest.approx(1 / 4)  # one tie of all
    assert math.isnan(average_precision([0, 0, 0], [0.1, 0.5, 0.9]))


def test_multilabel_scores_by_hand():
    m = multilabel_metrics(TARGETS, PROBS, threshold=0.5)
    # zone APs 5/6, undefined (no positive), 5/12, 1, 1, 1: the mean skips the undefined one
    assert m["ap_left_upper"] == pytest.approx(5 / 6)
    assert math.isnan(m["ap_left_middle"])
    assert m["ap_left_lower"] == pytest.approx(5 / 12)
    assert m["mAP"] == pytest.approx((5 / 6 + 5 / 12 + 1 + 1 + 1) / 5)
    # F1 at 0.5: zone 0 TP 2 FP 1 -> P 2/3, R 1, F1 0.8; zones 1 and 2 score 0; zones 3-5 are perfect
    assert [m[f"f1_{z}"] for z in ("left_upper", "left_middle", "left_lower")] == pytest.approx([0.8, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx((0.8 + 0 + 0 + 1 + 1 + 1) / 6)
    # TP 8, FP 2, FN 2 over all zones
    assert m["micro_f1"] == pytest.approx(0.8)
    # only the last image has all six bits right; 4 of 24 bits are wrong
    assert m["exact_match"] == pytest.approx(1 / 4)
    assert m["hamming_accuracy"] == pytest.approx(20 / 24)
    assert m["sample_jaccard"] == pytest.approx((2 / 3 + 2 / 4 + 2 / 3 + 1) / 4)
    assert m["prevalence_left_upper"] == pytest.approx(0.5) and m["n_images"] == 4
    assert "ap_left_middle" not in defined(m) and defined(m)["mAP"] == m["mAP"]


def test_per_image_scores_and_the_threshold():
    per = per_image_scores(TARGETS, PROBS, 0.5)
    assert per["exact"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert per["jaccard"].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3, 1.0])
    # at 0.35 image 3 predicts zones 2 and 4 too (0.4 >= 0.35): no longer exact
    assert per_image_scores(TARGETS, PROBS, 0.35)["exact"].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        multilabel_metrics(TARGETS[:, :5], PROBS[:, :5])
