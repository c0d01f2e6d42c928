"""`medref data synth`: write the built-in synthetic data set (QaTa layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create (must be empty or absent).")],
    n: Annotated[int, typer.Option("--n", help="Number of images over all splits (about 60/15/25 %).")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same bytes.")] = 0,
    image_size: Annotated[
        int, typer.Option("--image-size", help="Side of the square images in pixels.")
    ] = 224,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Write a synthetic chest-like data set with captions, masks and position labels."""
    import time

    from medref_cli.data.synthetic import write_synthetic_dataset

    start = time.perf_counter()
    path = write_synthetic_dataset(out, n=n, seed=seed, image_size=image_size, force=force)
    typer.echo(f"wrote {n} synthetic samples (seed {seed}) to {path} in {time.perf_counter() - start:.1f} s")
