"""Read any of the public MRIS data set layouts into `SampleRecord`s.

- `detect_format(root)` tells the layout: qata | lvit | mmiunet | mosmed | mosmed-frames.
- `collect_dataset(root, format)` returns every record it could build and every problem found
  (for `medref data check`).
- `read_dataset(root, format)` is the strict call for training code: it raises a one-line
  MedrefError at the first sign of trouble and points to `medref data check`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from medref_cli.data.reader_lvit import SPLIT_FOLDERS, read_lvit
from medref_cli.data.reader_mosmed import looks_like_frames, read_mosmed_frames
from medref_cli.data.reader_paths import find_child
from medref_cli.data.reader_qata import ANNOTATION, read_qata
from medref_cli.data.reader_tables import PROMPT_DIR, find_prompt_csv, read_mmiunet, read_mosmed
from medref_cli.data.records import SPLITS, ReadResult, SampleRecord
from medref_cli.errors import MedrefError

FORMATS: tuple[str, ...] = ("qata", "lvit", "mmiunet", "mosmed", "mosmed-frames")

READERS: dict[str, Callable[[Path], ReadResult]] = {
    "qata": read_qata,
    "lvit": read_lvit,
    "mmiunet": read_mmiunet,
    "mosmed": read_mosmed,
    "mosmed-frames": read_mosmed_frames,
}


def _csv_header(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return [column.strip() for column in header]


def detect_format(root: str | Path) -> str:
    """Which layout the folder holds; raises MedrefError when it is none of the known ones."""
    root = Path(root)
    if not root.is_dir():
        raise MedrefError(f"data folder not found: {root}")
    if (root / ANNOTATION).is_file():
        return "qata"
    if any(find_child(root, (name,)) is not None for name in SPLIT_FOLDERS.values()):
        return "lvit"
    if looks_like_frames(root):
        return "mosmed-frames"
    for split in SPLITS:
        csv_path = find_prompt_csv(root, split)
        if csv_path is not None:
            return "mosmed" if "pseudo_label" in _csv_header(csv_path) else "mmiunet"
    raise MedrefError(
        f"cannot tell the layout of {root}: expected {ANNOTATION.as_posix()} (qata), Train_Folder/ (lvit), "
        f"{PROMPT_DIR}/train.csv (mmiunet, mosmed) or frames/ + masks/ + Train*.csv (mosmed-frames); pass --format"
    )


def collect_dataset(root: str | Path, format: str = "auto") -> ReadResult:
    """All records and all problems of a data folder. Only an unknown folder or format raises."""
    root = Path(root)
    if not root.is_dir():
        raise MedrefError(f"data folder not found: {root}")
    chosen = detect_format(root) if format == "auto" else format
    if chosen not in READERS:
        raise MedrefError(f"unknown data format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    result = READERS[chosen](root)
    report_duplicate_ids(result)
    return result


def report_duplicate_ids(result: ReadResult) -> None:
    """A sample id named twice (within a split, or in two splits: a leak between them) is an error."""
    seen: dict[str, list[SampleRecord]] = defaultdict(list)
    for split in SPLITS:
        for record in result.records.get(split, []):
            seen[record.id].append(record)
    for sample_id, records in seen.items():
        if len(records) < 2:
            continue
        splits = sorted({r.split for r in records}, key=SPLITS.index)
        where = (
            f"splits {' and '.join(splits)}"
            if len(splits) > 1
            else f"split {splits[0]} ({len(records)} times)"
        )
        result.error(
            records[0].image_path, None, f"duplicate id {sample_id!r} in {where}", splits[-1], "duplicate-id"
        )


def read_dataset(root: str | Path, format: str = "auto") -> dict[str, list[SampleRecord]]:
    """Records per split (train / valid / test). Raises MedrefError when the reader found an error."""
    result = collect_dataset(root, format)
    errors = result.errors
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        first = errors[0]
        raise MedrefError(
            f"{first.location}: {first.message}{more}; run `medref data check --data {root}` for the full list"
        )
    return {split: list(result.records.get(split, [])) for split in SPLITS}
