"""`medref train`: split -> burn-in (reused when recorded) -> semi-supervised phase."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medref_cli.cli.burnin import BackboneOpt, CpuOpt, DataOpt, DatasetOpt, GpuOpt, RatioOpt, SeedOpt
from medref_cli.cli.common import (
    ConfigOpt,
    JsonOpt,
    LedgerOpt,
    SetOpt,
    build_config,
    data_overrides,
    device_override,
    ledger_url,
)


def train(
    backbone: BackboneOpt = None,
    ratio: RatioOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    epochs: Annotated[Optional[int], typer.Option(help="Semi-supervised epochs (train.epochs).")] = None,
    burnin_epochs: Annotated[Optional[int], typer.Option(help="Burn-in epochs (train.burnin_epochs).")] = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Semi-MedRef: EMA teacher-student with PosAug, T-PatchMix and ITCL (each a --set switch)."""
    import json

    from medref_cli.training.train_run import run_train

    cfg = build_config(
        config,
        set_,
        **{
            "model.backbone": backbone,
            "split.ratio": ratio,
            "train.epochs": epochs,
            "train.burnin_epochs": burnin_epochs,
            "train.seed": seed,
            "runtime.device": device_override(gpu, cpu),
            **data_overrides(dataset, data),
        },
    )
    burnin_id, reused, outcome = run_train(cfg, ledger_url(ledger, cfg.runtime.results_dir))
    m = outcome.test.metrics
    summary = {"run_id": outcome.run_id, "burnin_run_id": burnin_id, "burnin_reused": reused,
               "checkpoint": str(outcome.checkpoint), "val_dice_best": outcome.fit.best_val_dice,
               **outcome.test.prefixed("test")}
    if json_:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"train run {outcome.run_id} (burn-in run {burnin_id}{', reused' if reused else ''}): best epoch "
        f"{outcome.fit.best_epoch} (val Dice {outcome.fit.best_val_dice:.4f})\n"
        f"test Dice global {m['dice_global']:.4f}  IoU global {m['iou_global']:.4f}  "
        f"Dice per image {m['dice_per_image_mean']:.4f} ± {m['dice_per_image_std']:.4f}  (n={m['n_images']})\n"
        f"checkpoint {outcome.checkpoint}"
    )
