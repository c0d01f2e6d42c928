"""A ledger populated with `record_run` the way the training code will record runs.

It holds, for QaTa (and one MosMed block), burn-in and semi-supervised runs with realistic
configs (`load_config(sets=...)`), test finals and per-image test scores, and every case a
report must handle: several seeds, missing cells, failed / killed / running / lost runs, a
finished run without finals, a stale run (other code version) and a stale cell (older data
hash), two config groups in one cell, a seed run twice, and runs that fit no row.

The code version of every run is fixed (`CURRENT_CODE`), so nothing about this checkout leaks
into the golden files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from medref_cli.config import load_config, schema_hash
from medref_cli.ledger import RunRecorder, open_ledger, record_run
from medref_cli.ledger.provenance import CodeVersion
from medref_cli.ledger.report_queries import newest_data_hashes
from medref_cli.reports.staleness import CurrentVersions

CURRENT_CODE = CodeVersion("c" * 40, False, None, "0.1.0")
OLD_CODE_LABEL = "b" * 40
SAMPLES = [f"test_{i:02d}" for i in range(10)]
QATA_DATA, QATA_OLD_DATA, MOSMED_DATA = "qata-data-v2", "qata-data-v1", "mosmed-data-v1"

RATIO_GAIN = {0.01: 0.0, 0.02: 0.02, 0.05: 0.04, 0.1: 0.045, 0.15: 0.05, 1.0: 0.07}


def ssl_sets(posaug: bool = False, mix: str = "none", contrastive: str = "none", text_strong: bool = False,
             ema: bool = True) -> list[str]:
    """All six components spelled out, so the scenario does not depend on the config's defaults."""
    return [f"ssl.ema={ema}", "ssl.img_strong=true", f"ssl.text_strong={text_strong}", f"ssl.posaug={posaug}",
            f"ssl.mix={mix}", f"ssl.contrastive={contrastive}"]


# ssl --set overrides of each method, and how much it adds to the per-image Dice
METHODS = {
    "tsema": (ssl_sets(), 0.030),
    "posaug": (ssl_sets(posaug=True), 0.040),
    "posaug_tpm": (ssl_sets(posaug=True, mix="tpatchmix"), 0.045),
    "full": (ssl_sets(posaug=True, mix="tpatchmix", contrastive="itcl"), 0.050),
    "textstrong": (ssl_sets(text_strong=True), 0.031),
    "cutmix": (ssl_sets(mix="cutmix"), 0.015),
    "spc": (ssl_sets(mix="spc"), 0.031),
    "clip": (ssl_sets(posaug=True, mix="tpatchmix", contrastive="clip"), 0.042),
    "no_ema": (ssl_sets(posaug=True, mix="tpatchmix", contrastive="itcl", ema=False), 0.020),
}


def image_dice(gain: float, seed: int) -> list[float]:
    """Per-image test Dice: image i gets easier with i, a method's gain grows a little with i (so paired
    differences are distinct, no ties), seeds wobble a little."""
    return [min(0.99, 0.55 + 0.03 * i + gain * (1 + 0.02 * i) + 0.002 * ((3 * i + 5 * seed) % 7 - 3))
            for i in range(len(SAMPLES))]


def finals_from(dice: list[float]) -> dict[str, float]:
    iou = [d / (2 - d) for d in dice]
    mean_d, mean_i = sum(dice) / len(dice), sum(iou) / len(iou)
    glob = mean_d + 0.01  # pixel-accumulated Dice differs from the per-image mean
    return {
        "test_dice_global": glob,
        "test_iou_global": glob / (2 - glob),
        "test_dice_per_image_mean": mean_d,
        "test_dice_per_image_std": math.sqrt(sum((d - mean_d) ** 2 for d in dice) / len(dice)),
        "test_iou_per_image_mean": mean_i,
        "test_iou_per_image_std": math.sqrt(sum((v - mean_i) ** 2 for v in iou) / len(iou)),
    }


