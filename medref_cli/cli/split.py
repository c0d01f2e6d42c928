"""`medref split`: labeled and unlabeled manifests of the train split."""

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
    ledger_url,
)


def split(
    ratio: Annotated[float | None, typer.Option(help="Share of train that keeps labels, in (0, 1].")] = None,
    dataset: Annotated[str | None, typer.Option(help="synthetic | qata | mosmed | custom.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder (any supported layout).")] = None,
    seed: Annotated[int | None, typer.Option(help="Split seed (default 42).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Write nested labeled/unlabeled manifests of the train split under results/splits/."""
    import json

    from medref_cli.data.split_run import make_split

    cfg = build_config(config, set_, **{"split.ratio": ratio, "split.seed": seed, **data_overrides(dataset, data)})
    result = make_split(cfg, ledger_url(ledger, cfg.runtime.results_dir))
    m = result.manifest
    facts = {
        "run_id": result.run_id,
        "dataset": m.dataset,
        "ratio": m.ratio,
        "seed": m.seed,
        "n_train": len(m.labeled) + len(m.unlabeled),
        "n_labeled": len(m.labeled),
        "n_unlabeled": len(m.unlabeled),
        "manifest": str(result.path),
        "split_hash": m.sha256,
        "data_hash": m.data_hash,
    }
    if json_:
        typer.echo(json.dumps(facts))
    else:
        typer.echo(
            f"split run {facts['run_id']}: {m.dataset} ratio {m.ratio:g} seed {m.seed}: "
            f"{facts['n_labeled']} labeled / {facts['n_unlabeled']} unlabeled of {facts['n_train']} train\n"
            f"manifest {result.path}\nsplit_hash {m.sha256}"
        )
