#!/usr/bin/env python3
"""Regenerate docs/results-cpu.md from a ledger (every number in it comes from that ledger).

    scripts/results_cpu.py --ledger sqlite:///results/qata-cpu/ledger.db --sweep 2,4,5,6 > docs/results-cpu.md

The tables come from `medref report` (Table 2 and Table 3 at the CPU ratio, global and per-image
Dice, with --details; the text-reliance table with --text); the recipe sweep is the listed runs,
read with `medref runs show --json`. With --as-of CODE, staleness is judged as of the code version
that made the grid, so any checkout rebuilds the same document; with --code CODE the tables count
only that code's runs (and judge staleness as of it); --variant KEY=VALUE adds the tables of that code's
runs with a setting changed, which --grid-where keeps out of the grid's own; --pairs A:B lists what run B
changes against run A with the paired per-image test (medref runs diff). The document ends with the
arguments that made it (all but the ledger): the same ledger and the same medref give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MEDREF = [sys.executable, "-m", "medref_cli"]
# settings a sweep run may change (dotted config keys), shown when any listed run differs
SWEEP_KEYS = ("data.image_size", "train.lr", "train.lr_step", "train.burnin_epochs", "train.epochs",
              "train.step_matched", "ssl.zoom_prob", "ssl.zoom_min", "ssl.zoom_max", "ssl.shift",
              "train.weight_decay", "train.batch_size")


def medref(*args: str, ledger: str) -> str:
    env = {**os.environ, "MEDREF_LEDGER": ledger, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([*MEDREF, *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"medref {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part, {}) if isinstance(tree, dict) else {}
    return tree if tree != {} else None


def _setting(config: dict, dotted: str) -> str:
    """A run's setting as the sweep table shows it; "-" where the run's code had no such key."""
    value = _get(config, dotted)
    return "-" if value is None else str(value)


def _minutes(run: dict) -> str:
    from datetime import datetime

    if not run.get("ended"):
        return "-"
    seconds = (datetime.fromisoformat(run["ended"]) - datetime.fromisoformat(run["started"])).total_seconds()
    return f"{seconds / 60:.1f} min"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def sweep_table(ids: list[int], ledger: str) -> str:
    runs = [json.loads(medref("runs", "show", str(i), "--json", ledger=ledger)) for i in ids]
    keys = [k for k in SWEEP_KEYS if len({json.dumps(_get(r["config"], k)) for r in runs}) > 1]
    header = ["run", "code", "CPU", "kind", "labels", "seed", *keys, "steps", "wall", "val Dice (best)",
              "test Dice global", "test Dice per image", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["--:"] * len(header)) + "|"]
    for r in runs:
        f = r.get("finals") or {}
        code, cpu = (r.get("code_version") or "-")[:7], (r.get("host") or {}).get("cpu") or "-"
        cells = [str(r["id"]), code, cpu, r["kind"], f"{100 * r['ratio']:g}%", str(r["seed"]),
                 *(_setting(r["config"], k) for k in keys),
                 "-" if "steps" not in f else f"{f['steps']:.0f}", _minutes(r), _pct(f.get("val_dice_best")),
                 _pct(f.get("test_dice_global")), _pct(f.get("test_dice_per_image_mean")), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pairs_table(pairs: list[tuple[int, int]], ledger: str) -> str:
    """One row per pair of runs (medref runs diff A B): what B changes against A, both test Dice and the
    paired per-image test of B against A (written as the report's details write one)."""
    from medref_cli.reports.render_markdown import format_test
    from medref_cli.reports.stats import PairedTest

    header = ["run A", "run B", "B differs from A in", "test Dice global, A → B", "test Dice per image, A → B",
              "B - A per image, paired (95% CI, Wilcoxon p, n)"]
    lines = ["| " + " | ".join(header) + " |", "|--:|--:|:--|--:|--:|--:|"]
    for a, b in pairs:
        d = json.loads(medref("runs", "diff", str(a), str(b), "--json", ledger=ledger))
        changed = "; ".join(f"{k}: {_shown(va)} → {_shown(vb)}" for k, (va, vb) in d["config"].items() if k != "name")
        test = d["test_dice"]
        ends = [f"{_pct(test['a'][key])} → {_pct(test['b'][key])}" for key in ("global", "per_image")]
        paired = "-" if test["paired"] is None else format_test(PairedTest(**test["paired"]))
        lines.append(f"| {a} | {b} | {changed or '(same config)'} | {ends[0]} | {ends[1]} | {paired} |")
    return "\n".join(lines) + "\n"


def _shown(value) -> str:
    return "-" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", required=True, help="SQLAlchemy URL of the ledger")
    parser.add_argument("--sweep", default="", help="comma-separated run ids of the recipe sweep")
    parser.add_argument("--ratio", default="0.05", help="label ratio of the ablation tables")
    parser.add_argument("--preamble", default="", help="markdown file put at the top (the commands)")
    parser.add_argument("--as-of", default="", help="code version of the grid (medref report --as-of)")
    parser.add_argument("--code", default="", help="count only the runs of this code version in the tables "
                                                   "(medref report --code): the grid's, so that later runs "
                                                   "of the same config do not supersede its cells")
    parser.add_argument("--where", action="append", default=[],
                        help="only runs whose config has KEY=VALUE in the tables (medref report --where)")
    parser.add_argument("--grid-where", action="append", default=[], metavar="KEY=VALUE",
                        help="only runs whose config has KEY=VALUE in the current grid's tables (not the earlier "
                             "grids'), e.g. the grid's own value of a setting that a variant changes")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE...][:TABLES]",
                        help="a variant of the current grid: its tables (default 2) from the runs of --code whose "
                             "config has every KEY=VALUE (in place of a --where on the same key), shown after the "
                             "current tables (repeatable)")
    parser.add_argument("--pairs", default="", metavar="A:B[,A:B...]",
                        help="pairs of run ids: what B changes against A, with the paired per-image test "
                             "(medref runs diff A B), shown after the variants")
    parser.add_argument("--text", action="store_true", help="add the text-reliance table (report --table text)")
    parser.add_argument("--earlier", action="append", default=[], metavar="CODE[:TABLES]",
                        help="an earlier grid: its tables (default 2; e.g. 80ffcf9:2,3) from the runs of that "
                             "code version only (medref report --code), shown after the current tables "
                             "(repeatable)")
    args = parser.parse_args()

    def split(given: str, flag: str, form: str) -> tuple[str, list[str]]:
        head, _, tables = given.partition(":")
        tables = [t.strip() for t in (tables or "2").split(",")]
        if not head or any(t not in ("2", "3") for t in tables):
            parser.error(f"{flag} expects {form} with tables among 2 and 3, got '{given}'")
        return head, tables

    earlier = [split(given, "--earlier", "CODE[:TABLES]") for given in args.earlier]
    variants = [split(given, "--variant", "KEY=VALUE[,KEY=VALUE...][:TABLES]") for given in args.variant]
    if variants and not args.code:
        parser.error("--variant needs --code (a variant is the grid's code with other settings)")
    for conditions, _ in variants:
        if any("=" not in c for c in conditions.split(",")):
            parser.error(f"--variant expects KEY=VALUE[,KEY=VALUE...][:TABLES], got '{conditions}'")
    where = [a for w in args.where for a in ("--where", w)]
    versions = [*(("--as-of", args.as_of) if args.as_of else ()), *(("--code", args.code) if args.code else ())]
    filters = [*versions, *where]
    grid_where = [a for w in args.grid_where for a in ("--where", w)]
    pairs = []
    for given in (p.strip() for p in args.pairs.split(",") if p.strip()):
        a, _, b = given.partition(":")
        if not (a.isdigit() and b.isdigit()):
            parser.error(f"--pairs expects A:B[,A:B...] with run ids, got '{given}'")
        pairs.append((int(a), int(b)))
    out = []
    if args.preamble:
        with open(args.preamble, encoding="utf-8") as fh:
            out.append(fh.read().rstrip("\n") + "\n")
    ids = [int(i) for i in args.sweep.split(",") if i.strip()]
    if ids:
        out.append("## Recipe sweep\n\nThe runs behind each change to `experiments/cpu.yaml` "
                   "(`medref runs show RUN` for any of them).\n\n" + sweep_table(ids, args.ledger))
    for table in ("2", "3"):
        for definition in ("global", "per-image"):
            text = medref("report", "--table", table, "--ratio", args.ratio, "--definition", definition,
                          "--details", "--explain", *filters, *grid_where, ledger=args.ledger)
            out.append(f"## Table {table}, {definition} Dice\n\n" + text)
    for conditions, tables in variants:
        changed = conditions.split(",")
        keys = {c.split("=", 1)[0].strip() for c in changed}
        kept = [w for w in args.where if w.split("=", 1)[0].strip() not in keys]  # the variant's value wins
        picked = [*versions, *(a for w in (*kept, *changed) for a in ("--where", w))]
        for table in tables:
            for definition in ("global", "per-image"):
                text = medref("report", "--table", table, "--ratio", args.ratio, "--definition", definition,
                              "--details", *picked, ledger=args.ledger)
                out.append(f"## Variant of the grid ({conditions.replace(',', ', ')}): Table {table}, "
                           f"{definition} Dice\n\n" + text)
    if pairs:
        out.append("## Run pairs\n\nWhat run B changes against run A, and the paired per-image test of B against A "
                   "(`medref runs diff A B`).\n\n" + pairs_table(pairs, args.ledger))
    for code, tables in earlier:
        for table in tables:
            for definition in ("global", "per-image"):
                text = medref("report", "--table", table, "--ratio", args.ratio, "--definition", definition,
                              "--details", "--code", code, *where, ledger=args.ledger)
                out.append(f"## Earlier grid: Table {table} of {code}, {definition} Dice\n\n" + text)
    if args.text:
        out.append("## Text reliance\n\n" + medref("report", "--table", "text", ledger=args.ledger))
    made = ["--ratio", args.ratio, *(("--sweep", args.sweep) if args.sweep else ()),
            *(("--preamble", args.preamble) if args.preamble else ()), *filters,
            *(a for w in args.grid_where for a in ("--grid-where", w)),
            *(a for v in args.variant for a in ("--variant", v)), *(("--pairs", args.pairs) if args.pairs else ()),
            *(a for code in args.earlier for a in ("--earlier", code)), *(("--text",) if args.text else ())]
    out.append(f"<!-- made by: scripts/results_cpu.py --ledger LEDGER {' '.join(made)} -->\n")
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
