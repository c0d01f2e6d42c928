"""`medref burnin`: the supervised phase (and, at --ratio 1.0, the fully supervised baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

BackboneOpt = Annotated[str | None, typer.Option(help="Registered model name (see `medref models`).")]
RatioOpt = Annotated[float | None, typer.Option(help="Share of train that keeps labels, in (0, 1].")]
DatasetOpt = Annotated[str | None, typer.Option(help="synthetic | qata | mosmed | custom.")]
DataOpt = Annotated[Path | None, typer.Option(help="Data folder (any supported layout).")]
GpuOpt = Annotated[int | None, typer.Option(help="Run on cuda:N.")]
CpuOpt = Annotated[bool, typer.Option("--cpu", help="Run on the CPU.")]
SeedOpt = Annotated[int | None, typer.Option(help="Training seed.")]
ResumeOpt = Annotated[int | None, typer.Option(
    "--resume", metavar="RUN_ID", show_default=False,
    help="Continue a killed, lost or failed run as the same ledger run, from its last checkpoint "
         "(config as recorded; other options must agree with it).")]


def run_options(backbone: str | None, ratio: float | None, seed: int | None, gpu: int | None, cpu: bool,
                dataset: str | None, data: Path | None) -> dict:
    """The config keys that the options shared by `burnin` and `train` set."""
    return {
        "model.backbone": backbone,
        "split.ratio": ratio,
        "train.seed": seed,
        "runtime.device": device_override(gpu, cpu),
        **data_overrides(dataset, data),
    }


def burnin(
    backbone: BackboneOpt = None,
    ratio: RatioOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    epochs: Annotated[int | None, typer.Option(help="Burn-in epochs (train.burnin_epochs).")] = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    resume: ResumeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train the student on the labeled split only; record checkpoint and test metrics."""
    import json

    from medref_cli.training.burnin_run import resume_burnin, run_burnin
    from medref_cli.training.resume_run import given_keys

    options = {**run_options(backbone, ratio, seed, gpu, cpu, dataset, data), "train.burnin_epochs": epochs}
    cfg = build_config(config, set_, **options)
    url = ledger_url(ledger, cfg.runtime.results_dir)
    if resume is not None:
        outcome = resume_burnin(url, resume, cfg, given_keys(config, set_, options))
    else:
        outcome = run_burnin(cfg, url)
    summary = {"run_id": outcome.run_id, "checkpoint": str(outcome.checkpoint), "best_epoch": outcome.fit.best_epoch,
               "val_dice_best": outcome.fit.best_val_dice, **outcome.test.prefixed("test")}
    if json_:
        typer.echo(json.dumps(summary))
    else:
        m = outcome.test.metrics
        typer.echo(
            f"burn-in run {outcome.run_id}: best epoch {outcome.fit.best_epoch} (val Dice {outcome.fit.best_val_dice:.4f})"
            f"\ntest Dice global {m['dice_global']:.4f}  IoU global {m['iou_global']:.4f}  "
            f"Dice per image {m['dice_per_image_mean']:.4f} ± {m['dice_per_image_std']:.4f}  "
            f"IoU per image {m['iou_per_image_mean']:.4f} ± {m['iou_per_image_std']:.4f}  (n={m['n_images']})"
            f"\ncheckpoint {outcome.checkpoint}"
        )
