"""Readers for the CSV layouts of GuideDecoder / MMI-UNet and of MosMedData+ with position labels.

```
prompt/train.csv  prompt/val.csv  prompt/test.csv
Train/Images/<image>   Train/GTs/<mask>      (also Val/..., Test/...)
```
- `mmiunet`: columns Image, Description. `Image` names the GT file; the image is that name
  without `mask_` (QaTa-COV19), as the public GuideDecoder and MMI-UNet loaders do.
  Without `prompt/val.csv` the reference code takes the first 80% of train.csv rows as train and
  the last 20% as validation (images from Train/); this reader does the same and says so.
- `mosmed`: MosMedData+ extended with position labels, columns Image, text, pseudo_label
  (label written "[0, 1, 0, 0, 1, 0]"). Same folders as MMI-UNet's MosMedDataPlus release, where
  image and GT share one file name.
Some forks call the GT folder `Ground-truths`; both names are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medref_cli.data.reader_paths import (
    clean_name,
    find_child,
    is_blank,
    report_missing_pair,
    report_unreferenced,
    resolve_image,
    sample_id,
)
from medref_cli.data.records import ReadResult, SampleRecord, normalise_split, parse_label_text

PROMPT_DIR = "prompt"
CSV_NAMES = {"train": ("train.csv",), "valid": ("val.csv", "valid.csv"), "test": ("test.csv",)}
SPLIT_DIRS = {"train": ("Train",), "valid": ("Val", "Valid"), "test": ("Test",)}
IMAGE_DIRS = ("Images",)
MASK_DIRS = ("GTs", "Ground-truths")
TRAIN_SHARE_WITHOUT_VAL = 0.8


@dataclass(frozen=True)
class TableLayout:
    format: str
    caption_columns: tuple[str, ...]  # first one present is used
    label_column: str | None
    same_name_first: bool  # image and mask usually share a name


MMIUNET = TableLayout("mmiunet", ("Description",), None, same_name_first=False)
MOSMED = TableLayout("mosmed", ("text", "Description"), "pseudo_label", same_name_first=True)


def read_mmiunet(root: Path) -> ReadResult:
    return read_tables(root, MMIUNET)


def read_mosmed(root: Path) -> ReadResult:
    return read_tables(root, MOSMED)


def find_prompt_csv(root: Path, split: str) -> Path | None:
    prompt_dir = find_child(root, (PROMPT_DIR,))
    return None if prompt_dir is None else find_child(prompt_dir, CSV_NAMES[split], want_dir=False)


def read_tables(root: Path, layout: TableLayout) -> ReadResult:
    result = ReadResult(format=layout.format, root=root)
    if find_child(root, (PROMPT_DIR,)) is None:
        result.error(
            root / PROMPT_DIR,
            None,
            "folder not found (expected prompt/train.csv, val.csv, test.csv)",
            None,
            "layout",
        )
        return result
    used: dict[Path, set[Path]] = {}
    for split in ("train", "valid", "test"):
        csv_path = find_prompt_csv(root, split)
        if csv_path is None:
            if split != "valid":
                result.error(
                    root / PROMPT_DIR / CSV_NAMES[split][0], None, "caption table not found", split, "layout"
                )
            continue
        rows = _read_csv_rows(result, csv_path, layout, split)
        if rows is None:
            continue
        if split == "train" and find_prompt_csv(root, "valid") is None:
            cut = int(TRAIN_SHARE_WITHOUT_VAL * len(rows))
            result.warning(
                root / PROMPT_DIR / "val.csv",
                None,
                f"not found: valid = last {len(rows) - cut} of {len(rows)} rows of {csv_path.name} (reference 80/20 rule)",
                "valid",
                "layout",
            )
            _read_rows(result, layout, csv_path, rows[:cut], "train", "train", used)
            _read_rows(result, layout, csv_path, rows[cut:], "valid", "train", used)
        else:
            _read_rows(result, layout, csv_path, rows, split, split, used)
    for folder, names in used.items():
        report_unreferenced(result, folder, names, "image/mask", normalise_split(folder.parent.name))
    return result


def _read_csv_rows(
    result: ReadResult, csv_path: Path, layout: TableLayout, split: str
) -> list[tuple[int, dict]] | None:
    """(spreadsheet row number, cells) of every data row, or None when the file is unusable."""
    import pandas as pd

    try:
        # utf-8-sig: the reference writes its MosMed tables with a byte-order mark
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # noqa: BLE001 - pandas raises ParserError, UnicodeDecodeError, EmptyDataError ...
        result.error(csv_path, None, f"cannot read the CSV ({type(exc).__name__}: {exc})", split, "layout")
        return None
    table.columns = [str(c).strip().lstrip("\ufeff") for c in table.columns]
    caption_column = next((c for c in layout.caption_columns if c in table.columns), None)
    needed = ["Image"] + ([layout.label_column] if layout.label_column else [])
    missing = [c for c in needed if c not in table.columns]
    if caption_column is None:
        missing.append(" or ".join(layout.caption_columns))
    if missing:
        found = ", ".join(table.columns) or "none"
        result.error(csv_path, 1, f"missing column(s) {', '.join(missing)}; found: {found}", split, "layout")
        return None
    rows = []
    for index, cells in enumerate(table.to_dict("records")):
        rows.append(
            (
                index + 2,
                {
                    "mask": cells["Image"],
                    "caption": cells[caption_column],
                    "label": cells.get(layout.label_column) if layout.label_column else None,
                },
            )
        )
    return rows


def _read_rows(
    result: ReadResult,
    layout: TableLayout,
    csv_path: Path,
    rows: list[tuple[int, dict]],
    split: str,
    folder_split: str,
    used: dict[Path, set[Path]],
) -> None:
    split_dir = find_child(result.root, SPLIT_DIRS[folder_split])
    image_dir = find_child(split_dir, IMAGE_DIRS) if split_dir else None
    mask_dir = find_child(split_dir, MASK_DIRS) if split_dir else None
    if image_dir is None or mask_dir is None:
        if rows:
            base = result.root / SPLIT_DIRS[folder_split][0]
            result.error(
                base,
                None,
                f"expected folders {IMAGE_DIRS[0]}/ and {MASK_DIRS[0]}/ inside (rows of {csv_path.name})",
                split,
                "layout",
            )
        return
    for folder in (image_dir, mask_dir):
        used.setdefault(folder, set())
    for row_number, cells in rows:
        record = _read_row(result, layout, csv_path, row_number, split, cells, image_dir, mask_dir, used)
        if record is not None:
            result.add(record)


def _read_row(
    result: ReadResult,
    layout: TableLayout,
    csv_path: Path,
    row_number: int,
    split: str,
    cells: dict,
    image_dir: Path,
    mask_dir: Path,
    used: dict[Path, set[Path]],
) -> SampleRecord | None:
    if is_blank(cells["mask"]):
        result.error(csv_path, row_number, "row has no Image name", split, "row")
        return None
    mask_name = clean_name(cells["mask"])
    if is_blank(cells["caption"]):
        result.error(csv_path, row_number, f"{mask_name}: row has no caption", split, "row")
        return None
    mask_path = mask_dir / mask_name
    image_path = resolve_image(image_dir, mask_name, same_name_first=layout.same_name_first)
    for folder, path in ((image_dir, image_path), (mask_dir, mask_path)):
        if path is not None and path.is_file():
            used[folder].add(path)  # named by the row, even when the row is rejected
    if report_missing_pair(result, csv_path, row_number, split, image_dir, mask_name, image_path, mask_path):
        return None
    label = None
    if layout.label_column and not is_blank(cells["label"]):
        try:
            label = parse_label_text(cells["label"])
        except (TypeError, ValueError) as exc:
            result.error(csv_path, row_number, f"{mask_name}: {exc}", split, "row")
    return SampleRecord(
        sample_id(image_path), split, image_path, mask_path, str(cells["caption"]).strip(), label
    )
