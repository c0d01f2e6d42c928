"""Phase lengths, labeled draws, the run-long LR schedule and the selection rule (FIDELITY rows 1, 2, 14)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medref_cli.config import load_config
from medref_cli.training.phases import (
    ReplacementBatches,
    build_schedule,
    burnin_steps_per_epoch,
    epoch_plan,
    labeled_epoch,
    ramp_epochs_in,
    schedule_ticks,
    ssl_steps_per_epoch,
    supervised_epochs,
)
from medref_cli.training.supervised import BestKeeper

# QaTa-COV19 at 1%: 5,716 train images, 57 labeled, 5,659 unlabeled
QATA_LABELED, QATA_UNLABELED = 57, 5659


def test_burnin_at_qata_one_percent_is_885_steps():
    cfg = load_config()
    per_epoch = burnin_steps_per_epoch(cfg, QATA_LABELED, QATA_UNLABELED)
    assert per_epoch == math.ceil(QATA_UNLABELED / 32) == 177
    assert per_epoch * cfg.train.burnin_epochs == 885
    # the SSL epoch is as long
    assert ssl_steps_per_epoch(cfg, QATA_UNLABELED) == 177


def test_labeled_pass_burnin_is_the_other_reading():
    cfg = load_config(sets=["train.burnin_epoch=labeled"])
    assert burnin_steps_per_epoch(cfg, QATA_LABELED, QATA_UNLABELED) == 2  # ceil(57 / 32)


def test_without_unlabeled_data_an_epoch_is_a_labeled_pass():
    cfg = load_config()
    assert burnin_steps_per_epoch(cfg, 5716, 0) == math.ceil(5716 / 32)


def test_burnin_epoch_draws_labeled_batches_with_replacement():
    cfg = load_config()
    batches = labeled_epoch(cfg, QATA_LABELED, QATA_UNLABELED, 177, torch.Generator().manual_seed(0))
    assert len(batches) == 177 and all(len(b) == 32 for b in batches)
    rows = torch.cat(batches)
    assert int(rows.min()) >= 0 and int(rows.max()) < QATA_LABELED
    # with replacement: some batch holds a row twice (32 draws from 57 rows)
    assert any(len(set(b.tolist())) < 32 for b in batches)


def test_cycled_draw_serves_every_row_once_per_pass():
    cfg = load_config(sets=["train.labeled_draw=cycle"])
    batches = labeled_epoch(cfg, 8, 64, 2, torch.Generator().manual_seed(0))
    rows = torch.cat(batches)[:8]
    assert sorted(rows.tolist()) == list(range(8))


def test_replacement_stream_is_reproducible_from_the_generator():
    a = ReplacementBatches(57, 32, torch.Generator().manual_seed(3))
    b = ReplacementBatches(57, 32, torch.Generator().manual_seed(3))
    assert all(torch.equal(next(a), next(b)) for _ in range(3))


def _lr_after(cfg, phase: str, ticks_taken: int, per_epoch: int = 10) -> float:
    opt = torch.optim.AdamW(nn.Linear(2, 1).parameters(), lr=cfg.train.lr)
    sched = build_schedule(opt, cfg, schedule_ticks(cfg, phase, per_epoch, per_epoch))
    for _ in range(ticks_taken):
        opt.step()
        sched.step()
    return sched.get_last_lr()[0]


def test_default_schedule_spans_the_run_and_reaches_min_lr():
    cfg = load_config()
    assert schedule_ticks(cfg, "burnin", 177, 177) == schedule_ticks(cfg, "ssl", 177, 177) == 100
    assert _lr_after(cfg, "burnin", 100) == pytest.approx(cfg.train.min_lr, rel=1e-6)


def test_reference_schedule_only_halves_over_100_epochs():
    cfg = load_config(sets=["train.lr_period_epochs=200"])
    expected = 1e-6 + (3e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 100 / 200))
    assert _lr_after(cfg, "burnin", 100) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.505e-4, rel=1e-3)


def test_per_phase_per_step_schedule_is_the_old_reading():
    cfg = load_config(sets=["train.optimizer_scope=phase", "train.lr_step=step"])
    assert schedule_ticks(cfg, "burnin", 177, 177) == 5 * 177
    assert schedule_ticks(cfg, "ssl", 177, 177) == 95 * 177


def test_step_matched_control_takes_as_many_steps_as_the_ssl_run():
    cfg = load_config(sets=["train.step_matched=true"])
    per_epoch = burnin_steps_per_epoch(cfg, QATA_LABELED, QATA_UNLABELED)
    ssl_run = cfg.train.burnin_epochs * per_epoch + cfg.train.epochs * ssl_steps_per_epoch(cfg, QATA_UNLABELED)
    assert supervised_epochs(cfg) * per_epoch == ssl_run == 100 * 177


def test_step_matched_control_matches_labeled_pass_burnins_too():
    cfg = load_config(sets=["train.step_matched=true", "train.burnin_epoch=labeled"])
    plan = epoch_plan(cfg, QATA_LABELED, QATA_UNLABELED, supervised_epochs(cfg), "supervised")
    assert sum(plan) == 5 * 2 + 95 * 177
    assert epoch_plan(cfg, QATA_LABELED, QATA_UNLABELED, 5, "burnin") == [2] * 5


def test_ramps_advance_per_epoch_by_default():
    cfg = load_config()
    assert ramp_epochs_in(cfg, 176, 177) == 0.0 and ramp_epochs_in(cfg, 177, 177) == 1.0
    step_cfg = load_config(sets=["ssl.ramp_every=step"])
    assert ramp_epochs_in(step_cfg, 176, 177) == pytest.approx(176 / 177)


def test_keeper_keeps_any_better_score_but_patience_needs_min_delta():
    keeper = BestKeeper(patience=2, min_delta=0.01, min_epochs=0)
    module = nn.Linear(1, 1)
    assert keeper.offer(0.50, 1, module)
    assert keeper.offer(0.505, 2, module)  # kept (strictly better) ...
    assert keeper.best == 0.505 and keeper.stale_epochs == 1  # ... but not an improvement for stopping
    keeper.offer(0.505, 3, module)
    assert keeper.should_stop


def test_keeper_never_stops_before_min_epochs():
    keeper = BestKeeper(patience=1, min_delta=0.0, min_epochs=4)
    module = nn.Linear(1, 1)
    for epoch, score in enumerate([0.5, 0.4, 0.4], start=1):
        keeper.offer(score, epoch, module)
    assert keeper.stale_epochs == 2 and not keeper.should_stop
    keeper.offer(0.4, 4, module)
    assert keeper.should_stop


def test_student_is_selected_by_default():
    assert load_config().ssl.select == "student"
