"""Captions: what every number, dash and marker in a table means."""

from __future__ import annotations

from medref_cli.reports import paper_numbers
from medref_cli.reports.model import STALE_MARK

TITLES = {
    "table1": "Table 1: Performance under different label ratios",
    "table2": "Table 2: Ablation of the model components",
    "table3": "Table 3: Augmentation and alignment ablations",
}
DEFINITIONS = {
    "global": "global Dice and IoU (mIoU): TP, FP and FN accumulated over all test pixels at threshold 0.5, "
              "the paper's definition",
    "per-image": "per-image Dice and IoU (mIoU): the mean over test images of each image's score at threshold 0.5 "
                 "(not the paper's definition)",
}
BASELINES = {
    "table1": "Ours against the supervised backbone at the same label ratio",
    "table2": "each row against Baseline",
    "table3": "each row against Baseline",
}
STEP_MATCHED = ("supervised runs on the labeled split only with the same number of optimizer steps as the "
                "semi-supervised runs: (burn-in + SSL epochs) x ceil(N_unlabeled / batch) steps, labeled batches "
                "drawn as in those runs (at 100%, epochs of one labeled pass)")
SETTINGS = {
    "table1": f"Supervised rows: {STEP_MATCHED}. "
              "Ours: semi-supervised runs with T-S EMA, ImgStrong, PosAug, T-PatchMix and ITCL.",
    "table2": f"Baseline: {STEP_MATCHED}; the other rows are semi-supervised runs "
              "with ImgStrong, adding components one by one.",
    "table3": "Baseline: T-S EMA with ImgStrong; every other row adds the components checked "
              "(w/ CutMix and w/ SPC replace T-PatchMix by naive CutMix or by SPC).",
}


def table_caption(key: str, definition: str, with_significance: bool) -> str:
    parts = [
        f"{TITLES[key].split(': ', 1)[1]} ({DEFINITIONS[definition]}), in percent.",
        SETTINGS[key],
        ("Cells: mean \u00b1 sample standard deviation (ddof=1) over seeds (training and split seed), n = number of seeds "
         "(n=1 shows no std); only finished runs count."),
        "A dash: no finished run (see --explain).",
        (f"{STALE_MARK} stale: made by another code version, config schema or data hash than the current ones "
         "(see --explain)."),
    ]
    if with_significance:
        parts.append(
            f"* p<0.05, ** p<0.01: two-sided Wilcoxon signed-rank test, {BASELINES[key]}, on per-image test Dice "
            "paired by sample id, each image's Dice first averaged over the seeds of its cell."
        )
    return " ".join(parts)


def paper_caption(key: str, definition: str) -> str:
    parts = [(f"Paper: the numbers printed in {paper_numbers.SOURCE}, for reference only (never mixed into "
              "measured cells).")]
    if definition == "global":
        parts.append("\u0394 = ours \u2212 paper in percentage points, where both exist.")
    else:
        parts.append("\u0394 not computed: the paper reports the global definition.")
    if key == "table1":
        parts.append("The paper's Table 1 has no 1% column; its 1% numbers for MMI-UNet on QaTa-COV19 come from "
                     "its Table 2 (Baseline and + ITCL (Ours)).")
    if key == "table3":
        parts.append("The paper gives Dice only for this table.")
    return " ".join(parts)
