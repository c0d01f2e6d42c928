"""The reference's fixed split files, read for `medref split --import` and checked against a data folder.

Two formats, as the Semi-MedRef repository ships them under `data_splits/`:

- QaTa-COV19: `split_labeled_<r>.json` and `split_unlabeled_<r>.json`, each an object
  `{"train": [...], "valid": [...], "test": [...]}` of annotation entries (`image_path` names the
  mask `mask_<name>.png`); the train list is the labeled (or unlabeled) part, and both files carry
  the same valid and test lists.
- MosMedData+: `labeled_<r>.plabel.csv` and `unlabeled_<1-r>.plabel.csv` with columns
  `Image, text, pseudo_label` (UTF-8 with a byte-order mark); rows without an image name or text
  are dropped, as the reference's reader drops them.

Given one file of a pair, the other is found beside it by name (`--unlabeled` names it
otherwise), and the ratio comes from the name (`--ratio` when the name has none). A sample's id
is its image file name without the extension, as the data readers name it. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from medref_cli.data.reader_paths import MASK_PREFIX, is_blank
from medref_cli.data.records import SampleRecord
from medref_cli.errors import MedrefError

QATA_NAME = re.compile(r"^split_(labeled|unlabeled)_(\d+(?:\.\d+)?)\.json$", re.IGNORECASE)
MOSMED_NAME = re.compile(r"^(labeled|unlabeled)_(\d+(?:\.\d+)?)\.plabel\.csv$", re.IGNORECASE)
SHOWN = 3  # ids named in a refusal


@dataclass(frozen=True)
class ReferenceSplit:
    kind: str  # "qata" | "mosmed"
    labeled_file: Path
    unlabeled_file: Path
    ratio: float
    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    valid: tuple[str, ...] | None  # the files' valid / test lists (QaTa); None where they carry none
    test: tuple[str, ...] | None
    sha256: str  # over the bytes of both files
    captions: dict[str, str] = field(default_factory=dict)  # train id -> the files' caption (the reference
    # trains on the captions of these files, medref on the data folder's: they must agree)


def _tag(value: Decimal) -> str:
    return format(value.normalize(), "f")


def pair_files(path: Path, unlabeled: Path | None, ratio: float | None) -> tuple[str, Path, Path, float]:
    """(kind, labeled file, unlabeled file, ratio) of the file a user named."""
    kind = "qata" if path.suffix.lower() == ".json" else "mosmed" if path.suffix.lower() == ".csv" else None
    if kind is None:
        raise MedrefError(f"cannot import {path.name}: expected a split_labeled_<r>.json (QaTa-COV19) or "
                          "labeled_<r>.plabel.csv (MosMedData+) file")
    match = (QATA_NAME if kind == "qata" else MOSMED_NAME).match(path.name)
    named_ratio = None
    if match is not None:
        role, tag = match.group(1).lower(), Decimal(match.group(2))
        named_ratio = tag if role == "labeled" else (Decimal(1) - tag if kind == "mosmed" else tag)
        if unlabeled is None:
            if kind == "qata":
                other = path.with_name(f"split_{'unlabeled' if role == 'labeled' else 'labeled'}_{match.group(2)}.json")
            else:
                other_tag = _tag(Decimal(1) - tag)
                other = path.with_name(f"{'unlabeled' if role == 'labeled' else 'labeled'}_{other_tag}.plabel.csv")
            unlabeled, path = (other, path) if role == "labeled" else (path, other)
    if unlabeled is None:
        raise MedrefError(f"cannot tell the unlabeled file of {path.name} from its name; pass --unlabeled FILE")
    if named_ratio is not None and ratio is not None and Decimal(str(ratio)) != named_ratio:
        raise MedrefError(f"{path.name} names ratio {_tag(named_ratio)} but --ratio is {ratio:g}")
    chosen = float(named_ratio) if named_ratio is not None else ratio
    if chosen is None:
        raise MedrefError(f"the name {path.name} carries no label ratio; pass --ratio R")
    if not 0.0 < chosen <= 1.0:
        raise MedrefError(f"label ratio must be in (0, 1], got {chosen:g}")
    for file in (path, unlabeled):
        if not file.is_file():
            raise MedrefError(f"split file not found: {file}")
    return kind, path, unlabeled, chosen


def qata_id(image_path: str) -> str:
    return Path(Path(image_path.strip()).name.removeprefix(MASK_PREFIX)).stem


def _qata_lists(path: Path) -> dict[str, list[tuple[str, str]]]:
    """(id, caption) of each entry of the train / valid / test lists."""
    try:
        body = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise MedrefError(f"{path} is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise MedrefError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(body, dict) or not isinstance(body.get("train"), list):
        raise MedrefError(f'{path} is not a QaTa split file: expected an object with a "train" list')
    lists: dict[str, list[tuple[str, str]]] = {}
    for key in ("train", "valid", "test"):
        entries = body.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise MedrefError(f"{path}: {key!r} is not a list of entries")
        ids = []
        for number, entry in enumerate(entries, start=1):
            name = entry.get("image_path") if isinstance(entry, dict) else None
            if not isinstance(name, str) or is_blank(name):
                raise MedrefError(f"{path}: {key} entry {number} has no image_path")
            caption = entry.get("caption")
            ids.append((qata_id(name), caption.strip() if isinstance(caption, str) else ""))
        lists[key] = ids
    return lists


def _mosmed_ids(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each row with an image name and a text."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # noqa: BLE001 - pandas raises ParserError, UnicodeDecodeError, EmptyDataError ...
        raise MedrefError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    columns = {str(c).strip().lstrip("\ufeff").lower(): c for c in table.columns}
    if "image" not in columns or "text" not in columns:
        found = ", ".join(str(c) for c in table.columns) or "none"
        raise MedrefError(f"{path} has no Image and text columns (found: {found})")
    ids = []
    for name, text in zip(table[columns["image"]], table[columns["text"]], strict=True):
        if is_blank(name) or is_blank(text):
            continue  # the reference's reader drops such rows
        ids.append((Path(str(name).strip()).stem, str(text).strip()))
    return ids


def _file_hash(labeled: Path, unlabeled: Path) -> str:
    digest = hashlib.sha256()
    for file in (labeled, unlabeled):
        digest.update(hashlib.sha256(file.read_bytes()).hexdigest().encode("ascii"))
    return digest.hexdigest()


def read_reference_split(path: Path, unlabeled: Path | None = None, ratio: float | None = None) -> ReferenceSplit:
    """Read a labeled/unlabeled pair; raises a one-line MedrefError for a file that is not one."""
    kind, labeled_file, unlabeled_file, chosen = pair_files(Path(path), unlabeled, ratio)
    valid = test = None
    if kind == "qata":
        lab, unl = _qata_lists(labeled_file), _qata_lists(unlabeled_file)
        for key in ("valid", "test"):
            if lab.get(key) != unl.get(key):
                raise MedrefError(f"the {key} lists of {labeled_file.name} and {unlabeled_file.name} differ")
        labeled_rows, unlabeled_rows = lab["train"], unl["train"]
        valid, test = ([i for i, _ in lab[k]] if k in lab else None for k in ("valid", "test"))
    else:
        labeled_rows, unlabeled_rows = _mosmed_ids(labeled_file), _mosmed_ids(unlabeled_file)
    labeled, unlabeled_ids = [i for i, _ in labeled_rows], [i for i, _ in unlabeled_rows]
    for file, ids in ((labeled_file, labeled), (unlabeled_file, unlabeled_ids)):
        if not ids:
            raise MedrefError(f"{file} lists no train samples")
        seen: set[str] = set()
        for sample in ids:
            if sample in seen:
                raise MedrefError(f"{file.name} names sample {sample!r} twice")
            seen.add(sample)
    both = set(labeled) & set(unlabeled_ids)
    if both:
        first = next(s for s in labeled if s in both)
        raise MedrefError(f"{len(both)} samples are in both {labeled_file.name} and {unlabeled_file.name} "
                          f"(first: {first})")
    return ReferenceSplit(kind, labeled_file, unlabeled_file, chosen, tuple(labeled), tuple(unlabeled_ids),
                          None if valid is None else tuple(valid), None if test is None else tuple(test),
                          _file_hash(labeled_file, unlabeled_file), dict(labeled_rows + unlabeled_rows))


def _first(ids: list[str]) -> str:
    more = ", ..." if len(ids) > SHOWN else ""
    return ", ".join(ids[:SHOWN]) + more


def check_against_data(ref: ReferenceSplit, records: dict[str, list[SampleRecord]], root: Path) -> None:
    """Refuse, in one line naming the first missing ids, split files that do not describe this data folder."""
    where = f"{ref.labeled_file.name} does not match {root}"
    data = {split: [r.id for r in records.get(split, [])] for split in ("train", "valid", "test")}
    train = set(data["train"])
    for file, ids in ((ref.labeled_file, ref.labeled), (ref.unlabeled_file, ref.unlabeled)):
        unknown = [s for s in ids if s not in train]
        if unknown:
            raise MedrefError(f"{file.name} does not match {root}: {len(unknown)} of its {len(ids)} train ids are not in the data's train "
                              f"split (first: {_first(unknown)})")
    listed = set(ref.labeled) | set(ref.unlabeled)
    absent = [s for s in data["train"] if s not in listed]
    if absent:
        raise MedrefError(f"{where}: {len(absent)} train ids of the data are in neither {ref.labeled_file.name} "
                          f"nor {ref.unlabeled_file.name} (first: {_first(absent)})")
    captions = {r.id: r.caption for r in records.get("train", [])}
    differ = [s for s, text in ref.captions.items() if text and text != captions[s].strip()]
    if differ:
        file = ref.labeled_file if differ[0] in set(ref.labeled) else ref.unlabeled_file
        raise MedrefError(f"{file.name} does not match {root}: the caption of {differ[0]} differs from the data's "
                          f"({len(differ)} train captions differ; the reference trains on the files' captions)")
    for split, ids in (("valid", ref.valid), ("test", ref.test)):
        if ids is None:
            continue
        have = set(data[split])
        unknown = [s for s in ids if s not in have]
        if unknown:
            raise MedrefError(f"{where}: {len(unknown)} of its {len(ids)} {split} ids are not in the data's "
                              f"{split} split (first: {_first(unknown)})")
        named = set(ids)
        absent = [s for s in data[split] if s not in named]
        if absent:
            raise MedrefError(f"{where}: {len(absent)} {split} ids of the data are missing from its {split} list "
                              f"(first: {_first(absent)})")

