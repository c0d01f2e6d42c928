"""`medref split` as a library call: resolve the data, hash it, write the manifest, record the run.

`split.source` picks where a run's split comes from: `seeded` (medref's nested seeded draw, made
on demand) or `imported` (the manifest `medref split --import` recorded for this data and ratio,
whatever split.seed says; a run never imports by itself).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from medref_cli.config import ExperimentConfig
from medref_cli.data.hashing import TreeHash, hash_tree
from medref_cli.data.registry import DatasetRef, resolve_dataset
from medref_cli.data.splits import (
    IMPORTED_SEED,
    SplitManifest,
    load_manifest,
    make_manifest,
    manifest_path,
    write_atomic,
)
from medref_cli.errors import MedrefError


@dataclass(frozen=True)
class DataIdentity:
    ref: DatasetRef
    tree: TreeHash

    def ledger_facts(self) -> dict:
        return {
            "dataset": self.ref.name,
            "data_root": str(self.ref.root.resolve()),
            "data_hash": self.tree.digest,
            "data_files": self.tree.files,
        }


@dataclass(frozen=True)
class SplitResult:
    manifest: SplitManifest
    path: Path
    data: DataIdentity
    run_id: int | None  # the ledger run that wrote it (None when an existing manifest was reused)
    created: bool

    def ledger_facts(self) -> dict:
        return {**self.data.ledger_facts(), "split_hash": self.manifest.sha256, "split_path": str(self.path.resolve())}


def identify_data(cfg: ExperimentConfig) -> DataIdentity:
    ref = resolve_dataset(cfg.data, cfg.runtime.results_dir)
    return DataIdentity(ref, hash_tree(ref.root))


def train_ids(cfg: ExperimentConfig, ref: DatasetRef) -> list[str]:
    from medref_cli.data.readers import read_dataset

    records = read_dataset(ref.root, cfg.data.format)
    ids = [r.id for r in records.get("train", [])]
    if not ids:
        raise MedrefError(f"no train samples found in {ref.root}; run `medref data check --data {ref.root}`")
    return ids


def splits_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.runtime.results_dir) / "splits"


def make_split(cfg: ExperimentConfig, ledger_url: str, data: DataIdentity | None = None) -> SplitResult:
    """Write the labeled/unlabeled manifest of cfg.split and record a `split` run for it.

    Everything that can fail because of the user's input (data folder, ratio, results folder)
    fails before the ledger is touched, so a bad call leaves no ledger row behind.
    """
    from medref_cli.ledger import open_ledger, record_run

    if cfg.split.source == "imported":
        raise MedrefError("split.source is 'imported': record the split with `medref split --import FILE`")
    data = data or identify_data(cfg)
    manifest = make_manifest(data.ref.name, data.tree.digest, train_ids(cfg, data.ref), cfg.split.ratio, cfg.split.seed)
    path = manifest_path(splits_dir(cfg), data.ref.name, data.tree.digest, cfg.split.ratio, cfg.split.seed)
    ledger = open_ledger(ledger_url)  # a ledger that cannot be opened fails before the manifest is written
    try:
        write_atomic(path, manifest.to_json())
        result = SplitResult(manifest, path, data, None, True)
        with record_run(ledger, "split", cfg, seed=cfg.split.seed, seeds={"split": cfg.split.seed}, backbone=None,
                        **result.ledger_facts()) as run:
            run.add_artifact(path, role="split_manifest")
            run.set_final({"n_train": len(manifest.labeled) + len(manifest.unlabeled),
                           "n_labeled": len(manifest.labeled), "n_unlabeled": len(manifest.unlabeled)})
        return SplitResult(manifest, path, data, run.id, True)
    finally:
        ledger.dispose()


def imported_split(cfg: ExperimentConfig, data: DataIdentity) -> tuple[SplitManifest, Path]:
    """The manifest `medref split --import` recorded for this data and ratio (split.source imported)."""
    path = manifest_path(splits_dir(cfg), data.ref.name, data.tree.digest, cfg.split.ratio, IMPORTED_SEED,
                         imported=True)
    if not path.is_file():
        raise MedrefError(f"no imported split of {data.ref.name} at ratio {cfg.split.ratio:g} for this data "
                          f"({path}); run `medref split --import FILE` first")
    manifest = load_manifest(path)
    if not manifest.imported_sha256 or manifest.data_hash != data.tree.digest or manifest.ratio != cfg.split.ratio:
        raise MedrefError(f"split manifest {path} is not an imported split of this data and ratio; "
                          "delete it and import again")
    return manifest, path


def expected_manifest(cfg: ExperimentConfig, data: DataIdentity, ids: list[str]) -> SplitManifest:
    """The manifest a run of cfg uses, given the data's train ids. Writes nothing."""
    if cfg.split.source == "imported":
        return imported_split(cfg, data)[0]
    return make_manifest(data.ref.name, data.tree.digest, ids, cfg.split.ratio, cfg.split.seed)


