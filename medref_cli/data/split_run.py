"""`medref split` as a library call: resolve the data, hash it, write the manifest, record the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medref_cli.config import ExperimentConfig
from medref_cli.data.hashing import TreeHash, hash_tree
from medref_cli.data.registry import DatasetRef, resolve_dataset
from medref_cli.data.splits import SplitManifest, load_manifest, make_manifest, manifest_path, write_atomic
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


def planned_split(cfg: ExperimentConfig, data: DataIdentity) -> tuple[SplitManifest, Path, bool]:
    """The manifest of cfg.split for this data, its path and whether it is on disk already. Writes nothing."""
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
