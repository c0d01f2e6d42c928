"""`medref report --details`: the runs behind the cells, with worked values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from medref_cli.config import schema_hash
from medref_cli.ledger import RunRecorder, open_ledger
from medref_cli.ledger.report_queries import newest_data_hashes
from medref_cli.reports import ReportOptions, build_report
from medref_cli.reports.details import weighted_rate
from medref_cli.reports.output import render
from medref_cli.reports.staleness import CurrentVersions
from tests.reports.conftest import CURRENT_CODE, Recorder, finals_from, image_dice

Q, MM = "qata", "mmi-unet"
RATIO = 0.05
BASE_GAIN, OURS_GAIN = 0.04, 0.09  # conftest.RATIO_GAIN[0.05] and + METHODS["full"]
FULL_GAIN = 0.07  # conftest.RATIO_GAIN[1.0]


@pytest.fixture()
def small_ledger(tmp_path, monkeypatch):
    """5%: step-matched Baseline and Ours (seeds 1, 2); 100% supervised (seeds 1, 2)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    monkeypatch.setattr("medref_cli.ledger.recorder.code_version", lambda: CURRENT_CODE)
    rec = Recorder(ledger)
    ids: dict[str, int] = {}
    # Ours seed 1 started from the Baseline run of its seed; seed 2 from a run without test scores
    ids["unscored"] = rec.add("split", Q, MM, RATIO, 2, scores=False, finals=False)
    for seed in (1, 2):
        ids[f"base{seed}"] = rec.add("burnin", Q, MM, RATIO, seed)
        parent = ids["base1"] if seed == 1 else ids["unscored"]
        ids[f"ours{seed}"] = rec.add("train", Q, MM, RATIO, seed, "full", parent=parent)
        ids[f"full{seed}"] = rec.add("burnin", Q, MM, 1.0, seed)
    run = RunRecorder(ledger, ids["ours1"], 0)
    run.log_metrics({"mixed_share": 0.2, "pseudo_fg": 0.1}, step=10)
    run.log_metrics({"mixed_share": 0.5, "pseudo_fg": 0.3}, step=25)
    run.update(started_at=datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
               ended_at=datetime(2026, 1, 1, 10, 12, 36, tzinfo=UTC))
    current = CurrentVersions(CURRENT_CODE.label, schema_hash(), newest_data_hashes(ledger))
    yield ledger, current, ids, url
    ledger.dispose()


def _details(ledger, current):
    options = ReportOptions(tables=(2,), ratios=(RATIO,), details=True)
    (table,) = build_report(ledger, options, current=current)
    assert [c.group for c in table.columns] == ["5%", "5%"]
    return table, {row.label: row for row in table.details[0].rows}


def test_weighted_rate_weights_each_window_by_the_steps_it_covers():
    assert weighted_rate([(10, 0.2), (25, 0.5)]) == pytest.approx((0.2 * 10 + 0.5 * 15) / 25)
    assert weighted_rate([]) is None


def test_the_gap_share_is_worked_out_from_the_seed_means(small_ledger):
    ledger, current, _ids, _url = small_ledger
    _table, rows = _details(ledger, current)

    def mean(gain, name):
        return sum(finals_from(image_dice(gain, s))[name] for s in (1, 2)) / 2

    for definition, name in (("global", "test_dice_global"), ("per-image", "test_dice_per_image_mean")):
        low, ours, high = mean(BASE_GAIN, name), mean(OURS_GAIN, name), mean(FULL_GAIN, name)
        assert rows["+ ITCL (Ours)"].gap_share[definition] == pytest.approx((ours - low) / (high - low))
    assert rows["+ T-S EMA"].gap_share == {"global": None, "per-image": None}  # never run
    assert rows["Baseline"].gap_share == {}