def planned_split(cfg: ExperimentConfig, data: DataIdentity) -> tuple[SplitManifest, Path, bool]:
    """The manifest of cfg.split for this data, its path and whether it is on disk already. Writes nothing."""
    if cfg.split.source == "imported":
        return (*imported_split(cfg, data), True)
    path = manifest_path(splits_dir(cfg), data.ref.name, data.tree.digest, cfg.split.ratio, cfg.split.seed)
    expected = make_manifest(data.ref.name, data.tree.digest, train_ids(cfg, data.ref), cfg.split.ratio,
                             cfg.split.seed)
    if path.is_file():
        manifest = load_manifest(path)
        if manifest.sha256 != expected.sha256:
            raise MedrefError(f"split manifest {path} does not match the split rule for this data; delete it")
        return manifest, path, True
    return expected, path, False


def ensure_split(cfg: ExperimentConfig, ledger_url: str, data: DataIdentity | None = None) -> SplitResult:
    """Reuse the manifest of this data, ratio and seed if it exists, else make (and record) it."""
    data = data or identify_data(cfg)
    manifest, path, exists = planned_split(cfg, data)
    if exists:
        return SplitResult(manifest, path, data, None, False)
    return make_split(cfg, ledger_url, data)


def import_split(cfg: ExperimentConfig, ledger_url: str, file: Path, unlabeled: Path | None = None,
                 ratio: float | None = None) -> tuple[SplitResult, ExperimentConfig]:
    """Record the reference's fixed split files as a split run of this data (split.source imported).

    The files must describe the data folder exactly: their labeled and unlabeled lists together
    are its train split, and (QaTa-COV19) their valid and test lists its valid and test splits;
    otherwise a one-line refusal names the first missing ids and nothing is written. Returns the
    result and the config the run was recorded under (ratio from the files, source imported).
    """
    from medref_cli.data.readers import read_dataset
    from medref_cli.data.split_import import check_against_data, read_reference_split
    from medref_cli.ledger import open_ledger, record_run

    ref = read_reference_split(file, unlabeled, ratio)
    cfg = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, ratio=ref.ratio, source="imported"))
    data = identify_data(cfg)
    check_against_data(ref, read_dataset(data.ref.root, cfg.data.format), data.ref.root)
    manifest = SplitManifest(data.ref.name, data.tree.digest, ref.ratio, IMPORTED_SEED, ref.labeled, ref.unlabeled,
                             ref.sha256)
    path = manifest_path(splits_dir(cfg), data.ref.name, data.tree.digest, ref.ratio, IMPORTED_SEED, imported=True)
    if path.is_file() and load_manifest(path).sha256 != manifest.sha256:
        raise MedrefError(f"{path} holds another imported split for this data and ratio; delete it first "
                          "(runs recorded with it keep its split_hash)")
    ledger = open_ledger(ledger_url)
    try:
        write_atomic(path, manifest.to_json())
        result = SplitResult(manifest, path, data, None, True)
        with record_run(ledger, "split", cfg, seed=IMPORTED_SEED, seeds={"split": IMPORTED_SEED}, backbone=None,
                        **result.ledger_facts()) as run:
            run.add_artifact(path, role="split_manifest")
            for source in (ref.labeled_file, ref.unlabeled_file):
                run.add_artifact(source, role="split_source")
            final = {"n_train": len(manifest.labeled) + len(manifest.unlabeled),
                     "n_labeled": len(manifest.labeled), "n_unlabeled": len(manifest.unlabeled)}
            final.update({f"n_{key}_checked": len(ids) for key, ids in (("valid", ref.valid), ("test", ref.test))
                          if ids is not None})
            run.set_final(final)
        return SplitResult(manifest, path, data, run.id, True), cfg
    finally:
        ledger.dispose()
