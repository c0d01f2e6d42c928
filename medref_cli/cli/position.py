"""`medref position train|eval`: ISPG's image-only position predictor, trained and scored."""

from __future__ import annotations

from typing import Annotated

import typer

from medref_cli.cli.common import (
    ConfigOpt,
    JsonOpt,
    LedgerOpt,
    SetOpt,
    build_config,
    device_override,
    ledger_url,
)

app = typer.Typer(help="ISPG's image-only position predictor: train it on a run's visual encoder, score it.",
                  no_args_is_help=True)

GpuOpt = Annotated[int | None, typer.Option(help="Run on cuda:N.")]
CpuOpt = Annotated[bool, typer.Option("--cpu", help="Run on the CPU.")]


def _print_scores(title: str, values: dict, key_prefix: str, json_: bool) -> None:
    import json

    if json_:
        typer.echo(json.dumps(values))
        return
    typer.echo(f"{title}: mAP {values[key_prefix + 'mAP']:.4f}  macro-F1 {values[key_prefix + 'macro_f1']:.4f}  "
               f"exact match {values[key_prefix + 'exact_match']:.4f}")


@app.command("train")
def train(
    run: Annotated[int, typer.Option("--run", help="A finished burnin or train run whose checkpoint holds the "
                                                   "visual encoder.", show_default=False)],
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    epochs: Annotated[int | None, typer.Option(help="Epochs (position.epochs).")] = None,
    head: Annotated[str | None, typer.Option(help="gap_mlp | region_pool | six_query (position.head).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train the image-only position predictor on RUN's visual encoder, kept by validation mAP; record it.

    Data, split, backbone, image size and laterality are RUN's; --set takes position.* and runtime.* keys,
    and of a --config file only its position and runtime sections are read."""
    from medref_cli.runs.position_run import check_free_keys, train_position

    check_free_keys(set_)
    cfg = build_config(config, set_, **{"runtime.device": device_override(gpu, cpu), "position.epochs": epochs,
                                        "position.head": head})
    outcome = train_position(ledger_url(ledger, cfg.runtime.results_dir), run, cfg, set_)
    s = outcome.summary()
    _print_scores(f"position run {s['run_id']} (on run {s['parent']}), best epoch {s['best_epoch']}, valid", s,
                  "val_", json_)
    if not json_:
        typer.echo(f"checkpoint {s['checkpoint']}")


@app.command("eval")
def evaluate(
    run_id: Annotated[int, typer.Argument(help="A position run (`medref position train`).", show_default=False)],
    split: Annotated[str, typer.Option(help="train | valid | test.")] = "test",
    gpu: GpuOpt = None,
    cpu: CpuOpt = False,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default position.batch_size).")] = None,
    results_dir: Annotated[str, typer.Option(help="Results folder.")] = "results",
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """mAP, macro-F1 and exact match of a position predictor on a split, recorded with per-image scores."""
    from medref_cli.evaluation.position_eval import evaluate_position

    result = evaluate_position(ledger_url(ledger, results_dir), run_id, split, results_dir,
                               device_override(gpu, cpu) or "auto", batch_size)
    m = result.metrics
    _print_scores(f"position eval run {result.run_id} on {split} (n={int(m['n_images'])})",
                  {"run_id": result.run_id, "split": split, **m}, "", json_)
