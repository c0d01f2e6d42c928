"""`medref predict`: mask and overlay PNGs for one image or a folder, from a recorded model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import JsonOpt, LedgerOpt, device_override, ledger_url


def predict(
    out: Annotated[Path, typer.Option(help="Folder for <stem>_mask.png and <stem>_overlay.png.",
                                      show_default=False)],
    run: Annotated[int | None, typer.Option("--run", help="Run whose recorded checkpoint to use.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint file instead of --run.")] = None,
    image: Annotated[Path | None, typer.Option(help="One image (with --text).")] = None,
    text: Annotated[str | None, typer.Option(help="The caption to segment in --image.")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of images (with --captions).")] = None,
    captions: Annotated[Path | None, typer.Option(
        help="CSV with columns image,caption (or Image,Description); images relative to --images.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Probability cut (default: the run's eval.threshold).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass (default: the run's).")] = None,
    gpu: Annotated[int | None, typer.Option(help="Run on cuda:N.")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run on the CPU.")] = False,
    results_dir: Annotated[str, typer.Option(help="Results folder (where the default ledger is).")] = "results",
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Segment what a caption describes: writes a 0/255 mask and an overlay PNG per image.

    Every input is checked before anything is written, and a failure leaves no partial output.
    Nothing is recorded in the ledger: a prediction is not an experiment (use `medref evaluate`
    to score a model on a split).
    """
    import json

    from medref_cli.evaluation.predict import collect_items, predict_recorded

    device = device_override(gpu, cpu) or "auto"
    items = collect_items(image, text, images, captions)
    outcome = predict_recorded(ledger_url(ledger, results_dir), run, checkpoint, items, out, device, threshold,
                               batch_size)
    if json_:
        typer.echo(json.dumps({"source": outcome.source, "threshold": outcome.threshold,
                               "pairs": [pair.as_dict() for pair in outcome.pairs]}))
        return
    for pair in outcome.pairs:
        typer.echo(f"{pair.image}: {pair.mask} {pair.overlay} (foreground {100 * pair.foreground:.1f}%)")
