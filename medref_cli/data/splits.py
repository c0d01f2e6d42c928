"""Seeded, nested labeled/unlabeled splits of a data set's train split.

Rule: the train ids are sorted, shuffled once with `random.Random(seed)`, and the labeled set
is the first k = max(1, floor(ratio * N + 0.5)) of that order (ratio 1.0 gives all N). Because
the order depends only on the ids and the seed, for one seed the 1% labeled set lies inside
the 2% set, inside the 5%, inside the 15%, inside 100%.

A manifest is canonical JSON with no timestamps: the same inputs give the same bytes and so
the same hash. An imported manifest (`medref split --import`, the reference's fixed files) keeps
the lists in the order of its files and records the sha256 of those files instead of the rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medref_cli.errors import MedrefError
from medref_cli.files import new_folders

RULE = "labeled = first max(1, floor(ratio*N + 0.5)) train ids of one seeded shuffle of the sorted ids (nested)"
IMPORTED_RULE = "imported: the labeled and unlabeled lists of fixed split files, checked against the data"
# the seed an imported manifest records: the reference's scripts/prepare_splits.py default, with
# which that script remakes the shipped QaTa-COV19 files; imported splits do not depend on split.seed
IMPORTED_SEED = 42


def labeled_count(n: int, ratio: float) -> int:
    if not 0.0 < ratio <= 1.0:
        raise MedrefError(f"label ratio must be in (0, 1], got {ratio}")
    if n < 1:
        raise MedrefError("the train split is empty")
    return min(n, max(1, math.floor(ratio * n + 0.5)))


def split_ids(train_ids: list[str], ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """(labeled, unlabeled), each in the seeded order."""
    if len(set(train_ids)) != len(train_ids):
        raise MedrefError("duplicate sample ids in the train split; run `medref data check`")
    order = sorted(train_ids)
    random.Random(seed).shuffle(order)
    k = labeled_count(len(order), ratio)
    return order[:k], order[k:]


@dataclass(frozen=True)
class SplitManifest:
    dataset: str
    data_hash: str
    ratio: float
    seed: int
    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    imported_sha256: str = ""  # sha256 of the imported split files; empty for medref's seeded rule

    def to_json(self) -> str:
        body = {
            "dataset": self.dataset,
            "data_hash": self.data_hash,
            "ratio": self.ratio,
            "seed": self.seed,
            "rule": IMPORTED_RULE if self.imported_sha256 else RULE,
            "n_train": len(self.labeled) + len(self.unlabeled),
            "n_labeled": len(self.labeled),
            "labeled": list(self.labeled),
            "unlabeled": list(self.unlabeled),
        }
        if self.imported_sha256:
            body["imported_sha256"] = self.imported_sha256
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def make_manifest(dataset: str, data_hash: str, train_ids: list[str], ratio: float, seed: int) -> SplitManifest:
    labeled, unlabeled = split_ids(train_ids, ratio, seed)
    return SplitManifest(dataset, data_hash, float(ratio), int(seed), tuple(labeled), tuple(unlabeled))


def manifest_path(splits_dir: Path, dataset: str, data_hash: str, ratio: float, seed: int,
                  imported: bool = False) -> Path:
    name = f"imported-ratio{ratio:g}.json" if imported else f"ratio{ratio:g}-seed{seed}.json"
    return splits_dir / f"{dataset}-{data_hash[:12]}" / name


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    try:
        with new_folders(path.parent):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                raise MedrefError(f"cannot write {path}: {exc.strerror}") from None
    except OSError as exc:
        raise MedrefError(f"cannot write to {path.parent}: {exc.strerror}") from None


def load_manifest(path: Path) -> SplitManifest:
    try:
        text = path.read_text(encoding="utf-8")
        body = json.loads(text)
        manifest = SplitManifest(
            body["dataset"],
            body["data_hash"],
            float(body["ratio"]),
            int(body["seed"]),
            tuple(body["labeled"]),
            tuple(body["unlabeled"]),
            str(body.get("imported_sha256", "")),
        )
    except FileNotFoundError:
        raise MedrefError(f"split manifest not found: {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MedrefError(f"split manifest {path} is unreadable or malformed: {exc}") from None
    if manifest.to_json() != text:
        raise MedrefError(f"split manifest {path} was edited by hand (not in canonical form); re-run `medref split`")
    return manifest

