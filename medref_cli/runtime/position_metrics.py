"""Multi-label scores of six-zone position predictions: mAP, macro-F1, exact match and their company.

For targets T (N, 6) in {0, 1} and probabilities P (N, 6), with predictions 1[P >= threshold]:

- average precision of one zone: the scores sorted high to low, one step per distinct score,
  AP = sum_k (R_k - R_{k-1}) x Prec_k (the step-wise area under the precision-recall curve,
  scikit-learn's `average_precision_score`); undefined (NaN) for a zone with no positive image;
- ``mAP``: the mean AP over the zones where it is defined (NaN when none is);
- ``macro_f1``: the mean over all six zones of F1 = 2 P R / (P + R), with precision
  TP / max(TP + FP, 1) and recall TP / max(TP + FN, 1) (a zone never named nor predicted scores 0);
- ``micro_f1``: F1 of TP, FP and FN summed over the zones;
- ``exact_match``: share of images whose six predicted bits all equal the label;
- ``hamming_accuracy``: share of the N x 6 bits predicted right;
- ``sample_jaccard``: mean over images of |pred & label| / max(|pred | label|, 1).

These are the reference's definitions (`position_predictor_utils.py`, `multilabel_metrics`).
"""

from __future__ import annotations

import math

import numpy as np

from medref_cli.text.positions import ZONES


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """Step-wise AP of one zone; NaN when it has no positive."""
    target = np.asarray(target, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    positives = int(target.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    score, target = score[order], target[order]
    last_of_each = np.r_[np.nonzero(np.diff(score))[0], score.size - 1]  # the last row of each distinct score
    tp = np.cumsum(target)[last_of_each]
    predicted = last_of_each + 1
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_image_scores(targets: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """{"jaccard", "exact"} per image (float arrays of length N)."""
    t = np.asarray(targets, dtype=np.int64)
    pred = (np.asarray(probabilities) >= threshold).astype(np.int64)
    union = (pred | t).sum(axis=1)
    return {"jaccard": (pred & t).sum(axis=1) / np.maximum(union, 1),
            "exact": (pred == t).all(axis=1).astype(np.float64)}


def multilabel_metrics(targets: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The scores above, and per zone `ap_<zone>`, `f1_<zone>`, `prevalence_<zone>` (zone as
    `left_upper`, ...), as one flat dict of floats."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if t.ndim != 2 or t.shape != p.shape or t.shape[1] != len(ZONES):
        raise ValueError(f"targets and probabilities must both be (N, 6), got {t.shape} and {p.shape}")
    pred = (p >= threshold).astype(np.int64)
    tp = (pred * t).sum(axis=0)
    fp = (pred * (1 - t)).sum(axis=0)
    fn = ((1 - pred) * t).sum(axis=0)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / np.maximum(tp + fn, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    micro_p = tp.sum() / max(tp.sum() + fp.sum(), 1)
    micro_r = tp.sum() / max(tp.sum() + fn.sum(), 1)
    aps = [average_precision(t[:, k], p[:, k]) for k in range(t.shape[1])]
    defined = [a for a in aps if not math.isnan(a)]
    per_image = per_image_scores(t, p, threshold)
    out = {
        "mAP": float(np.mean(defined)) if defined else math.nan,
        "macro_f1": float(f1.mean()),
        "micro_f1": float(2 * micro_p * micro_r / max(micro_p + micro_r, 1e-12)),
        "exact_match": float(per_image["exact"].mean()) if len(t) else math.nan,
        "hamming_accuracy": float((pred == t).mean()) if len(t) else math.nan,
        "sample_jaccard": float(per_image["jaccard"].mean()) if len(t) else math.nan,
        "n_images": float(len(t)),
    }
    for k, zone in enumerate(ZONES):
        name = zone.replace(" ", "_")
        out[f"ap_{name}"] = aps[k]
        out[f"f1_{name}"] = float(f1[k])
        out[f"prevalence_{name}"] = float(t[:, k].mean()) if len(t) else math.nan
    return out


def defined(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics that have a value (an AP of a zone without positives is NaN: the ledger keeps no NaN)."""
    return {k: v for k, v in metrics.items() if not math.isnan(v)}
