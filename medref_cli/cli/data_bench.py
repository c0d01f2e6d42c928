"""`medref data bench`: loader throughput without and with the in-memory cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medref_cli.cli.common import JsonOpt


def bench(
    data: Annotated[Path, typer.Option("--data", help="Data set folder.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="Split to read: train | valid | test.")] = "train",
    batch: Annotated[int, typer.Option("--batch", help="Batch size.")] = 32,
    steps: Annotated[int, typer.Option("--steps", help="Timed batches per loader.")] = 20,
    image_size: Annotated[int, typer.Option("--image-size", help="Side of the model input in pixels.")] = 224,
    format: Annotated[
        str, typer.Option("--format", help="Layout: auto | qata | lvit | mmiunet | mosmed | mosmed-frames.")
    ] = "auto",
    device: Annotated[
        str, typer.Option("--device", help="Device of the cached tensors: cpu | cuda:N.")
    ] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the batch order and the views.")] = 0,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", help="CPU threads for torch (0 = torch's default); 1 is steadier on a busy machine."
        ),
    ] = 0,
    json_: JsonOpt = False,
) -> None:
    """Samples/s of a naive loader (decode + per-sample transforms) vs the uint8 cache + batched views."""
    import json

    from medref_cli.bench.loader_bench import run_bench
    from medref_cli.data.readers import read_dataset
    from medref_cli.data.records import normalise_split
    from medref_cli.errors import MedrefError

    try:
        split_name = normalise_split(split)
    except ValueError as exc:
        raise MedrefError(str(exc)) from None
    if threads < 0:
        raise MedrefError(f"--threads must be 0 (default) or positive, got {threads}")
    records = read_dataset(data, format)[split_name]
    result = _run_with_threads(
        threads, run_bench, records, split_name, image_size, batch, steps, device, seed
    )
    if json_:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(
        f"{split_name}: {result.samples} samples at {image_size}px, batch {batch}, {steps} steps, "
        f"device {result.device}, {result.threads} CPU thread(s)"
    )
    typer.echo(
        f"  naive loader (decode + per-sample transforms): {result.naive_samples_per_s:10.1f} samples/s"
    )
    typer.echo(
        f"  cached loader (uint8 tensors + batched views):  {result.cached_samples_per_s:10.1f} samples/s"
    )
    typer.echo(f"  speed-up: x{result.speedup:.1f}   (building the cache took {result.cache_build_s:.2f} s)")


def _run_with_threads(threads: int, func, *args):
    """Call func with torch limited to `threads` CPU threads (0: as is), then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return func(*args)
    finally:
        torch.set_num_threads(before)