def test_the_ends_of_the_gap_are_the_baseline_and_100_percent_seed_statistics(small_ledger):
    import statistics

    ledger, current, _ids, _url = small_ledger
    table, _rows = _details(ledger, current)
    (detail,) = table.details
    assert [end.label for end in detail.gap_ends] == ["Baseline", "100% supervised"]
    for end, gain in zip(detail.gap_ends, (BASE_GAIN, FULL_GAIN), strict=True):
        for definition, name in (("global", "test_dice_global"), ("per-image", "test_dice_per_image_mean")):
            values = [finals_from(image_dice(gain, s))[name] * 100 for s in (1, 2)]
            stats = end.dice[definition]
            assert (stats.n, stats.mean) == (2, pytest.approx(statistics.mean(values)))
            assert stats.std == pytest.approx(statistics.stdev(values))
    md = render([table], "markdown")
    (line,) = [ln for ln in md.splitlines() if ln.startswith("Ends of the gap")]
    base, full = detail.gap_ends
    expected = "; ".join(f"{e.label} {e.dice['global'].mean:.2f} ± {e.dice['global'].std:.2f} (n=2) / "
                         f"{e.dice['per-image'].mean:.2f} ± {e.dice['per-image'].std:.2f} (n=2)" for e in (base, full))
    assert line == f"Ends of the gap (test Dice, mean ± std over seeds, global / per image): {expected}."


def test_each_run_is_tested_against_the_baseline_run_of_its_own_seed(small_ledger):
    ledger, current, ids, _url = small_ledger
    _table, rows = _details(ledger, current)
    ours = {r.seed: r for r in rows["+ ITCL (Ours)"].runs}
    for seed in (1, 2):
        diffs = [100 * (a - b) for a, b in zip(image_dice(OURS_GAIN, seed), image_dice(BASE_GAIN, seed), strict=True)]
        assert ours[seed].vs_baseline.baseline == f"Baseline seed {seed}"
        assert ours[seed].vs_baseline.mean_difference == pytest.approx(sum(diffs) / len(diffs))
        assert ours[seed].vs_baseline.n_images == len(diffs)
    assert ours[1].run_id == ids["ours1"]
    assert ours[1].wall_s == pytest.approx(756.0)
    assert ours[1].rates["mixed_share"] == pytest.approx(0.38)
    assert ours[1].rates["pseudo_fg"] == pytest.approx((0.1 * 10 + 0.3 * 15) / 25)
    assert ours[1].rates["text_changed_share"] is None
    assert ours[2].rates["mixed_share"] is None
    assert all(r.vs_baseline is None for r in rows["Baseline"].runs)


def test_a_semi_supervised_run_is_tested_against_the_burn_in_it_started_from(small_ledger):
    ledger, current, ids, _url = small_ledger
    table, rows = _details(ledger, current)
    ours = {r.seed: r for r in rows["+ ITCL (Ours)"].runs}
    diffs = [100 * (a - b) for a, b in zip(image_dice(OURS_GAIN, 1), image_dice(BASE_GAIN, 1), strict=True)]
    assert ours[1].vs_burnin.baseline == f"burn-in run {ids['base1']}"
    assert ours[1].vs_burnin.mean_difference == pytest.approx(sum(diffs) / len(diffs))
    assert ours[1].vs_burnin.n_images == len(diffs)
    assert ours[2].vs_burnin is None  # its parent recorded no test scores
    assert all(r.vs_burnin is None for r in rows["Baseline"].runs)  # supervised runs have no burn-in
    text = render([table], "markdown")
    line = next(li for li in text.splitlines() if li.startswith(f"| + ITCL (Ours) | 1 | {ids['ours1']} |"))
    assert f"| run {ids['base1']}: +{sum(diffs) / len(diffs):.2f} pp" in line


def test_rows_are_tested_against_the_row_above(small_ledger):
    ledger, current, _ids, _url = small_ledger
    _table, rows = _details(ledger, current)
    assert rows["Baseline"].vs_previous is None
    assert rows["+ T-S EMA"].vs_previous is None  # no runs of its own
    assert rows["+ ITCL (Ours)"].vs_previous is None  # the row above (+ T-PatchMix) has no runs
    table, _ = _details(ledger, current)
    (full,) = table.details[0].full
    assert sorted(r.seed for r in full.runs) == [1, 2]


