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

    from medref_cli.training.resume_run import given_keys
    from medref_cli.training.train_run import resume_train, run_train, train_summary

    options = {**run_options(backbone, ratio, seed, gpu, cpu, dataset, data, compile_, gpus), "train.epochs": epochs,
               "train.burnin_epochs": burnin_epochs}
    cfg = build_config(config, set_, **options)
    url = ledger_url(ledger, cfg.runtime.results_dir)

    keys = given_keys(config, set_, options)

    def single() -> dict:
        if resume is not None:
            return train_summary(*resume_train(url, resume, cfg, keys))
        return train_summary(*run_train(cfg, url))

    s = execute("train", cfg, url, gpus, nproc, resume, keys, single)
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