@dataclass
class Recorder:
    ledger: object

    def add(self, kind: str, dataset: str, backbone: str, ratio: float, seed: int, method: str | None = None,
            *, outcome: str = "finished", extra: tuple[str, ...] = (), data_hash: str = QATA_DATA,
            parent: int | None = None, scores: bool = True, finals: bool = True) -> int:
        sets = [f"data.dataset={dataset}", f"model.backbone={backbone}", f"split.ratio={ratio}",
                f"train.seed={seed}", "runtime.heartbeat_s=0", *extra]
        gain = RATIO_GAIN[ratio]
        if method is not None:
            sets += METHODS[method][0]
            gain += METHODS[method][1]
        if kind == "burnin":  # the supervised rows take step-matched supervised runs
            sets.append("train.step_matched=true")
        cfg = load_config(sets=sets)
        dice = image_dice(gain, seed)
        try:
            with record_run(self.ledger, kind, cfg, parent_id=parent, dataset=dataset, data_hash=data_hash,
                            split_hash=f"split-{dataset}-{ratio}") as run:
                run.log_metrics({"loss": 1.0, "val_dice": 0.3}, step=0)
                run.log_metrics({"loss": 0.5 - gain, "val_dice": 0.6 + gain}, step=10)
                if outcome == "failed":
                    raise RuntimeError("CUDA out of memory")
                if finals:
                    run.set_final(finals_from(dice))
                if scores:
                    run.add_image_scores("test", SAMPLES, dice, [d / (2 - d) for d in dice])
        except RuntimeError:
            assert outcome == "failed"
        if outcome == "killed":
            run.update(status="killed", error="killed by SIGTERM")
        elif outcome == "running":
            run.update(status="running", ended_at=None, heartbeat_at=datetime.now(UTC),
                       heartbeat_interval_s=1e6)
        elif outcome == "lost":
            run.update(status="running", ended_at=None, heartbeat_at=datetime(2000, 1, 1, tzinfo=UTC))
        return run.id

    def update(self, run_id: int, **facts: object) -> None:
        """Rewrite run columns after the fact (e.g. to make a run look made by older code)."""
        RunRecorder(self.ledger, run_id, 0).update(**facts)


def populate(rec: Recorder) -> None:
    q, mm, gd = "qata", "mmi-unet", "guidedecoder"
    # the oldest run saw an older version of the QaTa data (its cell is stale)
    rec.add("burnin", q, gd, 0.05, 1, data_hash=QATA_OLD_DATA)
    burnin: dict[tuple[float, int], int] = {}
    for ratio, seeds in ((0.01, (1, 2, 3)), (0.02, (1, 2, 3)), (0.05, (1,))):
        for seed in seeds:
            burnin[(ratio, seed)] = rec.add("burnin", q, mm, ratio, seed)
    rec.add("burnin", q, mm, 0.15, 1, outcome="failed")
    rec.add("burnin", q, mm, 0.15, 2, outcome="killed")
    rec.add("burnin", q, mm, 1.0, 1, outcome="running")
    rec.add("burnin", q, gd, 0.02, 1, outcome="lost")
    rec.add("burnin", q, gd, 0.05, 2)
    rec.add("burnin", q, mm, 0.1, 1)  # a ratio no table has

    def train(ratio: float, seed: int, method: str, **kw: object) -> int:
        return rec.add("train", q, mm, ratio, seed, method, parent=burnin.get((ratio, seed)), **kw)

    for seed in (1, 2, 3):
        train(0.01, seed, "full")
        train(0.01, seed, "tsema")
    for seed in (1, 2):
        train(0.02, seed, "full")
    stale = train(0.02, 3, "full")
    rec.update(stale, code_version=OLD_CODE_LABEL)
    train(0.02, 1, "tsema")
    train(0.02, 2, "tsema")
    train(0.02, 2, "tsema")  # the same seed again: supersedes the previous run
    for seed in (1, 2):
        train(0.01, seed, "posaug", extra=("train.epochs=20",))
    train(0.01, 1, "posaug", extra=("train.epochs=40",))  # a newer config group
    for seed in (1, 2):
        train(0.02, seed, "posaug")
        train(0.01, seed, "posaug_tpm")
        train(0.01, seed, "textstrong")
        train(0.01, seed, "cutmix")
    train(0.02, 1, "posaug_tpm", finals=False)
    train(0.02, 2, "posaug_tpm")
    train(0.01, 1, "spc", outcome="failed")
    train(0.01, 1, "clip", scores=False)
    train(0.01, 1, "no_ema")  # matches no row of any table
    # MosMedData+: one supervised run and one Ours run at 5%
    parent = rec.add("burnin", "mosmed", gd, 0.05, 1, data_hash=MOSMED_DATA)
    rec.add("train", "mosmed", gd, 0.05, 1, "full", data_hash=MOSMED_DATA, parent=parent)


@pytest.fixture(scope="module")
def report_ledger(tmp_path_factory):
    """(ledger, current versions) of the scenario above; built once per test module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'ledger.db'}"
    ledger = open_ledger(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("medref_cli.ledger.recorder.code_version", lambda: CURRENT_CODE)
        populate(Recorder(ledger))
    current = CurrentVersions(CURRENT_CODE.label, schema_hash(), newest_data_hashes(ledger))
    yield ledger, current
    ledger.dispose()


@pytest.fixture(scope="session")
def scenario() -> SimpleNamespace:
    """The scenario's own arithmetic, for tests that work out expected cell values."""
    return SimpleNamespace(ratio_gain=RATIO_GAIN, finals_from=finals_from, image_dice=image_dice,
                           current_code=CURRENT_CODE)