def test_markdown_and_json_show_the_details(small_ledger, cli):
    _ledger, _current, ids, url = small_ledger
    args = ["report", "--table", "2", "--ratio", "0.05", "--details", "--ledger", url]
    code, md, err = cli(*args, "--format", "markdown")
    assert (code, err) == (0, "")
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| + ITCL (Ours) | 1 | {ids['ours1']} |"))
    assert "| 12.6 min |" in line and "| 0.380 |" in line and "| +5.45 pp" in line
    assert "Share of the gap to 100% supervision closed" in md
    data = json.loads(cli(*args, "--format", "json")[1])
    assert data["tables"][0]["details"][0]["title"] == "QaTa-COV19, MMI-UNet, 5%"
    plain = json.loads(cli("report", "--table", "2", "--format", "json", "--ledger", url)[1])
    assert "details" not in plain["tables"][0]


def test_runs_diff_tests_two_runs_paired_by_image(small_ledger, cli):
    _ledger, _current, ids, url = small_ledger
    diffs = [100 * (a - b) for a, b in zip(image_dice(OURS_GAIN, 1), image_dice(BASE_GAIN, 1), strict=True)]
    code, out, err = cli("runs", "diff", str(ids["base1"]), str(ids["ours1"]), "--json", "--ledger", url)
    assert code == 0, err
    test = json.loads(out)["test_dice"]
    assert test["paired"]["mean_difference"] == pytest.approx(sum(diffs) / len(diffs))
    assert test["paired"]["n_images"] == len(diffs)
    assert test["paired"]["ci_low"] < test["paired"]["mean_difference"] < test["paired"]["ci_high"]
    assert test["b"]["per_image"] == pytest.approx(finals_from(image_dice(OURS_GAIN, 1))["test_dice_per_image_mean"])
    code, out, err = cli("runs", "diff", str(ids["base1"]), str(ids["ours1"]), "--ledger", url)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith(f"run {ids['ours1']} - run {ids['base1']}, "))
    assert f": +{sum(diffs) / len(diffs):.2f} pp [" in line and f"n={len(diffs)}" in line
    code, out, err = cli("runs", "diff", str(ids["unscored"]), str(ids["ours1"]), "--ledger", url)
    assert code == 0, err
    assert "no paired test: the two runs share fewer than 2 scored test images" in out
    assert f"test Dice per image: run {ids['unscored']} -, run {ids['ours1']} " in out


