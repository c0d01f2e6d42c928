"""`medref report --table text`: rows = trained runs, columns = text modes (global and per-image Dice),
paired tests against the same run's `full`, ISPG recovery shares; worked values from a handmade ledger."""

from __future__ import annotations

import csv
import io
import json

import pytest

from medref_cli.config import load_config
from medref_cli.ledger import open_ledger, record_run
from medref_cli.reports import render
from medref_cli.reports.stats import paired_test
from medref_cli.reports.text_table import build_text_table

IDS = ["a", "b", "c", "d", "e", "f"]
FULL = [0.80, 0.70, 0.60, 0.90, 0.85, 0.75]
# (mode, rate, seed) -> per-image Dice; global Dice = given beside
EVALS = {
    ("full", None, None): (FULL, 0.75),
    ("removed", 1.0, 42): ([0.50, 0.40, 0.45, 0.55, 0.52, 0.41], 0.48),
    ("soft_image", 1.0, 42): ([0.70, 0.60, 0.55, 0.80, 0.71, 0.62], 0.66),
    ("oracle_soft", 1.0, 42): ([0.78, 0.66, 0.58, 0.86, 0.80, 0.70], 0.72),
    ("shuffled", None, 1): ([0.60, 0.50, 0.55, 0.70, 0.61, 0.52], 0.60),
    ("shuffled", None, 2): ([0.62, 0.52, 0.57, 0.72, 0.65, 0.54], 0.62),
}


@pytest.fixture
def ledger(tmp_path):
    led = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", create=True)
    cfg = load_config(sets=["data.dataset=qata", "model.backbone=mmi-unet", "model.soft_position=true",
                            "runtime.heartbeat_s=0"])
    with record_run(led, "burnin", cfg, dataset="qata") as parent:
        parent.set_final({"test_dice_global": 0.75})
    for (mode, rate, seed), (dice, global_dice) in EVALS.items():
        tags = {"split": "test", "text_mode": mode, "removal_rate": rate, "text_seed": seed}
        with record_run(led, "evaluate", cfg, parent_id=parent.id, dataset="qata", tags=tags) as run:
            run.add_image_scores("test", IDS, dice, dice)
            run.set_final({"test_dice_global": global_dice, "test_dice_per_image_mean": sum(dice) / len(dice)})
    yield led, parent.id
    led.dispose()


def test_text_table_worked_values(ledger):
    led, parent = ledger
    table = build_text_table(led)
    labels = [c.label for c in table.columns]
    assert labels == ["full Dice", "full Dice/img", "removed 1 Dice", "removed 1 Dice/img", "shuffled Dice",
                      "shuffled Dice/img", "oracle_soft 1 Dice", "oracle_soft 1 Dice/img", "soft_image 1 Dice",
                      "soft_image 1 Dice/img", "soft_image 1 recovery %", "oracle_soft 1 recovery %"]
    (block,) = table.blocks
    (row,) = block.rows
    assert row.label == f"run {parent}: burnin MMI-UNet 5% ISPG"
    cells = dict(zip(labels, row.cells))
    assert cells["full Dice"].mean == pytest.approx(75.0) and cells["full Dice"].significance is None
    assert cells["removed 1 Dice"].mean == pytest.approx(48.0)
    # two seeds of shuffled: mean and sample std
    assert cells["shuffled Dice"].mean == pytest.approx(61.0) and cells["shuffled Dice"].n == 2
    assert cells["shuffled Dice"].std == pytest.approx(2 ** 0.5)
    # recovery = (mode - removed) / (full - removed): (66 - 48) / 27 and (72 - 48) / 27
    assert cells["soft_image 1 recovery %"].mean == pytest.approx(100 * 18 / 27)
    assert cells["oracle_soft 1 recovery %"].mean == pytest.approx(100 * 24 / 27)
    # the paired test is the other tables' one, on per-image Dice (percent) against full
    sig = cells["removed 1 Dice"].significance
    expected = paired_test({i: d * 100 for i, d in zip(IDS, EVALS[("removed", 1.0, 42)][0])},
                           {i: d * 100 for i, d in zip(IDS, FULL)})
    assert sig.baseline == "full" and sig.n_images == 6
    assert sig.mean_difference == pytest.approx(expected.mean_difference) and sig.p_value == expected.p_value
    assert sig.mean_difference == pytest.approx(-100 * sum(f - r for f, r in zip(FULL, EVALS[("removed", 1.0, 42)][0])) / 6)
    # shuffled's seeds are averaged per image before pairing
    shuffled = {i: 50 * (a + b) for i, a, b in zip(IDS, EVALS[("shuffled", None, 1)][0], EVALS[("shuffled", None, 2)][0])}
    assert cells["shuffled Dice"].significance.mean_difference == pytest.approx(
        paired_test(shuffled, {i: d * 100 for i, d in zip(IDS, FULL)}).mean_difference)


def test_text_table_renders_in_every_format(ledger):
    led, _ = ledger
    table = build_text_table(led)
    markdown = render([table], "markdown")
    assert "| removed 1 Dice |" in markdown and "66.67" in markdown and "61.00 ± 1.41 (n=2)" in markdown
    latex = render([table], "latex")
    assert "\\toprule" in latex and "soft\\_image 1" in latex
    lines = list(csv.DictReader(io.StringIO(render([table], "csv"))))
    recovery = [x for x in lines if x["metric"] == "recovery" and x["ratio"] == "soft_image 1"]
    assert len(recovery) == 1 and float(recovery[0]["mean"]) == pytest.approx(66.6667, abs=1e-4)
    tree = json.loads(render([table], "json"))
    assert tree["tables"][0]["key"] == "text"


def test_report_text_cli(ledger, cli, tmp_path):
    led, _ = ledger
    code, out, err = cli("report", "--table", "text", "--ledger", led.url)
    assert code == 0, err
    assert "Text reliance" in out and "88.89" in out


def test_report_text_without_evaluations_says_so(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_ledger(url, create=True).dispose()
    code, _out, err = cli("report", "--table", "text", "--ledger", url)
    assert code == 2 and "no finished test evaluations in the ledger" in err and err.count("\n") == 1
