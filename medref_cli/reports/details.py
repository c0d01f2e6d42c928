"""The runs behind the cells of a table (`medref report --details`).

For every block and label ratio: each counted run with its wall time, test Dice (global and per
image), the rates its semi-supervised steps logged (share of samples T-PatchMix mixed, share of
texts PosAug changed, pseudo-mask foreground share; step-weighted means over the logged windows),
a paired per-image test against the baseline row's run of the same seed and, for a semi-supervised
run, one against the burn-in it started from; per row, a paired test against the row above
(per-image Dice averaged over seeds, as in the tables) and, where the table's first row is a
supervised run, the share of the gap between that row and 100% supervision that the row closes,
per Dice definition, and the two ends of that gap (the baseline's and the 100% runs' test Dice,
mean and std over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence

from medref_cli.ledger.report_queries import RunRecord, metric_history, run_walls
from medref_cli.reports.cells import RunView, select_runs
from medref_cli.reports.layouts import FINAL_NAMES, RowSpec, ratio_label, same_ratio
from medref_cli.reports.model import BlockDetail, Column, GapEnd, RowDetail, RunDetail, Significance
from medref_cli.reports.stats import SeedStats, average_over_seeds, seed_stats, significance

RATES = ("mixed_share", "text_changed_share", "pseudo_fg")
DICE = {definition: FINAL_NAMES[(definition, "dice")] for definition in ("global", "per-image")}
FULL_LABEL = "100% supervised"


def weighted_rate(points: Sequence[tuple[int, float]]) -> float | None:
    """Mean of logged window means, each weighted by the steps it covers (a window ends at its step)."""
    total = covered = 0.0
    previous = 0
    for step, value in points:
        width = max(step - previous, 0)
        total += value * width
        covered += width
        previous = step
    return total / covered if covered else None


def _percent(run: RunRecord, name: str) -> float | None:
    return run.finals[name] * 100.0 if name in run.finals else None


class DetailSource:
    """What the details read from the ledger, fetched once per run."""

    def __init__(self, ledger, scores) -> None:
        self.ledger = ledger
        self.scores = scores  # reports.build.ScoreCache

    def runs(self, runs: Sequence[RunRecord], baseline: dict[int | None, RunRecord],
             baseline_label: str | None) -> list[RunDetail]:
        ids = [r.id for r in runs]
        walls, history = run_walls(self.ledger, ids), metric_history(self.ledger, ids)
        out = []
        for run, dice in zip(runs, self.scores.dice(runs), strict=True):
            base = baseline.get(run.seed)
            vs = None
            if base is not None and base.id != run.id:
                vs = significance(dice, self.scores.dice([base])[0], f"{baseline_label} seed {base.seed}")
            rates = {name: weighted_rate(history[run.id].get(name, [])) for name in RATES}
            out.append(RunDetail(run.id, run.seed, walls.get(run.id), _percent(run, DICE["global"]),
                                 _percent(run, DICE["per-image"]), rates, vs, self.vs_burnin(run, dice)))
        return out

    def vs_burnin(self, run: RunRecord, dice: dict[str, float]) -> Significance | None:
        """A semi-supervised run against the burn-in it started from (its parent): what the SSL phase
        added on top of that very burn-in. Two burn-ins of one cell (same code, config and seed) can
        differ when made on different CPUs, so this is the comparison free of that noise."""
        if run.kind != "train" or run.parent_id is None:
            return None
        (parent,) = self.scores.dice_of([run.parent_id])
        return significance(dice, parent, f"burn-in run {run.parent_id}")

    def seed_mean(self, runs: Sequence[RunRecord]) -> dict[str, float]:
        return average_over_seeds(self.scores.dice(runs))


def _stats(runs: Sequence[RunRecord], name: str) -> SeedStats | None:
    """Mean and std over the runs of a final metric, in percent; None unless every run has it."""
    values = [r.finals[name] * 100.0 for r in runs if name in r.finals]
    return seed_stats(values) if values and len(values) == len(runs) else None


def _mean(runs: Sequence[RunRecord], name: str) -> float | None:
    stats = _stats(runs, name)
    return None if stats is None else stats.mean


def _gap_end(label: str, runs: Sequence[RunRecord]) -> GapEnd:
    return GapEnd(label, {definition: _stats(runs, name) for definition, name in DICE.items()})


def full_supervision(views: Sequence[RunView], dataset: str, backbones: Sequence[str],
                     current) -> dict[str, list[RunRecord]]:
    """backbone -> its 100% step-matched supervised runs on `dataset` (newest config group, one per seed)."""
    out = {}
    for backbone in backbones:
        cands = [v for v in views if v.run.kind == "burnin" and v.step_matched and v.run.dataset == dataset
                 and v.run.backbone == backbone and same_ratio(v.run.label_ratio, 1.0)]
        out[backbone] = select_runs(cands, list(DICE.values()), current).counted if cands else []
    return out


def block_details(title: str, specs: Sequence[RowSpec], columns: Sequence[Column],
                  counted: dict[tuple[str, float], list[RunRecord]], full: dict[str, list[RunRecord]],
                  source: DetailSource) -> list[BlockDetail]:
    """One BlockDetail per label ratio of the block; `full`: backbone -> its 100% supervised runs."""
    by_label = {spec.label: spec for spec in specs}
    shown = [b for b in dict.fromkeys(s.backbone for s in specs) if full.get(b)]
    full_label = {b: f"{FULL_LABEL} ({b})" if len(shown) > 1 else FULL_LABEL for b in shown}
    out = []
    for ratio in sorted({c.ratio for c in columns}):
        details: list[RowDetail] = []
        ends: dict[str, GapEnd] = {}
        for index, spec in enumerate(specs):
            runs = counted[(spec.label, ratio)]
            base_spec = by_label.get(spec.baseline) if spec.baseline else None
            base_runs = counted[(base_spec.label, ratio)] if base_spec else []
            above = specs[index - 1] if index else None
            vs_previous = None
            if above is not None and above.backbone == spec.backbone and runs and counted[(above.label, ratio)]:
                vs_previous = significance(source.seed_mean(runs), source.seed_mean(counted[(above.label, ratio)]),
                                      above.label)
            gap: dict[str, float | None] = {}
            if base_spec is not None and base_spec.kind == "burnin":
                for definition, name in DICE.items():
                    ours, low, high = (_mean(runs, name), _mean(base_runs, name),
                                       _mean(full.get(spec.backbone, []), name))
                    ok = None not in (ours, low, high) and high != low
                    gap[definition] = (ours - low) / (high - low) if ok else None
                if any(share is not None for share in gap.values()):
                    for label, end_runs in ((base_spec.label, base_runs),
                                            (full_label[spec.backbone], full[spec.backbone])):
                        if label not in ends:
                            ends[label] = _gap_end(label, end_runs)
            baseline = {r.seed: r for r in base_runs}
            details.append(RowDetail(spec.label, source.runs(runs, baseline, spec.baseline), vs_previous, gap))
        full_rows = [RowDetail(full_label[b], source.runs(full[b], {}, None)) for b in shown]
        out.append(BlockDetail(f"{title}, {ratio_label(ratio)}", details, full_rows, list(ends.values())))
    return out
