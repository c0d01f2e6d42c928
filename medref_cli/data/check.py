"""`medref data check`: scan a whole data set and list every problem, never stopping at the first.

Reader problems (layout, rows, missing files, duplicate ids) come from `collect_dataset`; this
module adds what needs the pixels and the text, decoding every image and mask exactly once:
unreadable files, image/mask size mismatch, non-binary masks, empty masks whose caption names
a lesion (and the reverse), captions the position parser cannot read, metadata labels that
disagree with the caption, and the measured laterality convention.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medref_cli.data.decode import DecodeError, binarize_mask, decode_gray, is_binary_mask
from medref_cli.data.laterality import LateralityReport, centroid_x, measure_laterality
from medref_cli.data.readers import collect_dataset
from medref_cli.data.records import (
    ERROR,
    KINDS,
    SPLITS,
    WARNING,
    HasProblems,
    Problem,
    ReadResult,
    SampleRecord,
)
from medref_cli.text.positions import CaptionParseError, parse_caption


@dataclass
class RecordFindings:
    """What inspecting one record found; `label` is the one training would use (metadata first)."""

    problems: list[tuple[str, Path, str, str]] = field(default_factory=list)  # severity, file, kind, message
    label: tuple[int, ...] | None = None
    centroid: float | None = None
    decoded: bool = False


@dataclass
class SplitSummary:
    samples: int = 0
    decoded: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # problem kind -> count
    errors: int = 0
    warnings: int = 0
    laterality: LateralityReport | None = None

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "decoded": self.decoded,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems_by_kind": dict(self.kinds),
            "laterality": self.laterality.to_dict() if self.laterality else None,
        }


@dataclass
class CheckReport(HasProblems):
    root: Path
    format: str
    splits: dict[str, SplitSummary]
    problems: list[Problem]
    laterality: LateralityReport
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "format": self.format,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "seconds": round(self.seconds, 3),
            "splits": {name: summary.to_dict() for name, summary in self.splits.items()},
            "laterality": self.laterality.to_dict(),
            "problems": [p.to_dict() for p in self.problems],
        }


def inspect_pixels(record: SampleRecord, findings: RecordFindings) -> None:
    """Decode image and mask once: readable, same size, binary, and the mask centroid."""
    arrays = {}
    for what, path in (("image", record.image_path), ("mask", record.mask_path)):
        try:
            arrays[what] = decode_gray(path)
        except DecodeError as exc:
            findings.problems.append((ERROR, path, "unreadable", f"cannot decode the {what}: {exc.reason}"))
    if len(arrays) < 2:
        return
    findings.decoded = True
    image, mask = arrays["image"], arrays["mask"]
    if image.shape != mask.shape:
        sizes = f"image {image.shape[1]}x{image.shape[0]}, mask {mask.shape[1]}x{mask.shape[0]}"
        findings.problems.append(
            (ERROR, record.mask_path, "size-mismatch", f"mask size differs from its image: {sizes}")
        )
    if not is_binary_mask(mask):
        values = [int(v) for v in np.unique(mask)[:6]]
        findings.problems.append(
            (
                WARNING,
                record.mask_path,
                "non-binary-mask",
                f"mask is not 0/1 or 0/255 (values such as {values})",
            )
        )
    findings.centroid = centroid_x(binarize_mask(mask))


def inspect_text(record: SampleRecord, findings: RecordFindings) -> None:
    """Parse the caption; compare the parsed label with the metadata label."""
    try:
        parsed = parse_caption(record.caption).label
    except CaptionParseError as exc:
        severity = WARNING if record.label is not None else ERROR
        findings.problems.append((severity, record.image_path, "caption", f"caption cannot be parsed: {exc}"))
        parsed = None
    if record.label is not None and parsed is not None and tuple(parsed) != tuple(record.label):
        findings.problems.append(
            (
                WARNING,
                record.image_path,
                "label-mismatch",
                f"metadata label {list(record.label)} differs from the caption's {list(parsed)}",
            )
        )
    findings.label = record.label if record.label is not None else parsed


def inspect_record(record: SampleRecord) -> RecordFindings:
    findings = RecordFindings()
    inspect_pixels(record, findings)
    inspect_text(record, findings)
    if findings.decoded and findings.label is not None:
        names_lesion = any(findings.label)
        if findings.centroid is None and names_lesion:
            findings.problems.append(
                (WARNING, record.mask_path, "empty-mask", "mask is empty but the caption names a lesion")
            )
        elif findings.centroid is not None and not names_lesion:
            findings.problems.append(
                (
                    WARNING,
                    record.mask_path,
                    "mask-vs-caption",
                    "caption names no lesion but the mask is not empty",
                )
            )
    return findings


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def check_dataset(root: str | Path, format: str = "auto", workers: int | None = None) -> CheckReport:
    """Scan the whole data set; never raises for problems in the data (only for an unknown folder/format)."""
    start = time.perf_counter()
    result = collect_dataset(root, format)
    records = [record for split in SPLITS for record in result.records.get(split, [])]
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        all_findings = list(pool.map(inspect_record, records))
    for record, findings in zip(records, all_findings):
        for severity, path, kind, message in findings.problems:
            add = result.error if severity == ERROR else result.warning
            add(path, None, message, record.split, kind)
    splits = summarise_splits(result, records, all_findings)
    overall = measure_laterality((f.label, f.centroid) for f in all_findings)
    problems = sorted(result.problems, key=problem_order)
    return CheckReport(Path(root), result.format, splits, problems, overall, time.perf_counter() - start)


def problem_order(problem: Problem) -> tuple:
    split_rank = SPLITS.index(problem.split) if problem.split in SPLITS else -1
    kind_rank = KINDS.index(problem.kind) if problem.kind in KINDS else len(KINDS)
    return (problem.severity != ERROR, split_rank, kind_rank, problem.file, problem.row or 0)


def summarise_splits(
    result: ReadResult, records: list[SampleRecord], all_findings: list[RecordFindings]
) -> dict[str, SplitSummary]:
    splits = {name: SplitSummary(samples=len(result.records.get(name, []))) for name in SPLITS}
    pairs: dict[str, list] = {name: [] for name in SPLITS}
    for record, findings in zip(records, all_findings):
        splits[record.split].decoded += findings.decoded
        pairs[record.split].append((findings.label, findings.centroid))
    for problem in result.problems:
        summary = splits.get(problem.split or "")
        if summary is None:
            continue
        summary.kinds[problem.kind] = summary.kinds.get(problem.kind, 0) + 1
        if problem.severity == ERROR:
            summary.errors += 1
        else:
            summary.warnings += 1
    for name in SPLITS:
        splits[name].laterality = measure_laterality(pairs[name])
    return splits


def render_report(report: CheckReport, console, max_listed: int = 100) -> None:
    """A rich summary: one table row per split, the problems (errors first), the laterality verdict."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{report.root} ({report.format})", title_justify="left")
    for column in ("split", "samples", "decoded", "errors", "warnings", "problems", "laterality (share, n)"):
        table.add_column(column, justify="left" if column in ("split", "problems") else "right")
    for name, summary in report.splits.items():
        kinds = (
            ", ".join(f"{kind} {count}" for kind, count in sorted(summary.kinds.items(), key=_kind_rank))
            or "-"
        )
        lat = summary.laterality
        lat_text = "-" if lat is None or lat.share is None else f"{lat.verdict} {lat.share:.0%}, {lat.count}"
        table.add_row(
            name,
            str(summary.samples),
            str(summary.decoded),
            str(summary.errors),
            str(summary.warnings),
            kinds,
            lat_text,
        )
    console.print(table)
    for problem in report.problems[:max_listed]:
        style = "red" if problem.severity == ERROR else "yellow"
        split = f"[{problem.split}] " if problem.split else ""
        console.print(
            f"[{style}]{problem.severity:<7}[/{style}] {escape(split + problem.location)}: {escape(problem.message)}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
    hidden = len(report.problems) - max_listed
    if hidden > 0:
        console.print(f"... and {hidden} more problems (--json lists them all)")
    console.print(f"laterality: {escape(report.laterality.describe())}", highlight=False)
    verdict = "OK" if report.ok else "FAILED"
    console.print(
        f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s) "
        f"in {sum(s.samples for s in report.splits.values())} samples, {report.seconds:.1f} s",
        highlight=False,
    )


def _kind_rank(item: tuple[str, int]) -> int:
    return KINDS.index(item[0]) if item[0] in KINDS else len(KINDS)
