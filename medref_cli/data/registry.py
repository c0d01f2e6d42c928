"""Which folder a data set name means. `--data DIR` always wins.

- synthetic: `<results>/data/synthetic-n<N>-seed<S>`, generated on first use (deterministic)
- qata:      $MEDREF_QATA_ROOT, else `data/qata-cov19`
- mosmed:    $MEDREF_MOSMED_ROOT, else `data/mosmed-plus`
- custom:    needs `data.root`
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medref_cli.config import DataConfig
from medref_cli.errors import MedrefError

DEFAULT_ROOTS = {
    "qata": ("MEDREF_QATA_ROOT", "data/qata-cov19"),
    "mosmed": ("MEDREF_MOSMED_ROOT", "data/mosmed-plus"),
}


@dataclass(frozen=True)
class DatasetRef:
    name: str  # the name recorded in the ledger and shown in reports
    root: Path


def synthetic_root(data: DataConfig, results_dir: str | Path) -> Path:
    return Path(results_dir) / "data" / f"synthetic-n{data.synthetic_n}-seed{data.synthetic_seed}"


def resolve_dataset(data: DataConfig, results_dir: str | Path, create: bool = True) -> DatasetRef:
    """Find (or, for the synthetic set, make) the data folder of a config."""
    if data.root:
        root = Path(data.root).expanduser()
        if not root.is_dir():
            raise MedrefError(f"data folder not found: {root}")
        name = data.dataset if data.dataset != "custom" else root.resolve().name
        return DatasetRef(name, root)
    if data.dataset == "synthetic":
        root = synthetic_root(data, results_dir)
        if not root.is_dir():
            if not create:
                raise MedrefError(f"synthetic data not generated yet at {root}; run `medref data synth`")
            from medref_cli.data.synthetic import write_synthetic_dataset

            try:
                write_synthetic_dataset(root, n=data.synthetic_n, seed=data.synthetic_seed)
            except OSError as exc:
                raise MedrefError(f"cannot write the synthetic data set to {root}: {exc.strerror}") from None
        return DatasetRef("synthetic", root)
    if data.dataset in DEFAULT_ROOTS:
        env, fallback = DEFAULT_ROOTS[data.dataset]
        root = Path(os.environ.get(env) or fallback).expanduser()
        if not root.is_dir():
            raise MedrefError(f"{data.dataset} data not found at {root}; pass --data DIR or set {env}")
        return DatasetRef(data.dataset, root)
    raise MedrefError("dataset 'custom' needs a folder: pass --data DIR")
