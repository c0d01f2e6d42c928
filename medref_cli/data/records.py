"""What a data set reader hands on: one record per image-mask-caption triple, and problems.

Readers never stop at the first problem: they return every record they could build together
with a list of `Problem`s (file and row included), so that `medref data check` can list all
of them in one run, while training code calls the strict `read_dataset`, which raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "valid", "test")

# spellings of split names in the public releases -> our names
_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
    "testing": "test",
}

ERROR = "error"
WARNING = "warning"

# problem kinds, in the order `medref data check` shows them
KINDS: tuple[str, ...] = (
    "layout",  # a missing folder or caption table, a table without the expected columns
    "row",  # a caption row without a name or caption, or with a malformed label
    "missing-file",  # a caption row whose image or mask is not on disk
    "unreferenced-file",  # an image or mask no caption row names
    "unreadable",  # a file that cannot be decoded
    "size-mismatch",  # image and mask of different sizes
    "non-binary-mask",
    "empty-mask",  # an empty mask whose caption names a lesion
    "mask-vs-caption",  # a lesion in the mask of a caption that names none
    "caption",  # a caption the position parser cannot read
    "label-mismatch",  # metadata label differs from the caption's parsed label
    "duplicate-id",
)


def normalise_split(name: str) -> str:
    """'Train', 'val', 'Validation', 'Test_Folder' ... -> 'train' | 'valid' | 'test'."""
    key = name.strip().lower()
    key = key.removesuffix("_folder")
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split name {name!r} (expected one of train, val/valid, test)")
    return _SPLIT_ALIASES[key]


@dataclass(frozen=True)
class SampleRecord:
    """One sample. `label` is the 6-bit position label from the data's metadata, if it has one.

    Bit order: left upper, left middle, left lower, right upper, right middle, right lower.
    """

    id: str
    split: str
    image_path: Path
    mask_path: Path
    caption: str
    label: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Problem:
    """A problem found in the data. `row` is the spreadsheet row for CSV/xlsx files (the header
    is row 1) and the 1-based entry number within its split for JSON; None for whole files."""

    severity: str  # "error" | "warning"
    file: str
    row: int | None
    message: str
    split: str | None = None  # the split the problem belongs to, when known
    kind: str = "other"  # a short category, e.g. missing-file, unreadable, size-mismatch (see KINDS)

    @property
    def location(self) -> str:
        return self.file if self.row is None else f"{self.file}:{self.row}"

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "file": self.file,
            "row": self.row,
            "message": self.message,
            "split": self.split,
            "kind": self.kind,
        }


class HasProblems:
    """`errors` and `warnings` of a class holding a `problems` list."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]


@dataclass
class ReadResult(HasProblems):
    """Everything a reader found: records per split (only complete ones) and the problems."""

    format: str
    root: Path
    records: dict[str, list[SampleRecord]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    problems: list[Problem] = field(default_factory=list)

    def add(self, record: SampleRecord) -> None:
        self.records.setdefault(record.split, []).append(record)

    def error(
        self, file: str | Path, row: int | None, message: str, split: str | None = None, kind: str = "other"
    ) -> None:
        self.problems.append(Problem(ERROR, self.relative(file), row, _one_line(message), split, kind))

    def warning(
        self, file: str | Path, row: int | None, message: str, split: str | None = None, kind: str = "other"
    ) -> None:
        self.problems.append(Problem(WARNING, self.relative(file), row, _one_line(message), split, kind))

    def relative(self, path: str | Path) -> str:
        """A path as the user knows it: relative to the data root when it lies inside."""
        path = Path(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def _one_line(message: str) -> str:
    return " ".join(message.split())


def parse_label_text(value: object) -> tuple[int, ...]:
    """A metadata position label -> 6-tuple of 0/1. Accepts a list/tuple of ints or the text
    form of the MosMedData+ CSVs, "[0, 1, 0, 0, 1, 0]". Raises ValueError (TypeError for a value
    that is neither) on anything else."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            raise ValueError(f"label {value!r} is not of the form [0, 1, 0, 0, 1, 0]")
        inner = text[1:-1].strip()
        parts = [p.strip() for p in inner.split(",")] if inner else []
        try:
            bits = [int(float(p)) if p not in ("", None) else None for p in parts]
        except ValueError:
            raise ValueError(f"label {value!r} holds a value that is not a number") from None
        if any(b is None for b in bits):
            raise ValueError(f"label {value!r} has an empty entry")
    elif isinstance(value, (list, tuple)):
        bits = list(value)
    else:
        raise TypeError(f"label {value!r} is neither a list nor a text like [0, 1, 0, 0, 1, 0]")
    if len(bits) != 6:
        raise ValueError(f"label {value!r} has {len(bits)} entries, expected 6")
    if any(isinstance(b, bool) or b not in (0, 1) for b in bits):
        raise ValueError(f"label {value!r} holds values other than 0 and 1")
    return tuple(int(b) for b in bits)
