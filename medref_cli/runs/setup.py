"""Everything a training or evaluation run needs, built before the ledger is touched.

Errors a user can cause (data folder, split, unknown backbone, missing weights, missing GPU)
surface here, as one line, before any run row exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import SplitTensors, cached_split, decode_split, save_split_cache
from medref_cli.data.records import SampleRecord
from medref_cli.data.split_run import DataIdentity, SplitResult, ensure_split, identify_data, planned_split
from medref_cli.data.splits import SplitManifest
from medref_cli.errors import MedrefError
from medref_cli.models.encoders import TextEncoder
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime import distributed
from medref_cli.runtime.build import build_text, read_records, seed_everything, tensor_cache_dir
from medref_cli.runtime.device import resolve_device


@dataclass
class RunData:
    labeled: SplitTensors
    unlabeled: SplitTensors | None
    valid: SplitTensors
    test: SplitTensors


@dataclass
class RunInputs:
    cfg: ExperimentConfig
    device: torch.device
    data: DataIdentity
    split: SplitResult | None  # None on the ranks other than 0 of a multi-process run (no ledger there)
    tensors: RunData
    encoder: TextEncoder
    text_cache: TextFeatureCache
    # size of the unlabeled split of the manifest (sets the epoch length; known on every rank)
    n_unlabeled: int = 0
    weights: dict = field(default_factory=dict)  # identity of both encoders (models.preflight)



def decode_or_cached(cfg: ExperimentConfig, records: list[SampleRecord]) -> tuple[SplitTensors, bool]:
    """(tensors, whether they still need to be written to the cache). Writes nothing."""
    cache_dir = tensor_cache_dir(cfg)
    if cache_dir is not None:
        cached = cached_split(records, cfg.data.image_size, cache_dir)
        if cached is not None:
            return cached, False
    return decode_split(records, cfg.data.image_size), cache_dir is not None


def split_records(cfg: ExperimentConfig, data: DataIdentity, manifest: SplitManifest, need_unlabeled: bool,
                  device: torch.device) -> RunData:
    """Decode every split the run needs, and only then write the tensor caches: a corrupt file in any
    split fails the run before anything is written."""
    if need_unlabeled and not manifest.unlabeled:
        raise MedrefError(f"ratio {cfg.split.ratio:g} leaves no unlabeled data for the semi-supervised phase")
    records = read_records(cfg, data.ref.root)
    by_id = {r.id: r for r in records.get("train", [])}
    missing = [i for i in manifest.labeled + manifest.unlabeled if i not in by_id]
    if missing:
        raise MedrefError(f"the split manifest names {len(missing)} ids not in the data (e.g. {missing[0]})")
    for name in ("valid", "test"):
        if not records.get(name):
            raise MedrefError(f"the data set at {data.ref.root} has no {name} split; run `medref data check`")
    wanted = {"labeled": [by_id[i] for i in manifest.labeled], "valid": records["valid"], "test": records["test"]}
    if need_unlabeled:
        wanted["unlabeled"] = [by_id[i] for i in manifest.unlabeled]
    loaded = {name: decode_or_cached(cfg, recs) for name, recs in wanted.items()}
    for name, (tensors, unsaved) in loaded.items():
        if unsaved and distributed.current().is_main:
            save_split_cache(tensors, wanted[name], cfg.data.image_size, tensor_cache_dir(cfg))
    on_device = {name: tensors.to(device) for name, (tensors, _) in loaded.items()}
    return RunData(on_device["labeled"], on_device.get("unlabeled"), on_device["valid"], on_device["test"])


def check_backbone(cfg: ExperimentConfig) -> None:
    from medref_cli.models.registry import list_models

    known = list_models()
    if cfg.model.backbone not in known:
        raise MedrefError(f"unknown backbone '{cfg.model.backbone}'; known: {', '.join(known)} (see `medref models`)")


def check_ledger(ledger_url: str) -> None:
    """Open an existing ledger once, so that a broken one fails before anything is written (a ledger
    that does not exist yet is created later, by the first run recorded in it)."""
    from medref_cli.ledger import open_ledger
    from medref_cli.ledger.db import sqlite_file_missing

    if sqlite_file_missing(ledger_url):
        return
    open_ledger(ledger_url).dispose()


def prepare(cfg: ExperimentConfig, ledger_url: str, need_unlabeled: bool = False) -> RunInputs:
    """Device, backbone name, ledger, text encoder, data and split, in the order that fails cheapest first."""
    device = resolve_device(distributed.rank_device(cfg.runtime.device))
    main = distributed.current().is_main
    check_backbone(cfg)
    if main:
        check_ledger(ledger_url)
    seed_everything(cfg.train.seed)
    from medref_cli.models.preflight import preflight

    flight = preflight(cfg, device)  # both encoders loaded and run once, before any data is read
    encoder, cache = build_text(cfg, device)
    data = identify_data(cfg)
    manifest, _, _ = planned_split(cfg, data)
    tensors = split_records(cfg, data, manifest, need_unlabeled, device)  # the data decodes before any write
    split = ensure_split(cfg, ledger_url, data) if main else None
    return RunInputs(cfg, device, data, split, tensors, encoder, cache, len(manifest.unlabeled), flight.weights)
