"""`medref report --table text`: how much a trained model relies on its caption.

Rows: the trained runs (burn-in or train) that `medref evaluate RUN --text-mode MODE` evaluated on
the test split. Columns: each text mode recorded (rate modes per removal rate: "removed 0.5"), its
global Dice and its per-image mean Dice; a mode evaluated with several seeds (shuffled, the removal
hash) shows the mean ± std over them. Each mode's cells carry the paired test of its per-image Dice
against the same row's `full` (`reports.stats.paired_test`: Wilcoxon signed-rank and a bootstrap 95%
CI of the mean difference, per-image scores first averaged over the seeds). For a model with a soft
position input (ISPG), "recovery" columns give, per rate R, the share of the drop from `full` to
`removed R` that `soft_image R` (and `oracle_soft R`) win back, in global Dice:
(mode - removed) / (full - removed); missing where full does not beat removed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from medref_cli.errors import MedrefError
from medref_cli.ledger.db import Ledger
from medref_cli.ledger.report_queries import RunRecord, image_scores, runs_by_id, table_runs
from medref_cli.reports.model import Block, Cell, Column, Row, Significance, Table
from medref_cli.reports.paper import backbone_title, dataset_title
from medref_cli.reports.stats import average_over_seeds, seed_stats, significance
from medref_cli.text.modes import RATE_MODES, TEXT_MODES

TITLE = "Text reliance: Dice with missing, wrong or constant positional text"
RECOVERED = ("soft_image", "oracle_soft")
CAPTION = (
    "Test Dice (%) of each trained run with the captions of each text mode (medref evaluate --text-mode): full = "
    "the recorded captions; removed R = positional phrases removed from a share R of the images, chosen by a hash "
    "of the image id; constant = the train split's most frequent caption for every image; shuffled = captions "
    "permuted across images; swapped = left and right exchanged; oracle_soft R / soft_image R (ISPG models) = "
    "removed R with the true or the image-predicted positions as the soft input. Dice = global (TP, FP, FN over all "
    "test pixels); Dice/img = mean of per-image Dice. Mean ± std over seeds (n). * p < 0.05, ** p < 0.01: two-sided "
    "Wilcoxon signed-rank test of per-image Dice against the same run's full. recovery % R = "
    "(mode R - removed R) / (full - removed R) x 100 in global Dice."
)


def mode_key(tags: dict) -> tuple[str, float | None] | None:
    mode = tags.get("text_mode", "full")
    if mode not in TEXT_MODES:
        return None
    rate = tags.get("removal_rate") if mode in RATE_MODES else None
    return mode, None if rate is None else float(rate)


def mode_label(key: tuple[str, float | None]) -> str:
    mode, rate = key
    return mode if rate is None else f"{mode} {rate:g}"


def _sort_key(key: tuple[str, float | None]) -> tuple[int, float]:
    return TEXT_MODES.index(key[0]), -1.0 if key[1] is None else key[1]


def _newest_per_seed(runs: Sequence[RunRecord]) -> list[RunRecord]:
    by_seed: dict[object, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.id):
        by_seed[run.tags.get("text_seed")] = run
    return list(by_seed.values())


def _row_label(run: RunRecord) -> str:
    ratio = "" if run.label_ratio is None else f" {run.label_ratio * 100:g}%"
    soft = " ISPG" if (run.config.get("model") or {}).get("soft_position") else ""
    return f"run {run.id}: {run.kind} {backbone_title(run.backbone or '?')}{ratio}{soft}"


def _significance(method: list[dict[str, float]], full: list[dict[str, float]]) -> Significance | None:
    return significance(average_over_seeds(method), average_over_seeds(full), "full")


def _cell(values: list[float], runs: list[RunRecord], significance: Significance | None) -> Cell:
    stats = seed_stats(values)
    return Cell(stats.mean, stats.std, stats.n, significance=significance, run_ids=tuple(r.id for r in runs))


def _recovery(means: dict[tuple[str, float | None], float], mode: str, rate: float) -> Cell:
    full, removed, value = means.get(("full", None)), means.get(("removed", rate)), means.get((mode, rate))
    if full is None or removed is None or value is None or full <= removed:
        return Cell()
    return Cell((value - removed) / (full - removed) * 100.0, None, 1)


def build_text_table(ledger: Ledger, datasets: Sequence[str] = (), backbones: Sequence[str] = ()) -> Table:
    evaluations = [r for r in table_runs(ledger, kinds=("evaluate",), datasets=datasets or None)
                   if r.status == "finished" and r.parent_id is not None and r.tags.get("split", "test") == "test"
                   and mode_key(r.tags) is not None]
    if not evaluations:
        raise MedrefError("no finished test evaluations in the ledger to build the text table from: "
                          "run `medref evaluate RUN --text-mode MODE` first")
    parents = {r.id: r for r in runs_by_id(ledger, sorted({e.parent_id for e in evaluations}))}
    if backbones:
        parents = {i: p for i, p in parents.items() if p.backbone in backbones}
    grouped: dict[int, dict[tuple[str, float | None], list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for run in evaluations:
        if run.parent_id in parents:
            grouped[run.parent_id][mode_key(run.tags)].append(run)
    keys = sorted({k for modes in grouped.values() for k in modes}, key=_sort_key)
    rates = sorted({k[1] for k in keys if k[0] in RECOVERED and ("removed", k[1]) in keys})
    recovery = [(mode, rate) for rate in rates for mode in RECOVERED if (mode, rate) in keys]
    columns = [Column(mode_label(k), k[1] or 0.0, metric) for k in keys for metric in ("dice", "dice_image")]
    columns += [Column(mode_label(k), k[1], "recovery") for k in recovery]
    scores = image_scores(ledger, [r.id for modes in grouped.values() for runs in modes.values() for r in runs])
    blocks: dict[str, list[Row]] = defaultdict(list)
    for parent_id in sorted(grouped):
        modes = {k: _newest_per_seed(v) for k, v in grouped[parent_id].items()}
        dice = {k: [{s: d * 100.0 for s, (d, _) in scores[r.id].items()} for r in runs] for k, runs in modes.items()}
        cells, means = [], {}
        for key in keys:
            runs = modes.get(key)
            if not runs:
                cells += [Cell(), Cell()]
                continue
            sig = None if key == ("full", None) or ("full", None) not in modes else _significance(
                dice[key], dice[("full", None)])
            global_dice = [r.finals["test_dice_global"] * 100.0 for r in runs]
            means[key] = sum(global_dice) / len(global_dice)
            cells.append(_cell(global_dice, runs, sig))
            cells.append(_cell([r.finals["test_dice_per_image_mean"] * 100.0 for r in runs], runs, sig))
        cells += [_recovery(means, mode, rate) for mode, rate in recovery]
        parent = parents[parent_id]
        blocks[parent.dataset or "?"].append(Row(_row_label(parent), (), cells))
    return Table(key="text", title=TITLE, caption=CAPTION, columns=columns, check_columns=(),
                 blocks=[Block(dataset_title(name), rows) for name, rows in sorted(blocks.items())])
