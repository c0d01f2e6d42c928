"""Caption positions: QaTa/MosMed-style captions <-> the 6-bit position label and phrase spans.

The caption template (QaTa-COV19 refined release, MosMedData+ with position labels)::

    <extent> pulmonary infection, <count> infected area(s), <location>.
    no pulmonary infection, zero infected areas.

- ``<extent>`` is ``unilateral`` (one side named) or ``bilateral`` (both sides named);
- ``<count>`` is a number in words (``zero`` .. ``twenty``) or digits. It counts lesions in
  MosMedData+ ("nine infected areas") and is not tied to the label, so it is not checked
  against it, except that a caption with an infection cannot count zero areas;
- ``<location>`` is one or more zone phrases joined by ``and``; a zone phrase is
  ``<levels> <side> lung``, ``all <side> lung`` or ``<side> lung``, with levels from
  ``upper``, ``middle``, ``lower`` in any order, side ``left`` or ``right``. ``all <side> lung``
  and a side without a level (``left lung``) both name the whole side (all three levels):
  the caption places the infection in that lung without narrowing it down.

Case is ignored, spaces may repeat, the caption may end in any number of full stops
(MosMedData+ has doubled ones) or none. Anything else raises :class:`CaptionParseError`
saying why: the parser never guesses.

**Span.** A span is the character range ``[start, end)`` in the original caption of one run
of zone phrases joined by ``and``: from the first letter of its first zone phrase to the last
letter of its last one, without the surrounding comma, spaces and full stops. In
"bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
the one span covers "lower left lung and lower right lung"; replacing it by
"a region of the lung" gives the grammatical, location-free
"bilateral pulmonary infection, two infected areas, a region of the lung.". A template
caption has one span (none when it names no infection); :func:`find_position_spans` may
find several in free text. The extent word ("bilateral") is not part of the span.

Left and right are the words of the caption; whether they mean the image's or the patient's
side is the data set's convention (``data.laterality``), not this module's concern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medref_cli.errors import MedrefError

# bit order of the 6-bit label
ZONES: tuple[str, ...] = (
    "left upper",
    "left middle",
    "left lower",
    "right upper",
    "right middle",
    "right lower",
)
SIDES: tuple[str, ...] = ("left", "right")
LEVELS: tuple[str, ...] = ("upper", "middle", "lower")

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip

_LEVEL = r"(?:upper|middle|lower)"
# one zone phrase: optional "all" or level words, a side, "lung"
_ZONE_PHRASE = rf"(?:(?:all|{_LEVEL}(?:\s+{_LEVEL})*)\s+)?(?:left|right)\s+lung"
_ZONE_RUN_RE = re.compile(rf"\b{_ZONE_PHRASE}(?:\s+and\s+{_ZONE_PHRASE})*\b", re.IGNORECASE)
_ZONE_PHRASE_RE = re.compile(rf"\b{_ZONE_PHRASE}\b", re.IGNORECASE)
_EXTENT_RE = re.compile(r"^\s*(unilateral|bilateral|no)\s+pulmonary\s+infection\s*$", re.IGNORECASE)
_COUNT_RE = re.compile(r"^\s*([a-z]+|\d+)\s+infected\s+areas?\s*$", re.IGNORECASE)
_TERMINAL_RE = re.compile(r"[\s.]*$")


class CaptionParseError(MedrefError):
    """A caption that does not follow the positional template; the message says why."""


@dataclass(frozen=True)
class CaptionPosition:
    """What a caption says about position: the 6-bit label (ZONES order) and its phrase spans."""

    label: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def find_position_spans(text: str) -> tuple[tuple[int, int], ...]:
    """Spans of the runs of zone phrases ("lower left lung and upper right lung") anywhere in text.

    Lenient (no template check): what the text augmentations replace. Empty when none.
    """
    return tuple(m.span() for m in _ZONE_RUN_RE.finditer(text))


def find_zone_phrase_spans(text: str) -> tuple[tuple[int, int], ...]:
    """Spans of the single zone phrases ("lower left lung") anywhere in text, in order."""
    return tuple(m.span() for m in _ZONE_PHRASE_RE.finditer(text))


def zones_named(text: str) -> tuple[int, ...]:
    """The union of the labels of every zone phrase anywhere in text (lenient: no template check;
    all zeros when it names none)."""
    return union_labels(*(zone_phrase_label(text[a:b]) for a, b in find_zone_phrase_spans(text)))


def zone_phrase_label(phrase: str) -> tuple[int, ...]:
    """The 6-bit label of one zone phrase such as "upper middle left lung" or "all right lung"."""
    words = phrase.lower().split()
    if len(words) < 2 or words[-1] != "lung" or words[-2] not in SIDES:
        raise CaptionParseError(f"'{phrase}' is not a zone phrase like 'lower left lung'")
    side = SIDES.index(words[-2])
    modifiers = words[:-2]
    if not modifiers or modifiers == ["all"]:
        levels = set(range(3))
    elif all(word in LEVELS for word in modifiers):
        levels = {LEVELS.index(word) for word in modifiers}
    else:
        raise CaptionParseError(f"'{phrase}' mixes 'all' with levels or has an unknown level word")
    bits = [0] * 6
    for level in levels:
        bits[3 * side + level] = 1
    return tuple(bits)


def union_labels(*labels: Sequence[int]) -> tuple[int, ...]:
    """Bitwise OR of 6-bit labels (the label of a caption naming all of their zones)."""
    result = [0] * 6
    for label in labels:
        check_label(label)
        result = [a | int(b) for a, b in zip(result, label)]
    return tuple(result)


def check_label(label: Sequence[int]) -> tuple[int, ...]:
    """The label as a tuple of six 0/1 ints; ValueError when it is not one."""
    values = tuple(int(v) for v in label)
    if len(values) != 6 or any(v not in (0, 1) for v in values):
        raise ValueError(f"a position label has six 0/1 entries, got {list(label)!r}")
    return values


def _parse_count(clause: str, caption: str) -> int:
    match = _COUNT_RE.match(clause)
    if not match:
        raise CaptionParseError(
            f"second clause '{clause.strip()}' is not '<number> infected areas': {caption!r}"
        )
    word = match.group(1).lower()
    if word.isdigit():
        return int(word)
    if word == "no":
        return 0
    if word not in NUMBER_WORDS:
        raise CaptionParseError(f"unknown count word '{match.group(1)}': {caption!r}")
    return NUMBER_WORDS.index(word)


def _parse_location(caption: str, start: int, end: int) -> CaptionPosition:
    """The label and span of caption[start:end], which must be one run of zone phrases."""
    clause = caption[start:end]
    match = _ZONE_RUN_RE.fullmatch(clause.strip())
    if not match:
        raise CaptionParseError(
            f"location '{clause.strip()}' is not zone phrases like 'lower left lung and upper right lung': "
            f"{caption!r}"
        )
    offset = start + (len(clause) - len(clause.lstrip()))
    labels = [zone_phrase_label(m.group(0)) for m in _ZONE_PHRASE_RE.finditer(match.group(0))]
    span = (offset + match.start(), offset + match.end())
    return CaptionPosition(label=union_labels(*labels), spans=(span,))


def _check_extent(extent: str, label: tuple[int, ...], caption: str) -> None:
    sides_named = int(any(label[:3])) + int(any(label[3:]))
    if extent == "unilateral" and sides_named != 1:
        raise CaptionParseError(f"'unilateral' but the location names both lungs: {caption!r}")
    if extent == "bilateral" and sides_named != 2:
        raise CaptionParseError(f"'bilateral' but the location names one lung only: {caption!r}")


def parse_caption(caption: str) -> CaptionPosition:
    """Parse a template caption into its position label and phrase span(s); see the module doc."""
    if not isinstance(caption, str) or not caption.strip():
        raise CaptionParseError("empty caption")
    body_end = _TERMINAL_RE.search(caption).start()
    body = caption[:body_end]
    clause_bounds: list[tuple[int, int]] = []
    start = 0
    for match in re.finditer(",", body):
        clause_bounds.append((start, match.start()))
        start = match.end()
    clause_bounds.append((start, body_end))
    clauses = [caption[a:b] for a, b in clause_bounds]

    extent_match = _EXTENT_RE.match(clauses[0])
    if not extent_match:
        raise CaptionParseError(
            f"first clause '{clauses[0].strip()}' is not '<unilateral|bilateral|no> pulmonary infection': "
            f"{caption!r}"
        )
    extent = extent_match.group(1).lower()
    if len(clauses) < 2:
        raise CaptionParseError(f"no '<number> infected areas' clause: {caption!r}")
    count = _parse_count(clauses[1], caption)

    if extent == "no":
        if len(clauses) != 2:
            raise CaptionParseError(f"'no pulmonary infection' followed by a location: {caption!r}")
        if count != 0:
            raise CaptionParseError(f"'no pulmonary infection' but {count} infected areas: {caption!r}")
        return CaptionPosition(label=(0,) * 6, spans=())

    if len(clauses) == 2:
        raise CaptionParseError(f"names an infection but no location: {caption!r}")
    if len(clauses) > 3:
        raise CaptionParseError(f"expected 3 comma-separated clauses, got {len(clauses)}: {caption!r}")
    if count == 0:
        raise CaptionParseError(f"names an infection but zero infected areas: {caption!r}")
    position = _parse_location(caption, *clause_bounds[2])
    _check_extent(extent, position.label, caption)
    return position


def position_phrase(label: Sequence[int]) -> str:
    """The positional phrase of a label, e.g. "lower left lung and middle lower right lung".

    Levels in upper-middle-lower order, left side first. ValueError for the all-zero label,
    which has no phrase.
    """
    bits = check_label(label)
    parts = []
    for side_index, side in enumerate(SIDES):
        levels = [LEVELS[i] for i in range(3) if bits[3 * side_index + i]]
        if levels:
            parts.append(f"{' '.join(levels)} {side} lung")
    if not parts:
        raise ValueError("the all-zero label names no position, so it has no positional phrase")
    return " and ".join(parts)


def compose_caption(label: Sequence[int]) -> str:
    """A caption in the QaTa template for a label, e.g. (0,0,1,0,0,1) ->
    "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."

    The all-zero label gives "no pulmonary infection, zero infected areas." (the MosMedData+
    wording, lower-cased like QaTa). The count is the number of zones, as in QaTa.
    """
    bits = check_label(label)
    zones = sum(bits)
    if zones == 0:
        return "no pulmonary infection, zero infected areas."
    extent = "bilateral" if any(bits[:3]) and any(bits[3:]) else "unilateral"
    areas = "area" if zones == 1 else "areas"
    return f"{extent} pulmonary infection, {NUMBER_WORDS[zones]} infected {areas}, {position_phrase(bits)}."
