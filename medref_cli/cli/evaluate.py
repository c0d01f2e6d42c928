"""`medref evaluate`: Dice and IoU (global and per image) of a recorded model on a split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import JsonOpt, LedgerOpt, device_override, ledger_url


def evaluate(
    run_id: Annotated[int | None, typer.Argument(help="Run whose checkpoint to evaluate.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint file instead of a run.")] = None,
    split: Annotated[str, typer.Option(help="train | valid | test.")] = "test",
    data: Annotated[Path | None, typer.Option(help="Evaluate on another data folder.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name of --data (default: custom).")] = None,
    gpu: Annotated[int | None, typer.Option(help="Run on cuda:N.")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run on the CPU.")] = False,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size.")] = None,
    weights: Annotated[str, typer.Option(help="selected (what the run's ssl.select kept) | student | teacher "
                                              "(a train run keeps both, at the selected validation).")] = "selected",
    results_dir: Annotated[str, typer.Option(help="Results folder.")] = "results",
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Evaluate a run's best checkpoint (sha256-verified) and record an `evaluate` run."""
    import json

    from medref_cli.evaluation.evaluate_run import evaluate_recorded

    device = device_override(gpu, cpu) or "auto"
    run, result = evaluate_recorded(ledger_url(ledger, results_dir), run_id, checkpoint, split, data, dataset,
                                    results_dir, device, batch_size, weights)
    m = result.metrics
    if json_:
        typer.echo(json.dumps({"run_id": run, "split": split, **m}))
        return
    typer.echo(
        f"evaluate run {run} on {split} (n={m['n_images']}): "
        f"Dice global {m['dice_global']:.4f}  IoU global {m['iou_global']:.4f}  "
        f"pixel accuracy {m['pixel_acc_global']:.4f}  |  "
        f"per image: Dice {m['dice_per_image_mean']:.4f} ± {m['dice_per_image_std']:.4f}  "
        f"IoU {m['iou_per_image_mean']:.4f} ± {m['iou_per_image_std']:.4f}"
    )
