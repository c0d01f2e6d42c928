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
    text_mode: Annotated[str, typer.Option(help="Captions given to the model: full | removed | constant | shuffled | "
                                                "swapped | oracle_soft | soft_image (the last two: ISPG models).")
                         ] = "full",
    removal_rate: Annotated[float | None, typer.Option(help="Share of images whose positional phrases are removed "
                                                           "(removed, oracle_soft, soft_image; default 1.0).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the removal hash and of shuffled (default 42).")] = None,
    position_run: Annotated[int | None, typer.Option(help="Position run predicting soft_image's positions.")] = None,
    results_dir: Annotated[str, typer.Option(help="Results folder.")] = "results",
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Evaluate a run's best checkpoint (sha256-verified) and record an `evaluate` run."""
    import json

    from medref_cli.evaluation.evaluate_run import evaluate_recorded
    from medref_cli.evaluation.text_inputs import check_request

    request = check_request(text_mode, removal_rate, seed, position_run)
    device = device_override(gpu, cpu) or "auto"
    run, result = evaluate_recorded(ledger_url(ledger, results_dir), run_id, checkpoint, split, data, dataset,
                                    results_dir, device, batch_size, weights, request)
    m = result.metrics
    if json_:
        typer.echo(json.dumps({"run_id": run, "split": split, **request.tags(), **m}))
        return
    mode = "" if request.mode == "full" else f", text {request.mode}" + (
        f" at {request.removal_rate:g}" if request.removal_rate is not None else "")
    typer.echo(
        f"evaluate run {run} on {split}{mode} (n={m['n_images']}): "
        f"Dice global {m['dice_global']:.4f}  IoU global {m['iou_global']:.4f}  "
        f"pixel accuracy {m['pixel_acc_global']:.4f}  |  "
        f"per image: Dice {m['dice_per_image_mean']:.4f} ± {m['dice_per_image_std']:.4f}  "
        f"IoU {m['iou_per_image_mean']:.4f} ± {m['iou_per_image_std']:.4f}"
    )
