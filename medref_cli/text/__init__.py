"""Positional phrases of captions (-> 6-bit labels, spans) and the text-side augmentations.

May import: config and the base modules; not ledger (beside it).
"""

from medref_cli.text.augment import (
    UNK_POS,
    flip_label,
    laterality_conflict,
    mix_captions,
    mix_spans,
    posaug,
    student_captions,
    swap_sides,
    text_strong,
)
from medref_cli.text.positions import (
    ZONES,
    CaptionParseError,
    CaptionPosition,
    compose_caption,
    find_position_spans,
    parse_caption,
    position_phrase,
    union_labels,
)

__all__ = [
    "UNK_POS",
    "ZONES",
    "CaptionParseError",
    "CaptionPosition",
    "compose_caption",
    "find_position_spans",
    "flip_label",
    "laterality_conflict",
    "mix_captions",
    "mix_spans",
    "parse_caption",
    "posaug",
    "position_phrase",
    "student_captions",
    "swap_sides",
    "text_strong",
    "union_labels",
]
