"""Golden files over a ledger filled by REAL tiny runs (burn-in + Semi-MedRef, and the step-matched
supervised control the supervised rows show, two seeds, two ratios),
plus one failed run and one stale run, for every table and format.

Measured numbers depend on the CPU's floating point, so the comparison masks them (and the
significance markers that follow from them): the golden files pin which cells exist, which are
missing, failed or stale, n per cell, the layout and the captions. The numbers themselves are
checked against the ledger directly: each cell's mean equals the mean of its runs' finals.

Regenerate with MEDREF_REGEN_GOLDEN=1 .venv/bin/pytest tests/reports/test_golden_real_runs.py
"""

from __future__ import annotations

import json
import re
import statistics

import pytest

from medref_cli.config import load_config
from medref_cli.ledger import open_ledger, record_run
from medref_cli.ledger.provenance import code_version
from medref_cli.reports import ReportOptions, build_report, current_versions, render

from .test_golden import SUFFIX, check_golden

TINY = [
    "--backbone", "mmi-unet-tiny", "--cpu",
    "--set", "data.image_size=64", "--set", "model.visual_pretrained=false",
    "--set", "model.text_encoder=tiny-random-bert", "--set", "train.batch_size=4",
    "--set", "train.max_steps_per_epoch=2", "--set", "runtime.progress=false",
    "--burnin-epochs", "1", "--epochs", "1",
]
NUMBER = re.compile(r"\d+\.\d+(e[-+]?\d+)?")


def mask(text: str) -> str:
    text = re.sub(r"(\\\*|\*){1,2}(?=[ |†}$]|\\dag|$)", "", text)  # significance markers follow the numbers
    return NUMBER.sub("#", text)


@pytest.fixture(scope="module")
def real_ledger(tmp_path_factory, synthetic_root):
    import contextlib
    import io
    import os

    import torch

    from medref_cli.cli.main import run

    work = tmp_path_factory.mktemp("real")
    old_cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(work)
    torch.set_num_threads(1)
    try:
        for ratio in ("0.01", "0.02"):
            for seed in ("0", "1"):
                with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                    run(["train", "--dataset", "synthetic", "--data", str(synthetic_root), *TINY,
                         "--ratio", ratio, "--seed", seed, "--set", f"split.seed={seed}", "--json"])
                with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                    run(["burnin", "--dataset", "synthetic", "--data", str(synthetic_root), *TINY[:-4],
                         "--epochs", "1", "--set", "train.epochs=1", "--set", "train.step_matched=true",
                         "--ratio", ratio, "--seed", seed, "--set", f"split.seed={seed}", "--json"])
        url = f"sqlite:///{work / 'results' / 'ledger.db'}"
        ledger = open_ledger(url, create=False)
        # one failed attempt (a real recorded failure) and one run made by older code
        cfg = load_config(sets=["model.backbone=mmi-unet-tiny", "split.ratio=0.05", "train.step_matched=true"])
        with contextlib.suppress(RuntimeError), record_run(ledger, "burnin", cfg, dataset="synthetic"):
            raise RuntimeError("diverged")
        with ledger.read() as s:
            from sqlalchemy import select

            from medref_cli.ledger.schema import Run

            newest_train = s.scalars(select(Run.id).where(Run.kind == "train").order_by(Run.id.desc())).first()
        from medref_cli.ledger import RunRecorder

        RunRecorder(ledger, newest_train, 0).update(code_version="0000000-older")
        yield ledger
        ledger.dispose()
    finally:
        os.chdir(old_cwd)
        torch.set_num_threads(threads)


CASES = [(f"real_table{n}.{SUFFIX[fmt]}", n, fmt) for n in (1, 2, 3) for fmt in SUFFIX]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "table", "fmt"), CASES, ids=[c[0] for c in CASES])
def test_golden_over_real_runs(real_ledger, name, table, fmt):
    current = current_versions(real_ledger)
    assert current.code_version == code_version().label
    built = build_report(real_ledger, ReportOptions(tables=(table,), explain=True), current=current)
    check_golden(name, mask(render(built, fmt)))


@pytest.mark.slow
def test_real_cells_are_the_mean_of_their_runs(real_ledger):
    built = build_report(real_ledger, ReportOptions(tables=(1,)), current=current_versions(real_ledger))
    data = json.loads(render(built, "json"))
    from medref_cli.ledger.report_queries import table_runs

    finals = {r.id: r.finals for r in table_runs(real_ledger) if r.status == "finished"}
    checked = 0
    for table in data["tables"]:
        for block in table["blocks"]:
            for row in block["rows"]:
                for column, cell in zip(table["columns"], row["cells"], strict=True):
                    if not cell["n"]:
                        continue
                    key = "test_dice_global" if column["metric"] == "dice" else "test_iou_global"
                    values = [finals[i][key] * 100 for i in cell["run_ids"]]
                    assert cell["n"] == len(values)
                    assert cell["mean"] == pytest.approx(statistics.mean(values))
                    checked += 1
    assert checked >= 8  # 2 ratios x 2 rows x 2 metrics, each over 2 seeds
