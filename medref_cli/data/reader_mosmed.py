"""Reader for MosMedData+ as the Semi-MedRef reference lays it out (format `mosmed-frames`).

```
frames/<name>.png        (older copies: Images/<name>.png)
masks/<name>.png         image and mask share one file name
Train_text_MosMedData+ 1(in).plabel.csv     columns Image, text[, pseudo_label]
Val_text_MosMedData+ 1(in).csv              (a .plabel.csv twin is preferred when present)
Test_text_MosMedData+(in).csv
```
One folder holds the images of every split; the caption tables (found by the first word of their
name: Train / Val / Test, in the folder itself or in `data_splits/MosMed/` beside the images, as
the reference repository keeps them) say which image belongs where. `pseudo_label` is the 6-bit
position label written "[0, 1, 0, 0, 1, 0]"; a table without the column gives records without a
label. The reference writes its tables with a UTF-8 byte-order mark; both spellings are read.
"""

from __future__ import annotations

from pathlib import Path

from medref_cli.data.reader_paths import find_child, report_unreferenced
from medref_cli.data.reader_tables import TableLayout, _read_csv_rows, _read_row
from medref_cli.data.records import ReadResult

IMAGE_DIRS = ("frames", "Images")
MASK_DIRS = ("masks",)
TABLE_DIRS = (".", "data_splits/MosMed")
TABLE_PREFIXES = {"train": ("train",), "valid": ("val", "valid"), "test": ("test",)}
LABEL_COLUMN = "pseudo_label"


def frames_layout(root: Path) -> tuple[Path | None, Path | None]:
    """(images folder, masks folder) of the layout, None where absent."""
    return find_child(root, IMAGE_DIRS), find_child(root, MASK_DIRS)


def find_tables(root: Path) -> dict[str, Path]:
    """The caption table of each split: a `.plabel.csv` before a plain `.csv`, the root before data_splits."""
    found: dict[str, Path] = {}
    for sub in TABLE_DIRS:
        folder = root if sub == "." else root / sub
        if not folder.is_dir():
            continue
        tables = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"),
                        key=lambda p: (not p.name.lower().endswith(".plabel.csv"), p.name))
        for split, prefixes in TABLE_PREFIXES.items():
            if split in found:
                continue
            match = next((p for p in tables if _first_word(p.name) in prefixes), None)
            if match is not None:
                found[split] = match
    return found


def _first_word(name: str) -> str:
    word = name.lower()
    for sep in ("_", " ", ".", "-"):
        word = word.split(sep, 1)[0]
    return word


def looks_like_frames(root: Path) -> bool:
    images, masks = frames_layout(root)
    return images is not None and masks is not None and "train" in find_tables(root)


def _header(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        return [c.strip().lstrip("\ufeff") for c in next(csv.reader(handle), [])]


def read_mosmed_frames(root: Path) -> ReadResult:
    result = ReadResult(format="mosmed-frames", root=root)
    image_dir, mask_dir = frames_layout(root)
    if image_dir is None or mask_dir is None:
        result.error(root, None, "expected folders frames/ (or Images/) and masks/", None, "layout")
        return result
    tables = find_tables(root)
    used: dict[Path, set[Path]] = {image_dir: set(), mask_dir: set()}
    for split in ("train", "valid", "test"):
        csv_path = tables.get(split)
        if csv_path is None:
            names = " / ".join(p.capitalize() for p in TABLE_PREFIXES[split])
            report = result.warning if split == "valid" else result.error
            report(root, None, f"no {split} caption table ({names}*.csv)", split, "layout")
            continue
        label = LABEL_COLUMN if LABEL_COLUMN in _header(csv_path) else None
        layout = TableLayout("mosmed-frames", ("text", "Description"), label, same_name_first=True)
        rows = _read_csv_rows(result, csv_path, layout, split)
        for row_number, cells in rows or []:
            record = _read_row(result, layout, csv_path, row_number, split, cells, image_dir, mask_dir, used)
            if record is not None:
                result.add(record)
    for folder, names in used.items():
        report_unreferenced(result, folder, names, "image/mask")
    return result
