"""Reader for the refined QaTa-COV19 release (the layout of `shared/data/qata-cov19-mini`).

```
prompts/annotation.json           {"train": [...], "valid": [...], "test": [...]}
images/<split>/images/<name>.png
images/<split>/masks/mask_<name>.png
```
An entry: {"image_path": "mask_<name>.png", "caption": "...", "pseudo_label": [6 bits], ...};
`image_path` names the mask, the image is the same name without `mask_`.
"""

from __future__ import annotations

import json
from pathlib import Path

from medref_cli.data.reader_paths import (
    MASK_PREFIX,
    clean_name,
    find_child,
    is_blank,
    report_unreferenced,
    sample_id,
)
from medref_cli.data.records import ReadResult, SampleRecord, normalise_split, parse_label_text

ANNOTATION = Path("prompts") / "annotation.json"
# folder names under images/ a split may carry
_SPLIT_DIRS = {
    "train": ("train", "training"),
    "valid": ("valid", "val", "validation"),
    "test": ("test", "testing"),
}


def read_qata(root: Path) -> ReadResult:
    result = ReadResult(format="qata", root=root)
    annotation_file = root / ANNOTATION
    annotation = _load_annotation(result, annotation_file)
    if annotation is None:
        return result
    for key, entries in annotation.items():
        try:
            split = normalise_split(key)
        except ValueError:
            result.warning(annotation_file, None, f"unknown split key {key!r} ignored", None, "layout")
            continue
        if not isinstance(entries, list):
            result.error(annotation_file, None, f"split {key!r} is not a list of entries", None, "layout")
            continue
        _read_split(result, annotation_file, split, entries)
    return result


def _load_annotation(result: ReadResult, annotation_file: Path) -> dict | None:
    if not annotation_file.is_file():
        result.error(annotation_file, None, "annotation file not found", None, "layout")
        return None
    try:
        annotation = json.loads(annotation_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        result.error(annotation_file, None, f"not UTF-8 text ({exc.reason})", None, "layout")
        return None
    except json.JSONDecodeError as exc:
        result.error(
            annotation_file,
            exc.lineno,
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            None,
            "layout",
        )
        return None
    if not isinstance(annotation, dict):
        result.error(
            annotation_file,
            None,
            'expected an object {"train": [...], "valid": [...], "test": [...]}',
            None,
            "layout",
        )
        return None
    return annotation


def _read_split(result: ReadResult, annotation_file: Path, split: str, entries: list) -> None:
    split_dir = find_child(result.root / "images", _SPLIT_DIRS[split])
    if split_dir is None:
        if entries:
            result.error(
                result.root / "images",
                None,
                f"no folder for split {split!r} ({' / '.join(_SPLIT_DIRS[split])})",
                split,
                "layout",
            )
        return
    image_dir, mask_dir = split_dir / "images", split_dir / "masks"
    used: set[Path] = set()
    for number, entry in enumerate(entries, start=1):
        record = _read_entry(result, annotation_file, split, number, entry, image_dir, mask_dir, used)
        if record is not None:
            result.add(record)
    report_unreferenced(result, image_dir, used, "image", split)
    report_unreferenced(result, mask_dir, used, "mask", split)


def _read_entry(
    result: ReadResult,
    annotation_file: Path,
    split: str,
    number: int,
    entry: object,
    image_dir: Path,
    mask_dir: Path,
    used: set[Path],
) -> SampleRecord | None:
    where = f"[{split}] "
    if not isinstance(entry, dict):
        result.error(annotation_file, number, where + "entry is not an object", split, "row")
        return None
    if is_blank(entry.get("image_path")) or not isinstance(entry.get("image_path"), str):
        result.error(annotation_file, number, where + "entry has no image_path", split, "row")
        return None
    caption = entry.get("caption")
    if is_blank(caption) or not isinstance(caption, str):
        result.error(
            annotation_file, number, where + f"{entry['image_path']}: entry has no caption", split, "row"
        )
        return None
    mask_name = clean_name(entry["image_path"])
    image_name = mask_name.removeprefix(MASK_PREFIX)
    mask_path, image_path = mask_dir / mask_name, image_dir / image_name
    used.update(p for p in (image_path, mask_path) if p.is_file())  # named by a row, even a bad one
    missing = [result.relative(p) for p in (image_path, mask_path) if not p.is_file()]
    if missing:
        result.error(
            annotation_file,
            number,
            where + f"caption row without file: {', '.join(missing)} not found",
            split,
            "missing-file",
        )
        return None
    label = None
    if entry.get("pseudo_label") is not None:
        try:
            label = parse_label_text(entry["pseudo_label"])
        except (TypeError, ValueError) as exc:
            result.error(annotation_file, number, where + f"{mask_name}: {exc}", split, "row")
    return SampleRecord(sample_id(image_path), split, image_path, mask_path, caption.strip(), label)
