"""`medref train`: split -> burn-in (reused when recorded) -> semi-supervised phase."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.burnin import (
    BackboneOpt,
    CpuOpt,
    DataOpt,
    DatasetOpt,
    GpuOpt,
    RatioOpt,
    ResumeOpt,
    SeedOpt,
    run_options,
)
from medref_cli.cli.common import (
    ConfigOpt,
    JsonOpt,
    LedgerOpt,
    SetOpt,
    build_config,
    ledger_url,
)


def train(
    backbone: BackboneOpt = None,
    ratio: RatioOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    epochs: Annotated[int | None, typer.Option(help="Semi-supervised epochs (train.epochs).")] = None,
    burnin_epochs: Annotated[int | None, typer.Option(help="Burn-in epochs (train.burnin_epochs).")] = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    resume: ResumeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Semi-MedRef: EMA teacher-student with PosAug, T-PatchMix and ITCL (each a --set switch)."""
    import json

    from medref_cli.training.resume_run import given_keys
    from medref_cli.training.train_run import resume_train, run_train

    options = {**run_options(backbone, ratio, seed, gpu, cpu, dataset, data), "train.epochs": epochs,
               "train.burnin_epochs": burnin_epochs}
    cfg = build_config(config, set_, **options)
    url = ledger_url(ledger, cfg.runtime.results_dir)
    if resume is not None:
        burnin_id, reused, outcome = resume_train(url, resume, cfg, given_keys(config, set_, options))
    else:
        burnin_id, reused, outcome = run_train(cfg, url)
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
