"""Burn-in and SSL as one run (FIDELITY rows 2, 3, 14) and both final weights kept (`evaluate --weights`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medref_cli.training.schedules import cosine_lr

from ..runs.tiny import TINY, _data, _rows


def _lr_history(tmp_path: Path, run_id: int) -> list[tuple[int, float]]:
    return _rows(tmp_path, f"SELECT step, value FROM metric_history WHERE run_id={run_id} AND name='lr' ORDER BY step")


def test_ssl_continues_the_burnin_schedule_and_keeps_both_weights(cli, tmp_path, synthetic_root):
    # 2 burn-in steps + 2 x 2 SSL steps, the lr changing every step: one cosine of 6 steps over both
    args = [*_data(synthetic_root), *TINY, "--ratio", "0.25", "--burnin-epochs", "1", "--epochs", "2",
            "--set", "train.lr_step=step", "--json"]
    code, out, err = cli("train", *args)
    assert code == 0, err
    summary = json.loads(out)
    burnin_lr = _lr_history(tmp_path, summary["burnin_run_id"])
    ssl_lr = _lr_history(tmp_path, summary["run_id"])
    assert [s for s, _ in burnin_lr] == [1, 2] and [s for s, _ in ssl_lr] == [1, 2, 3, 4]
    for step, value in burnin_lr:
        assert value == pytest.approx(cosine_lr(step, 6, 3e-4, 1e-6), rel=1e-6)
    for step, value in ssl_lr:  # continues where burn-in left off, not a fresh schedule
        assert value == pytest.approx(cosine_lr(2 + step, 6, 3e-4, 1e-6), rel=1e-6)

    burnin_state = torch.load(Path(_rows(tmp_path, f"SELECT path FROM artifacts WHERE run_id={summary['burnin_run_id']}"
                                                   " AND role='checkpoint'")[0][0]), weights_only=True)
    assert burnin_state["handoff"]["teacher"] is not None  # the EMA teacher tracked the burn-in
    assert burnin_state["handoff"]["steps"] == 2
    state = torch.load(Path(summary["checkpoint"]), weights_only=True)
    assert state["selected"] == "student" and set(state["student_teacher"]) == {"student", "teacher"}
    assert all(torch.equal(state["model"][k], state["student_teacher"]["student"][k]) for k in state["model"])

    code, out, err = cli("evaluate", str(summary["run_id"]), "--weights", "teacher", "--cpu", "--json")
    assert code == 0, err
    tags = json.loads(_rows(tmp_path, f"SELECT tags FROM runs WHERE id={json.loads(out)['run_id']}")[0][0])
    assert tags["evaluated_weights"] == "teacher"

    before = _rows(tmp_path, "SELECT count(*) FROM runs")
    code, out, err = cli("evaluate", str(summary["run_id"]), "--weights", "mean", "--cpu")
    assert code == 2 and "--weights must be one of selected, student, teacher" in err
    assert len(err.strip().splitlines()) == 1 and _rows(tmp_path, "SELECT count(*) FROM runs") == before


def test_step_matched_control_takes_as_many_steps_as_the_ssl_run(cli, tmp_path, synthetic_root):
    args = [*_data(synthetic_root), *TINY, "--ratio", "0.25", "--set", "train.burnin_epochs=1",
            "--set", "train.epochs=2", "--json"]
    code, out, err = cli("train", *args)
    assert code == 0, err
    ssl = json.loads(out)
    code, out, err = cli("burnin", *args, "--set", "train.step_matched=true")
    assert code == 0, err
    control = json.loads(out)
    steps = dict(_rows(tmp_path, "SELECT run_id, value FROM final_metrics WHERE name='steps'"))
    assert steps[control["run_id"]] == steps[ssl["burnin_run_id"]] + steps[ssl["run_id"]] == 6
