"""File-name conventions shared by the data set readers.

In every public MRIS release the caption table names the MASK file. For QaTa-COV19 the mask is
`mask_<name>.png` and the image `<name>.png` (LViT, GuideDecoder and MMI-UNet all strip the
`mask_` prefix); for MosMedData+ and MoNuSeg the image and the mask share one name (the image may
have another extension).
"""

from __future__ import annotations

import math
from pathlib import Path

from medref_cli.data.records import ReadResult

MASK_PREFIX = "mask_"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def find_child(parent: Path, names: tuple[str, ...], want_dir: bool = True) -> Path | None:
    """The first child of `parent` whose name matches one of `names`, ignoring case."""
    if not parent.is_dir():
        return None
    children = {child.name.lower(): child for child in sorted(parent.iterdir())}
    for name in names:
        child = children.get(name.lower())
        if child is not None and (child.is_dir() if want_dir else child.is_file()):
            return child
    return None


def image_candidates(mask_name: str, same_name_first: bool) -> list[str]:
    """Image file names to try for a mask file name, most likely first."""
    stripped = mask_name.removeprefix(MASK_PREFIX)
    names = [mask_name, stripped] if same_name_first else [stripped, mask_name]
    ordered = list(dict.fromkeys(names))
    for name in list(ordered):
        stem = Path(name).stem
        ordered.extend(stem + suffix for suffix in IMAGE_SUFFIXES)
    return list(dict.fromkeys(ordered))


def resolve_image(image_dir: Path, mask_name: str, same_name_first: bool = False) -> Path | None:
    """The image that belongs to a mask file name, or None when no candidate exists."""
    for name in image_candidates(mask_name, same_name_first):
        candidate = image_dir / name
        if candidate.is_file():
            return candidate
    return None


def report_missing_pair(result: ReadResult, table: Path, row: int, split: str | None, image_dir: Path,
                        mask_name: str, image_path: Path | None, mask_path: Path) -> bool:
    """Record an error when the image or the mask a caption row names is not on disk; True if so."""
    missing = []
    if image_path is None:
        missing.append(f"image for {mask_name} in {result.relative(image_dir)}")
    if not mask_path.is_file():
        missing.append(result.relative(mask_path))
    if missing:
        result.error(table, row, f"caption row without file: {'; '.join(missing)} not found", split, "missing-file")
    return bool(missing)


def sample_id(image_path: Path) -> str:
    """A sample's id: its image file name without the extension."""
    return image_path.stem


def is_blank(value: object) -> bool:
    """True for None, NaN and empty or whitespace-only text (as pandas hands back empty cells)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def clean_name(value: object) -> str:
    """A file-name cell as text: strips blanks and any folder part the table may carry."""
    return Path(str(value).strip()).name


def report_unreferenced(
    result: ReadResult, folder: Path | None, used: set[Path], what: str, split: str | None = None
) -> None:
    """Warn about image files on disk that no caption row names (they are not read)."""
    if folder is None or not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and path not in used:
            result.warning(
                path, None, f"{what} file has no caption row; it is not read", split, "unreferenced-file"
            )
