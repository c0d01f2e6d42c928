"""`medref models`: every registered backbone with its parameter counts."""

from __future__ import annotations

from medref_cli.cli.common import ConfigOpt, JsonOpt, SetOpt, build_config


def models(config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """List the registered models, their parameter counts and the weights each starts from.

    Counted from the configs (nothing is loaded or downloaded). The text encoder is the config's
    model.text_encoder (frozen, outside the model: its parameters are counted in their own column).
    """
    import json
    from dataclasses import asdict

    from medref_cli.models.summary import summarize_models

    cfg = build_config(config, set_)
    summaries = summarize_models(cfg.model)
    if json_:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"registered models (text encoder: {summaries[0].text_weights})")
    table.add_column("model", no_wrap=True)
    table.add_column("visual encoder starts from")
    for column in ("parameters", "trainable", "text encoder (frozen)"):
        table.add_column(column, justify="right")
    for s in summaries:
        text = "?" if s.text_parameters is None else f"{s.text_parameters:,}"
        table.add_row(s.name, s.visual_weights, f"{s.parameters:,}", f"{s.trainable:,}", text)
    Console().print(table)
