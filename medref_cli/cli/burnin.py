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
    int_list,
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
GpusOpt = Annotated[str | None, typer.Option(
    help="Comma-separated GPU ids: data-parallel over one process per GPU (NCCL); train.batch_size is the "
         "global batch.", show_default=False)]
NprocOpt = Annotated[int | None, typer.Option(
    help="Data-parallel CPU processes (gloo); train.batch_size is the global batch.", show_default=False)]
CompileOpt = Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the trained model "
                                                 "(runtime.compile).", show_default=False)]


def execute(command: str, config: Path | None, sets: list[str] | None, options: dict, ledger: str | None,
            gpus: str | None, nproc: int | None, resume: int | None) -> dict | None:
    """Build the config of `burnin`/`train` from its options and run it (or continue the run
    `resume`): in this process, over launched worker processes (--gpus / --nproc), or as one rank
    under torchrun. The summary to print; None on the silent ranks under torchrun."""
    from medref_cli.runs import launch
    from medref_cli.runs.resume_run import given_keys
    from medref_cli.runtime import distributed

    cfg = build_config(config, sets, **options)
    url = ledger_url(ledger, cfg.runtime.results_dir)
    keys = sorted(given_keys(config, sets, options))
    devices = launch.rank_devices(int_list(gpus, "--gpus"), nproc, cfg.runtime.device)
    if devices is not None:
        return launch.launch(command, cfg, url, devices, resume, keys)
    if distributed.env_world().active:
        return launch.run_rank(command, cfg, url, resume, keys)
    return launch.run_command(command, cfg, url, resume, keys)


def run_options(backbone: str | None, ratio: float | None, seed: int | None, gpu: int | None, cpu: bool,
                dataset: str | None, data: Path | None, compile_: bool | None = None, gpus: str | None = None) -> dict:
    """The config keys that the options shared by `burnin` and `train` set (`--gpus` with one id is `--gpu`)."""
    from medref_cli.errors import MedrefError

    gpu_ids = int_list(gpus, "--gpus")
    if gpu_ids is not None and (gpu is not None or cpu):
        raise MedrefError("--gpus excludes --gpu and --cpu")
    if gpu_ids is not None and len(gpu_ids) == 1:
        gpu = gpu_ids[0]
    return {
        "model.backbone": backbone,
        "split.ratio": ratio,
        "train.seed": seed,
        "runtime.device": device_override(gpu, cpu),
        "runtime.compile": compile_,
        **data_overrides(dataset, data),
    }


def burnin(
    backbone: BackboneOpt = None,
    ratio: RatioOpt = None,
    dataset: DatasetOpt = None,
    data: DataOpt = None,
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    gpus: GpusOpt = None,
    nproc: NprocOpt = None,
    compile_: CompileOpt = None,
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

    options = {**run_options(backbone, ratio, seed, gpu, cpu, dataset, data, compile_, gpus),
               "train.burnin_epochs": epochs}
    s = execute("burnin", config, set_, options, ledger, gpus, nproc, resume)
    if s is None:
        return
    if json_:
        typer.echo(json.dumps(s))
    else:
        typer.echo(
            f"burn-in run {s['run_id']}: best epoch {s['best_epoch']} (val Dice {s['val_dice_best']:.4f})"
            f"\ntest Dice global {s['test_dice_global']:.4f}  IoU global {s['test_iou_global']:.4f}  "
            f"Dice per image {s['test_dice_per_image_mean']:.4f} ± {s['test_dice_per_image_std']:.4f}  "
            f"IoU per image {s['test_iou_per_image_mean']:.4f} ± {s['test_iou_per_image_std']:.4f}  "
            f"(n={int(s['test_n_images'])})\ncheckpoint {s['checkpoint']}"
        )
