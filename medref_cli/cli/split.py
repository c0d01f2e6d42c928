"""`medref split`: labeled and unlabeled manifests of the train split (or `--import` of fixed ones)."""

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
    import_: Annotated[Path | None, typer.Option(
        "--import", help="The reference's split file to record instead of a seeded draw: data_splits/QaTa/"
        "split_labeled_<r>.json or data_splits/MosMed/labeled_<r>.plabel.csv (its unlabeled twin is found "
        "beside it); use it with --set split.source=imported.")] = None,
    unlabeled: Annotated[Path | None, typer.Option(
        help="With --import: the unlabeled file, when its name does not follow the reference's.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    ledger: LedgerOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Write nested labeled/unlabeled manifests of the train split under results/splits/, or record the
    reference's fixed split files with --import (checked against the data folder)."""
    import json

    from medref_cli.data.split_run import import_split, make_split
    from medref_cli.errors import MedrefError

    if unlabeled is not None and import_ is None:
        raise MedrefError("--unlabeled needs --import FILE")
    if import_ is not None:
        if seed is not None:
            raise MedrefError("--seed has no meaning with --import: an imported split is the files' own")
        cfg = build_config(config, set_, **data_overrides(dataset, data))
        result, cfg = import_split(cfg, ledger_url(ledger, cfg.runtime.results_dir), import_, unlabeled, ratio)
    else:
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
        "source": "imported" if m.imported_sha256 else "seeded",
    }
    if json_:
        typer.echo(json.dumps(facts))
    else:
        typer.echo(
            f"split run {facts['run_id']}: {m.dataset} ratio {m.ratio:g} seed {m.seed} ({facts['source']}): "
            f"{facts['n_labeled']} labeled / {facts['n_unlabeled']} unlabeled of {facts['n_train']} train\n"
            f"manifest {result.path}\nsplit_hash {m.sha256}"
            + ("\nuse it with --set split.source=imported" if m.imported_sha256 else "")
        )
