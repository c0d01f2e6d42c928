"""Tables 1-3 built from the scenario ledger (tests/reports/conftest.py), checked cell by cell
against values worked out here from the numbers the scenario recorded."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from medref_cli.config import schema_hash
from medref_cli.ledger import open_ledger
from medref_cli.ledger.report_queries import newest_data_hashes
from medref_cli.reports import ConfigCondition, ReportOptions, build_report, paper_numbers
from medref_cli.reports.staleness import CurrentVersions
from tests.reports.conftest import CURRENT_CODE, OLD_CODE_LABEL, Recorder

PAPER_JSON = Path(__file__).resolve().parents[3] / "shared" / "paper" / "tables.json"


def build(report_ledger, **options):
    ledger, current = report_ledger
    return build_report(ledger, ReportOptions(**options), current=current)


def cell(table, block: str, row: str, group: str, metric: str = "dice"):
    blk = next(b for b in table.blocks if b.title == block)
    r = next(r for r in blk.rows if r.label == row)
    index = next(i for i, c in enumerate(table.columns) if c.group == group and c.metric == metric)
    return r.cells[index], r.explain.get(group, [])


def expected(scenario, ratio: float, seeds: tuple[int, ...], final: str = "test_dice_global"):
    """Mean and sample std (statistics module) of what the scenario recorded for supervised runs."""
    values = [scenario.finals_from(scenario.image_dice(scenario.ratio_gain[ratio], s))[final] * 100 for s in seeds]
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def test_supervised_cell_is_mean_and_sample_std_over_seeds(report_ledger, scenario):
    (t1,) = build(report_ledger, tables=(1,))
    c, why = cell(t1, "QaTa-COV19", "MMI-UNet", "1%")
    mean, std = expected(scenario, 0.01, (1, 2, 3))
    assert (c.n, c.run_ids) == (3, (2, 3, 4))
    assert c.mean == pytest.approx(mean) and c.std == pytest.approx(std)
    assert not c.stale and why[0].startswith("n=3: runs 2, 3, 4 (seeds 1, 2, 3)")
    single, _ = cell(t1, "QaTa-COV19", "MMI-UNet", "5%")
    assert single.n == 1 and single.std is None


def test_per_image_definition_reads_the_per_image_finals(report_ledger, scenario):
    (t1,) = build(report_ledger, tables=(1,), definition="per-image")
    c, _ = cell(t1, "QaTa-COV19", "MMI-UNet", "2%", "miou")
    mean, std = expected(scenario, 0.02, (1, 2, 3), "test_iou_per_image_mean")
    assert c.mean == pytest.approx(mean) and c.std == pytest.approx(std)
    assert "per-image Dice and IoU" in t1.caption


@pytest.mark.parametrize(
    ("row", "group", "reason"),
    [
        ("MMI-UNet", "15%", ["no finished run", "failed: run 9", "killed: run 10"]),
        ("MMI-UNet", "100%", ["no finished run", "still running: run 11"]),
        ("GuideDecoder", "2%", ["no finished run", "lost (its heartbeat stopped): run 12"]),
        ("Ours(GuideDecoder)", "1%", ["never run"]),
    ],
)
def test_missing_cells_say_why(report_ledger, row, group, reason):
    (t1,) = build(report_ledger, tables=(1,), explain=True)
    c, why = cell(t1, "QaTa-COV19", row, group)
    assert c.missing and c.n == 0
    assert why == reason


def test_stale_cells_are_marked_with_their_reason(report_ledger):
    (t1,) = build(report_ledger, tables=(1,))
    ours, why = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "2%")
    assert ours.stale and ours.n == 3 and ours.stale_reasons == ("run 23: other code version",)
    assert "stale: run 23 (other code version)" in why
    gd, _ = cell(t1, "QaTa-COV19", "GuideDecoder", "5%")
    assert gd.stale and gd.stale_reasons == ("run 1: older data hash",)
    fresh, _ = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "1%")
    assert not fresh.stale


def test_as_of_an_older_code_version_turns_the_staleness_around(report_ledger):
    from medref_cli.reports.staleness import as_of_versions

    ledger, current = report_ledger
    as_of = as_of_versions(ledger, "b" * 9)  # a prefix of the older code version that made run 23
    assert as_of.code_version == "b" * 40 and as_of.config_schema == current.config_schema
    (t1,) = build_report(ledger, ReportOptions(tables=(1,)), current=as_of)
    ours, _ = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "2%")
    assert "run 23: other code version" not in ours.stale_reasons
    fresh, _ = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "1%")
    assert fresh.stale and fresh.stale_reasons[0].endswith("other code version")


@pytest.mark.parametrize(("code", "message"), [
    ("bbbb", "at least 7 characters"),
    ("d" * 12, "no run in the ledger was made by code version 'dddddddddddd'"),
])
def test_as_of_refuses_what_names_no_recorded_code(report_ledger, code, message):
    from medref_cli.errors import MedrefError
    from medref_cli.reports.staleness import as_of_versions

    with pytest.raises(MedrefError, match=message):
        as_of_versions(report_ledger[0], code)


@pytest.fixture
def resweep_ledger(tmp_path):
    """A grid's seeds 1 and 2 by the current code, then seed 1 of the same config again by other code
    (a later recipe-sweep run); yields (ledger, current versions, the grid's run ids, the later run's id)."""
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    rec = Recorder(ledger)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("medref_cli.ledger.recorder.code_version", lambda: CURRENT_CODE)
        grid = [rec.add("burnin", "qata", "mmi-unet", 0.01, seed) for seed in (1, 2)]
        later = rec.add("burnin", "qata", "mmi-unet", 0.01, 1)
    rec.update(later, code_version=OLD_CODE_LABEL)
    current = CurrentVersions(CURRENT_CODE.label, schema_hash(), newest_data_hashes(ledger))
    yield ledger, current, grid, later
    ledger.dispose()


def test_a_later_run_of_other_code_supersedes_a_grid_cell_unless_the_report_counts_one_code(resweep_ledger):
    ledger, current, grid, later = resweep_ledger
    (plain,) = build_report(ledger, ReportOptions(tables=(1,), explain=True), current=current)
    c, why = cell(plain, "QaTa-COV19", "MMI-UNet", "1%")
    assert c.run_ids == (grid[1], later) and c.stale, "the newest run per seed, whatever made it"
    assert f"run {grid[0]} superseded by run {later} (same seed 1)" in why
    (only,) = build_report(ledger, ReportOptions(tables=(1,), explain=True, code=current.code_version),
                           current=current)
    c, why = cell(only, "QaTa-COV19", "MMI-UNet", "1%")
    assert c.run_ids == tuple(grid) and not c.stale
    assert not any("superseded" in line for line in why)
    (old,) = build_report(ledger, ReportOptions(tables=(1,), code=OLD_CODE_LABEL), current=current)
    assert cell(old, "QaTa-COV19", "MMI-UNet", "1%")[0].run_ids == (later,)


def test_report_code_counts_one_code_version_and_names_the_flag_in_its_errors(resweep_ledger, cli):
    ledger, current, grid, later = resweep_ledger
    url = str(ledger.engine.url)
    code, plain, err = cli("report", "--table", "1", "--explain", "--ledger", url)
    assert code == 0, err
    assert f"superseded by run {later}" in plain and f"stale: run {later} (other code version)" in plain
    code, only, err = cli("report", "--table", "1", "--explain", "--code", current.code_version[:9], "--ledger", url)
    assert code == 0, err
    assert f"n=2: runs {grid[0]}, {grid[1]} (seeds 1, 2)" in only
    assert "superseded by" not in only and "stale: run" not in only
    for bad, message in (("bbbb", "--code needs a code version of at least 7 characters, got 'bbbb'"),
                         ("d" * 12, "--code: no run in the ledger was made by code version 'dddddddddddd'")):
        code, _out, err = cli("report", "--table", "1", "--code", bad, "--ledger", url)
        assert code != 0 and message in err, err


def mean_paired_difference(scenario, gain: float, base_gain: float, seeds: tuple[int, ...], base_seeds) -> float:
    """Per image: mean over seeds of the method minus mean over seeds of the baseline; then mean, in pp."""
    ours = [statistics.mean(v) for v in zip(*(scenario.image_dice(gain, s) for s in seeds), strict=True)]
    base = [statistics.mean(v) for v in zip(*(scenario.image_dice(base_gain, s) for s in base_seeds), strict=True)]
    return 100 * statistics.mean(o - b for o, b in zip(ours, base, strict=True))


def test_significance_against_the_supervised_backbone(report_ledger, scenario):
    (t1,) = build(report_ledger, tables=(1,))
    ours, _ = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "1%")
    # every image gains over the supervised run of the same seeds: ten positive distinct differences
    assert ours.significance.n_images == 10
    assert ours.significance.mean_difference == pytest.approx(
        mean_paired_difference(scenario, 0.05, 0.0, (1, 2, 3), (1, 2, 3)))
    assert ours.significance.p_value == pytest.approx(2 / 2**10)
    assert ours.marker == "**" and ours.significance.baseline == "MMI-UNet"
    miou, _ = cell(t1, "QaTa-COV19", "Ours(MMI-UNet)", "1%", "miou")
    assert miou.significance is None  # the test is on Dice
    supervised, _ = cell(t1, "QaTa-COV19", "MMI-UNet", "1%")
    assert supervised.significance is None


def test_ablation_rows_follow_the_recorded_components(report_ledger, scenario):
    t2, t3 = build(report_ledger, tables=(2, 3), explain=True)
    block = "QaTa-COV19, MMI-UNet"
    tsema, _ = cell(t2, block, "+ T-S EMA", "1%")
    assert tsema.run_ids == (16, 18, 20)
    baseline3, _ = cell(t3, block, "Baseline", "1%")
    assert baseline3.run_ids == tsema.run_ids  # Table 3's baseline is Table 2's "+ T-S EMA"
    full2, _ = cell(t2, block, "+ ITCL (Ours)", "1%")
    full3, _ = cell(t3, block, "Ours-All", "1%")
    assert full2.run_ids == full3.run_ids == (15, 17, 19)
    cutmix, _ = cell(t3, block, "w/ CutMix", "1%")
    assert cutmix.significance.mean_difference == pytest.approx(
        mean_paired_difference(scenario, 0.015, 0.03, (1, 2), (1, 2, 3)))
    assert cutmix.significance.mean_difference < 0 and cutmix.marker == "**"
    clip, why = cell(t3, block, "Ours-V3", "1%")
    assert clip.n == 1 and clip.significance is None
    assert why[-1] == "vs Baseline: not tested (no per-image test scores on one side)"
    assert any("42" in note and "match no row" in note for note in t3.notes)
    assert [c.group for c in t3.columns] == ["1%"] and [c.metric for c in t3.columns] == ["dice"]


def test_two_config_groups_show_the_newest_unless_filtered(report_ledger):
    (t2,) = build(report_ledger, tables=(2,), explain=True)
    newest, why = cell(t2, "QaTa-COV19, MMI-UNet", "+ PosAug", "1%")
    assert newest.run_ids == (29,)
    assert any(line.endswith("differs in train.epochs=20 (shown: 40)") for line in why)
    (picked,) = build(report_ledger, tables=(2,), where=(ConfigCondition.parse("train.epochs=20"),))
    older, why = cell(picked, "QaTa-COV19, MMI-UNet", "+ PosAug", "1%")
    assert older.run_ids == (27, 28)
    # the filter also drops the burn-in runs (100 epochs): nothing to test against
    assert older.significance is None and why[-1] == "vs Baseline: not tested (no finished Baseline run)"


def test_a_seed_run_twice_counts_once(report_ledger):
    (t2,) = build(report_ledger, tables=(2,), explain=True)
    c, why = cell(t2, "QaTa-COV19, MMI-UNet", "+ T-S EMA", "2%")
    assert c.run_ids == (24, 26)
    assert "run 25 superseded by run 26 (same seed 2)" in why


def test_paper_rows_stay_apart_with_deltas(report_ledger):
    (t2,) = build(report_ledger, tables=(2,), with_paper=True)
    block = next(b for b in t2.blocks if b.title == "QaTa-COV19, MMI-UNet")
    assert all("paper" not in r.label.lower() for r in block.rows)
    ours, _ = cell(t2, "QaTa-COV19, MMI-UNet", "+ ITCL (Ours)", "1%")
    paper = next(p for p in block.paper_rows if p.label == "+ ITCL (Ours)")
    assert paper.values[0] == 86.39 and paper.deltas[0] == pytest.approx(ours.mean - 86.39)
    other = next(b for b in t2.blocks if b.title == "QaTa-COV19, GuideDecoder")
    assert other.paper_rows == []  # the paper ran its ablations on MMI-UNet only
    (per_image,) = build(report_ledger, tables=(2,), with_paper=True, definition="per-image")
    assert all(d is None for p in per_image.blocks[0].paper_rows for d in p.deltas)


def test_table1_one_percent_paper_numbers_come_from_table2(report_ledger):
    (t1,) = build(report_ledger, tables=(1,), with_paper=True)
    rows = {p.label: p for p in t1.blocks[0].paper_rows}
    assert rows["MMI-UNet (MICCAI '24)"].values[:2] == [81.02, 68.09]
    assert rows["MMI-UNet (MICCAI '24)"].compared_with == "MMI-UNet"
    assert rows["LAVT (CVPR '22)"].values[:2] == [None, None] and rows["LAVT (CVPR '22)"].compared_with is None


def test_filters_and_metric_choice(report_ledger):
    (t1,) = build(report_ledger, tables=(1,), datasets=("mosmed",), metrics=("miou",))
    assert [b.title for b in t1.blocks] == ["MosMedData+"]
    assert [r.label for r in t1.blocks[0].rows] == ["GuideDecoder", "Ours(GuideDecoder)"]
    assert all(c.metric == "miou" for c in t1.columns)
    assert all(c.significance is None for r in t1.blocks[0].rows for c in r.cells)
    assert "Wilcoxon" not in t1.caption


def test_paper_numbers_match_the_shared_tables():
    if not PAPER_JSON.is_file():
        pytest.skip(f"{PAPER_JSON} not found")
    shared = json.loads(PAPER_JSON.read_text())
    for dataset, methods in shared["table1"].items():
        for method, by_ratio in methods.items():
            for ratio, values in by_ratio.items():
                ours = paper_numbers.TABLE1[dataset][method][ratio]
                assert ours == (None if values["dice"] is None else (values["dice"], values["miou"]))
    for row in shared["table2_qata_mmiunet"]["rows"]:
        for ratio in ("1%", "2%"):
            assert paper_numbers.TABLE2[row["method"]][ratio] == (row[ratio]["dice"], row[ratio]["miou"])
    assert paper_numbers.TABLE3 == shared["table3_qata"]["rows"]


def test_supervised_rows_take_only_step_matched_runs():
    """Table 1's backbone rows and Table 2's Baseline compare like with like: a supervised run of as
    many optimizer steps as the semi-supervised runs, never the (short) burn-in phase."""
    from medref_cli.reports import layouts

    baseline = layouts.table2_rows("mmi-unet")[0]
    supervised = layouts.table1_rows(["mmi-unet"])[0]
    for spec in (baseline, supervised):
        assert spec.takes("burnin", "mmi-unet", None, step_matched=True)
        assert not spec.takes("burnin", "mmi-unet", None, step_matched=False)
