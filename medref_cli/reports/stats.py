"""Numbers behind a cell: mean, sample std and n over seeds; paired tests between two cells.

Paired test design: each cell may hold several seeds. Each image's Dice is first averaged over
the seeds of its cell (`average_over_seeds`), then the two cells are paired by sample id on the
images both have. On the paired differences (method - baseline) we run the two-sided Wilcoxon
signed-rank test (scipy; zero differences dropped, exact distribution for small n) and a paired
bootstrap 95% CI of the mean difference (percentile method, fixed RNG seed: reproducible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medref_cli.reports.model import SeedStats, Significance

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# (threshold, marker), strictest first
SIGNIFICANCE_MARKERS = ((0.01, "**"), (0.05, "*"))


def seed_stats(values: Sequence[float]) -> SeedStats:
    if not values:
        raise ValueError("seed_stats needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return SeedStats(mean, None, n)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return SeedStats(mean, math.sqrt(variance), n)


def average_over_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """sample id -> mean score over the seeds, on the images every seed scored."""
    if not per_seed:
        return {}
    common = set(per_seed[0])
    for scores in per_seed[1:]:
        common &= set(scores)
    return {sid: math.fsum(s[sid] for s in per_seed) / len(per_seed) for sid in sorted(common)}


@dataclass(frozen=True)
class PairedTest:
    n_images: int
    mean_difference: float  # method - baseline
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def marker(self) -> str:
        return significance_marker(self.p_value)


def significance_marker(p_value: float) -> str:
    for threshold, marker in SIGNIFICANCE_MARKERS:
        if p_value < threshold:
            return marker
    return ""


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    if all(d == 0 for d in differences):
        return 1.0
    return float(wilcoxon(differences, alternative="two-sided", zero_method="wilcox").pvalue)


def bootstrap_ci(
    differences: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile CI of the mean of paired differences, resampling images with replacement."""
    import numpy as np

    diffs = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[picks].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_test(method: Mapping[str, float], baseline: Mapping[str, float]) -> PairedTest | None:
    """Compare per-image scores paired by sample id; None when fewer than 2 images pair up."""
    shared = sorted(set(method) & set(baseline))
    if len(shared) < 2:
        return None
    diffs = [method[s] - baseline[s] for s in shared]
    low, high = bootstrap_ci(diffs)
    return PairedTest(
        n_images=len(shared),
        mean_difference=math.fsum(diffs) / len(diffs),
        ci_low=low,
        ci_high=high,
        p_value=wilcoxon_p(diffs),
    )


def significance(method: dict[str, float], other: dict[str, float], label: str) -> Significance | None:
    """The paired per-image test of `method` against `other` (named `label`); None below 2 shared images."""
    test = paired_test(method, other)
    if test is None:
        return None
    return Significance(label, test.n_images, test.mean_difference, test.ci_low, test.ci_high, test.p_value,
                        test.marker)
