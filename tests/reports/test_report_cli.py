"""`medref report` on the command line: files, figures, and one-line errors."""

from __future__ import annotations

import os

import pytest

from medref_cli.errors import MedrefError
from medref_cli.reports.figures import curve_panels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_out_writes_the_file_and_nothing_else(report_ledger, cli, tmp_path):
    ledger, _ = report_ledger
    code, out, err = cli("report", "--table", "3", "--format", "latex", "--out", "tables/t3.tex",
                         "--ledger", ledger.url)
    assert (code, err) == (0, "")
    assert out.strip() == "wrote tables/t3.tex"
    text = (tmp_path / "tables" / "t3.tex").read_text()
    assert text.startswith("% Table 3: Augmentation and alignment ablations") and r"\bottomrule" in text
    assert os.listdir(tmp_path / "tables") == ["t3.tex"]


def test_comma_lists_and_repeated_filters(report_ledger, cli):
    ledger, _ = report_ledger
    code, out, _ = cli("report", "--table", "1", "--format", "csv", "--dataset", "mosmed", "--metric", "dice",
                       "--ledger", ledger.url)
    assert code == 0
    rows = out.strip().splitlines()[1:]
    assert rows and all(r.startswith("table1,MosMedData+,measured,") and ",dice," in r for r in rows)


def test_an_empty_ledger_gives_the_layout_with_dashes(cli, tmp_path):
    from medref_cli.ledger import open_ledger

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_ledger(url).dispose()
    code, out, _ = cli("report", "--table", "2", "--explain", "--ledger", url)
    assert code == 0
    assert "**QaTa-COV19, MMI-UNet**" in out
    assert "| + ITCL (Ours) | ✓ | ✓ | ✓ | ✓ | - | - | - | - |" in out
    assert "- QaTa-COV19, MMI-UNet / Baseline / 1%: never run" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "4"], "--table must be 1, 2, 3, all or text"),
        (["--format", "html"], "--format must be one of markdown, latex, csv, json"),
        (["--definition", "mean"], "--definition must be one of global, per-image"),
        (["--metric", "f1"], "--metric expects a comma list of dice, miou"),
        (["--where", "train.epoch=3"], "--where: unknown config key 'train.epoch'"),
        (["--details", "--format", "csv"], "--details is shown in markdown and json, not in csv"),
        (["--ratio", "1.5"], "--ratio must lie in (0, 1], got 1.5"),
        (["--figure", "nope", "--runs", "2"], "unknown figure 'nope'; available: curves, qualitative, views"),
        (["--figure", "curves"], "--figure curves needs --runs"),
        (["--figure", "curves", "--runs", "2,999"], "no run 999 in the ledger"),
        (["--figure", "curves", "--runs", "2", "--out", "x.gif"], "must end in .png, .pdf, .svg"),
        (["--figure", "curves", "--runs", "2", "--metric", "accuracy"], "no history of accuracy in these runs"),
    ],
)
def test_user_errors_are_one_line(report_ledger, cli, args, message):
    ledger, _ = report_ledger
    code, out, err = cli("report", *args, "--ledger", ledger.url)
    assert code == 2 and out == ""
    assert err.startswith("medref: error: ") and message in err and err.count("\n") == 1


def test_a_missing_ledger_is_a_user_error(cli, tmp_path):
    code, _, err = cli("report", "--ledger", f"sqlite:///{tmp_path / 'nowhere' / 'ledger.db'}")
    assert code == 2 and "no ledger at" in err


def test_curves_figure_is_written(report_ledger, cli, tmp_path):
    ledger, _ = report_ledger
    code, out, err = cli("report", "--figure", "curves", "--runs", "2,15", "--ledger", ledger.url)
    assert (code, err) == (0, "")
    target = tmp_path / "results" / "figures" / "curves_runs_2-15.png"
    assert out.strip() == f"wrote {target.relative_to(tmp_path)}"
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(target.parent) == [target.name]
    code, _, _ = cli("report", "--figure", "curves", "--runs", "2", "--metric", "loss", "--out", "loss.svg",
                     "--ledger", ledger.url)
    assert code == 0 and (tmp_path / "loss.svg").read_text().lstrip().startswith("<?xml")


def test_curve_panels_one_per_metric_name():
    history = {1: {"val_dice": [(0, 0.3)], "loss": [(0, 1.0)]}, 2: {"loss": [(0, 0.9)], "lr": [(0, 1e-3)]}}
    assert curve_panels(history, ()) == ["loss", "lr", "val_dice"]
    assert curve_panels(history, ("val_dice", "loss")) == ["val_dice", "loss"]
    with pytest.raises(MedrefError):
        curve_panels(history, ("dice",))