@pytest.mark.slow
def test_the_results_script_rebuilds_the_same_document_from_the_same_ledger(small_ledger, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _ledger, _current, ids, url = small_ledger
    root = Path(__file__).resolve().parents[2]
    preamble = tmp_path / "preamble.md"
    preamble.write_text("# CPU results\n\nCommands go here.\n", encoding="utf-8")
    cmd = [sys.executable, str(root / "scripts" / "results_cpu.py"), "--ledger", url, "--ratio", "0.05",
           "--sweep", f"{ids['base1']},{ids['full1']}", "--preamble", str(preamble), "--code", "c" * 7]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    first, second = (subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
                     for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = first.stdout
    assert doc.startswith("# CPU results\n\nCommands go here.\n")
    sweep = doc[doc.index("## Recipe sweep"):doc.index("## Table 2, global Dice")]
    for run, labels in ((ids["full1"], "100%"), (ids["base1"], "5%")):
        row = next(ln for ln in sweep.splitlines() if ln.startswith(f"| {run} | "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "c" * 7, "the run's code version, short"
        assert cells[2] not in ("", "-"), "the CPU the run was timed on"
        assert cells[3:6] == ["burnin", labels, "1"], row
    for title in ("## Table 2, global Dice", "## Table 2, per-image Dice", "## Table 3, global Dice",
                  "## Table 3, per-image Dice"):
        assert title in doc
    assert doc.count("#### Runs behind") == 4
    assert doc.endswith(f"<!-- made by: scripts/results_cpu.py --ledger LEDGER --ratio 0.05 --sweep "
                        f"{ids['base1']},{ids['full1']} --preamble {preamble} --code ccccccc -->\n")
    bad = subprocess.run([*cmd[:3], "sqlite:///" + str(tmp_path / "none.db")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "no ledger at" in bad.stderr


@pytest.mark.slow
def test_the_results_script_shows_a_variant_of_the_grid_apart_from_its_tables(small_ledger, tmp_path):
    """Runs of the grid's code with one setting changed form the newest config group of their cells;
    --grid-where keeps them out of the grid's tables and --variant shows them in their own."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    ledger, _current, ids, url = small_ledger
    rec = Recorder(ledger)
    variant = {seed: rec.add("train", Q, MM, RATIO, seed, "full", parent=ids[f"base{seed}"],
                             extra=("ssl.shift=0.2",)) for seed in (1, 2)}
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(root / "scripts" / "results_cpu.py"), "--ledger", url, "--ratio", "0.05",
           "--code", "c" * 7]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}

    def made(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)

    def ours_runs(section: str) -> set[int]:
        rows = re.finditer(r"^\| \+ ITCL \(Ours\) \| \d+ \| (\d+) \|", section, re.MULTILINE)
        return {int(m.group(1)) for m in rows}

    plain = made()
    assert plain.returncode == 0, plain.stderr
    grid = plain.stdout[plain.stdout.index("## Table 2, per-image Dice"):plain.stdout.index("## Table 3, global")]
    assert ours_runs(grid) == set(variant.values()), "unfiltered, the newest group (the variant) fills the cell"
    done = made("--grid-where", "ssl.shift=0", "--variant", "ssl.shift=0.2")
    assert done.returncode == 0, done.stderr
    doc = done.stdout
    grid = doc[doc.index("## Table 2, per-image Dice"):doc.index("## Table 3, global")]
    assert ours_runs(grid) == {ids["ours1"], ids["ours2"]}
    title = "## Variant of the grid (ssl.shift=0.2): Table 2, per-image Dice"
    assert doc.count("## Variant of the grid (ssl.shift=0.2): Table 2, ") == 2 and "): Table 3" not in doc
    assert ours_runs(doc[doc.index(title):]) == set(variant.values())
    assert "| Baseline | 1 | " not in doc[doc.index(title):], "the variant's Baseline was never run"
    assert doc.endswith("--code ccccccc --grid-where ssl.shift=0 --variant ssl.shift=0.2 -->\n")
    both = made("--where", "ssl.shift=0", "--variant", "ssl.shift=0.2")  # the variant's value wins over --where
    assert both.returncode == 0, both.stderr
    assert ours_runs(both.stdout[both.stdout.index(title):]) == set(variant.values())
    for bad, message in (((("--variant", "ssl.shift=0.2"), "--variant needs --code")),
                         ((("--code", "c" * 7, "--variant", "ssl.shift:2"), "--variant expects KEY=VALUE"))):
        args = [a for a in cmd if a not in ("--code", "c" * 7)] + list(bad)
        failed = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
        assert failed.returncode == 2 and message in failed.stderr, failed.stderr


@pytest.mark.slow
def test_the_results_script_shows_run_pairs_with_their_paired_test(small_ledger, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _ledger, _current, ids, url = small_ledger
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(root / "scripts" / "results_cpu.py"), "--ledger", url, "--code", "c" * 7]
    base, ours = ids["base1"], ids["ours1"]
    done = subprocess.run([*cmd, "--pairs", f"{base}:{ours}"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    section = done.stdout[done.stdout.index("## Run pairs"):]
    (row,) = [ln for ln in section.splitlines() if ln.startswith(f"| {base} | {ours} | ")]
    diffs = [100 * (a - b) for a, b in zip(image_dice(OURS_GAIN, 1), image_dice(BASE_GAIN, 1), strict=True)]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "train.step_matched: True → False", "what the second run changes"
    assert cells[5].startswith(f"{sum(diffs) / len(diffs):+.2f} pp [") and cells[5].endswith(f"n={len(diffs)}")
    per_image = [100 * finals_from(image_dice(g, 1))["test_dice_per_image_mean"] for g in (BASE_GAIN, OURS_GAIN)]
    assert cells[4] == f"{per_image[0]:.2f} → {per_image[1]:.2f}"
    assert done.stdout.endswith(f"--code ccccccc --pairs {base}:{ours} -->\n")
    bad = subprocess.run([*cmd, "--pairs", f"{base}-{ours}"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--pairs expects A:B[,A:B...] with run ids" in bad.stderr, bad.stderr
