"""Mean / sample std / n over seeds, and the paired significance test, on worked examples."""

from __future__ import annotations

import math
from itertools import product

import pytest

from medref_cli.reports.stats import (
    average_over_seeds,
    bootstrap_ci,
    paired_test,
    seed_stats,
    significance_marker,
    wilcoxon_p,
)


@pytest.mark.parametrize(
    ("values", "mean", "std"),
    [
        ([0.5], 0.5, None),  # one seed: no std
        ([1.0, 2.0, 3.0], 2.0, 1.0),  # squares 1 + 0 + 1 = 2, / (n - 1) = 1
        ([2.0, 4.0], 3.0, math.sqrt(2.0)),  # (1 + 1) / 1 = 2
        ([86.2, 86.4, 86.6], 86.4, 0.2),  # (0.04 + 0 + 0.04) / 2 = 0.04
        ([5.0, 5.0, 5.0, 5.0], 5.0, 0.0),
    ],
)
def test_seed_stats_mean_sample_std_and_n(values, mean, std):
    stats = seed_stats(values)
    assert stats.n == len(values)
    assert stats.mean == pytest.approx(mean)
    if std is None:
        assert stats.std is None
    else:
        assert stats.std == pytest.approx(std)


def test_seed_stats_needs_a_value():
    with pytest.raises(ValueError):
        seed_stats([])


def test_average_over_seeds_keeps_images_every_seed_scored():
    per_seed = [{"a": 1.0, "b": 3.0}, {"a": 3.0, "b": 5.0, "c": 9.0}]
    assert average_over_seeds(per_seed) == {"a": 2.0, "b": 4.0}
    assert average_over_seeds([]) == {}


def exact_two_sided_p(differences: list[float]) -> float:
    """Wilcoxon signed-rank exact p-value by enumerating every sign pattern (distinct |d|, no zeros)."""
    ranks = {abs(d): r for r, d in enumerate(sorted(differences, key=abs), start=1)}
    w_plus = sum(ranks[abs(d)] for d in differences if d > 0)
    n = len(differences)
    sums = [sum(r for r, keep in zip(range(1, n + 1), signs, strict=True) if keep)
            for signs in product((0, 1), repeat=n)]
    low = sum(1 for s in sums if s <= w_plus) / len(sums)
    high = sum(1 for s in sums if s >= w_plus) / len(sums)
    return min(1.0, 2 * min(low, high))


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.1 * (i + 1) for i in range(10)], 2 / 2**10),  # all ten better: only 2 of 1024 patterns as extreme
        ([0.1 * (i + 1) for i in range(5)], 2 / 2**5),  # five better: 0.0625, not significant
        ([1.0, -2.0, 3.0, -4.0, 5.0, -6.0], 54 / 64),  # W+ = 9: 27 of 64 subsets sum to <= 9
    ],
)
def test_wilcoxon_matches_the_exact_distribution(differences, expected):
    assert exact_two_sided_p(differences) == pytest.approx(expected)
    assert wilcoxon_p(differences) == pytest.approx(expected)


def test_wilcoxon_with_no_difference_is_not_significant():
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0


@pytest.mark.parametrize(
    ("p", "marker"),
    [(0.001, "**"), (0.0099, "**"), (0.01, "*"), (0.049, "*"), (0.05, ""), (0.3, "")],
)
def test_significance_markers(p, marker):
    assert significance_marker(p) == marker


def test_bootstrap_ci_of_a_constant_difference_is_that_difference():
    assert bootstrap_ci([0.25] * 12) == pytest.approx((0.25, 0.25))


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    diffs = [0.1, -0.05, 0.2, 0.0, 0.15, 0.05, -0.1, 0.3]
    low, high = bootstrap_ci(diffs)
    assert low < sum(diffs) / len(diffs) < high
    assert bootstrap_ci(diffs) == (low, high)
    assert min(diffs) <= low and high <= max(diffs)


def test_paired_test_pairs_images_by_sample_id():
    method = {"a": 0.9, "b": 0.8, "c": 0.7}
    baseline = {"c": 0.6, "b": 0.7, "a": 0.8, "only-in-baseline": 0.1}
    test = paired_test(method, baseline)
    assert test.n_images == 3
    assert test.mean_difference == pytest.approx(0.1)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.1, 0.1))
    assert test.p_value == pytest.approx(2 / 2**3)  # three ties at +0.1: both extreme patterns of 8
    assert test.marker == ""


def test_paired_test_needs_two_shared_images():
    assert paired_test({"a": 0.9, "b": 0.5}, {"a": 0.8, "c": 0.1}) is None
