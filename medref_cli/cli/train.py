"""`medref train`: split -> burn-in (reused when recorded) -> semi-supervised phase."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.burnin import (
    BackboneOpt,
    CompileOpt,
    CpuOpt,
    DataOpt,
    DatasetOpt,
    GpuOpt,
    GpusOpt,
    NprocOpt,
    RatioOpt,
    ResumeOpt,
    SeedOpt,
    execute,
    run_options,
)
from medref_cli.cli.common import (
    ConfigOpt,
    JsonOpt,
    LedgerOpt,
    SetOpt,
)


def train(
    backbone: BackboneOpt = None,
    ratio: RatioOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    gpus: GpusOpt = None,
    nproc: NprocOpt = None,
    compile_: CompileOpt = None,
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

    options = {**run_options(backbone, ratio, seed, gpu, cpu, dataset, data, compile_, gpus), "train.epochs": epochs,
               "train.burnin_epochs": burnin_epochs}
    s = execute("train", config, set_, options, ledger, gpus, nproc, resume)
    if s is None:
        return
    if json_:
        typer.echo(json.dumps(s))
        return
    typer.echo(
        f"train run {s['run_id']} (burn-in run {s['burnin_run_id']}{', reused' if s['burnin_reused'] else ''}): "
        f"best epoch {s['best_epoch']} (val Dice {s['val_dice_best']:.4f})\n"
        f"test Dice global {s['test_dice_global']:.4f}  IoU global {s['test_iou_global']:.4f}  "
        f"Dice per image {s['test_dice_per_image_mean']:.4f} ± {s['test_dice_per_image_std']:.4f}  "
        f"(n={int(s['test_n_images'])})\ncheckpoint {s['checkpoint']}"
    )
