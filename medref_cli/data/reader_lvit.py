"""Reader for the LViT layout (QaTa-COV19 and MosMedData+ as released with LViT).

```
Train_Folder/Train_text.xlsx   columns Image, Description (Image = the MASK file name)
Train_Folder/img/<name>.png
Train_Folder/labelcol/<mask name>
Val_Folder/...   Test_Folder/...
```
LViT's loader reads the mask from `labelcol/<Image>` and, for QaTa-COV19, the image from
`img/<Image without "mask_">`; for MosMedData+ and MoNuSeg image and mask share one name.
"""

from __future__ import annotations

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
from medref_cli.data.records import ReadResult, SampleRecord

SPLIT_FOLDERS = {"train": "Train_Folder", "valid": "Val_Folder", "test": "Test_Folder"}
TEXT_COLUMNS = ("Image", "Description")


def read_lvit(root: Path) -> ReadResult:
    result = ReadResult(format="lvit", root=root)
    for split, folder_name in SPLIT_FOLDERS.items():
        folder = find_child(root, (folder_name,))
        if folder is None:
            result.warning(
                root / folder_name, None, f"folder not found: split {split!r} is empty", split, "layout"
            )
            continue
        _read_split(result, split, folder)
    return result


def find_text_table(folder: Path) -> Path | None:
    """`<Split>_text.xlsx` in a split folder, else the only `*_text.xlsx` there."""
    prefix = folder.name.split("_")[0]
    preferred = find_child(folder, (f"{prefix}_text.xlsx",), want_dir=False)
    if preferred is not None:
        return preferred
    tables = sorted(p for p in folder.glob("*.xlsx") if p.name.lower().endswith("_text.xlsx"))
    return tables[0] if len(tables) == 1 else None


def _read_split(result: ReadResult, split: str, folder: Path) -> None:
    table_path = find_text_table(folder)
    image_dir, mask_dir = find_child(folder, ("img",)), find_child(folder, ("labelcol",))
    for name, found in (("img", image_dir), ("labelcol", mask_dir)):
        if found is None:
            result.error(folder / name, None, "folder not found", split, "layout")
    if table_path is None:
        result.error(
            folder, None, f"no caption table: expected {folder.name.split('_')[0]}_text.xlsx", split, "layout"
        )
        return
    table = _load_table(result, table_path, split)
    if table is None or image_dir is None or mask_dir is None:
        return
    used: set[Path] = set()
    for index, row in enumerate(table.itertuples(index=False)):
        record = _read_row(result, table_path, index + 2, split, row, (image_dir, mask_dir), used)
        if record is not None:
            result.add(record)
    report_unreferenced(result, image_dir, used, "image")
    report_unreferenced(result, mask_dir, used, "mask")


def _load_table(result: ReadResult, table_path: Path, split: str):
    import pandas as pd

    try:
        table = pd.read_excel(table_path, dtype=object, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a damaged workbook
        result.error(
            table_path, None, f"cannot read the workbook ({type(exc).__name__}: {exc})", split, "layout"
        )
        return None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in TEXT_COLUMNS if c not in table.columns]
    if missing:
        found = ", ".join(table.columns) or "none"
        result.error(
            table_path, 1, f"missing column(s) {', '.join(missing)}; found: {found}", split, "layout"
        )
        return None
    return table[list(TEXT_COLUMNS)]


def _read_row(
    result: ReadResult,
    table_path: Path,
    row_number: int,
    split: str,
    row,
    folders: tuple[Path, Path],
    used: set[Path],
) -> SampleRecord | None:
    image_dir, mask_dir = folders
    mask_cell, caption = row[0], row[1]
    if is_blank(mask_cell):
        result.error(table_path, row_number, "row has no Image name", split, "row")
        return None
    mask_name = clean_name(mask_cell)
    if is_blank(caption):
        result.error(table_path, row_number, f"{mask_name}: row has no Description", split, "row")
        return None
    mask_path = mask_dir / mask_name
    image_path = resolve_image(image_dir, mask_name)
    used.update(p for p in (image_path, mask_path) if p is not None and p.is_file())  # named by the row
    if report_missing_pair(result, table_path, row_number, split, image_dir, mask_name, image_path, mask_path):
        return None
    return SampleRecord(sample_id(image_path), split, image_path, mask_path, str(caption).strip(), None)
