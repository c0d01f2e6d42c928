"""Text-side augmentations, pure Python, seeded by a `random.Random`.

- PosAug (student text only): the positional span becomes `[UNK_POS]` with probability rho,
  otherwise a location-agnostic phrase.
- Span mixing for T-PatchMix, and the laterality rule that disables position-constrained mixing.
- TextStrong (Table 3 ablation): synonym replacement + random deletion of non-positional words.
- SPC text side: swap left/right words for a horizontally flipped image, and flip the label.

Spans come from :func:`medref_cli.text.positions.find_position_spans` (lenient, no template
check), so these work on any caption; one without a positional phrase passes through unchanged.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from medref_cli.text.positions import check_label, find_position_spans

UNK_POS = "[UNK_POS]"
DEFAULT_FUZZ_PHRASE = "a region of the lung"

# meaning-preserving substitutes for the template's non-positional words
SYNONYMS: dict[str, tuple[str, ...]] = {
    "pulmonary": ("lung",),
    "infection": ("involvement", "disease", "opacity"),
    "infected": ("affected", "involved", "diseased"),
    "area": ("region", "site", "focus"),
    "areas": ("regions", "sites", "foci"),
    "unilateral": ("one-sided",),
    "bilateral": ("two-sided",),
    "one": ("1",),
    "two": ("2",),
    "three": ("3",),
    "four": ("4",),
    "five": ("5",),
    "six": ("6",),
}

_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_SIDE_WORD_RE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def replace_spans(text: str, spans: Sequence[tuple[int, int]], replacement: str) -> str:
    """text with every span replaced by `replacement` (spans must not overlap)."""
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def posaug(caption: str, rng: random.Random, rho: float = 0.5, phrase: str = DEFAULT_FUZZ_PHRASE) -> str:
    """PosAug: with probability rho the positional span(s) become `[UNK_POS]`, else `phrase`.

    One draw per caption (all its spans get the same edit). A caption without a positional
    phrase is returned unchanged and consumes no random number.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho is a probability in [0, 1], got {rho}")
    spans = find_position_spans(caption)
    if not spans:
        return caption
    replacement = UNK_POS if rng.random() < rho else phrase
    return replace_spans(caption, spans, replacement)


def mix_spans(caption_i: str, caption_j: str) -> str:
    """Span mixing: caption i with its positional span replaced by "pos_i and pos_j".

    pos_i is the text of i's first span, pos_j the text of j's span(s) (joined by "and").
    When either caption names no position, caption i is returned unchanged. The result keeps
    the rest of caption i (its extent and count words), so it need not parse as a template
    caption; its label is `union_labels(label_i, label_j)`.
    """
    spans_i = find_position_spans(caption_i)
    spans_j = find_position_spans(caption_j)
    if not spans_i or not spans_j:
        return caption_i
    pos_j = " and ".join(caption_j[a:b] for a, b in spans_j)
    end = spans_i[0][1]
    return f"{caption_i[:end]} and {pos_j}{caption_i[end:]}"


def _only_left(label: tuple[int, ...]) -> bool:
    return any(label[:3]) and not any(label[3:])


def _only_right(label: tuple[int, ...]) -> bool:
    return any(label[3:]) and not any(label[:3])


def laterality_conflict(label_i: Sequence[int], label_j: Sequence[int]) -> bool:
    """True when the labels name opposite sides only (one only-left, the other only-right).

    This is the rule that disables position-constrained T-PatchMix for the pair.
    """
    a, b = check_label(label_i), check_label(label_j)
    return (_only_left(a) and _only_right(b)) or (_only_right(a) and _only_left(b))


def swap_sides(caption: str) -> str:
    """The words left and right swapped (case kept), for a horizontally flipped image (SPC)."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE_WORD_RE.sub(swap, caption)


def flip_label(label: Sequence[int]) -> tuple[int, ...]:
    """The label of the horizontally flipped image: left bits <-> right bits."""
    bits = check_label(label)
    return bits[3:] + bits[:3]


def _inside_any(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= start and end <= b for a, b in spans)


def _tidy(text: str) -> str:
    """Collapse the spaces and stray commas that deleting words leaves behind."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return re.sub(r"^[\s,]+", "", text).strip()


def _match_case(template: str, word: str) -> str:
    return word.capitalize() if template[:1].isupper() else word


def text_strong(caption: str, rng: random.Random, p_synonym: float = 0.3, p_delete: float = 0.1) -> str:
    """TextStrong: each non-positional word is deleted with p_delete, else (if it has synonyms)
    replaced by a random synonym with p_synonym. Words inside positional spans are never touched.

    At least one non-positional word is kept, so the caption never shrinks to its phrase alone.
    """
    for name, p in (("p_synonym", p_synonym), ("p_delete", p_delete)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {p}")
    protected = find_position_spans(caption)
    words = [m for m in _WORD_RE.finditer(caption) if not _inside_any(m.start(), m.end(), protected)]
    edits: list[tuple[int, int, str]] = []
    kept = len(words)
    for match in words:
        word = match.group(0)
        if kept > 1 and rng.random() < p_delete:
            edits.append((match.start(), match.end(), ""))
            kept -= 1
            continue
        choices = SYNONYMS.get(word.lower())
        if choices and rng.random() < p_synonym:
            edits.append((match.start(), match.end(), _match_case(word, rng.choice(choices))))
    if not edits:
        return caption
    out = caption
    for start, end, replacement in reversed(edits):
        out = out[:start] + replacement + out[end:]
    return _tidy(out)


def student_captions(
    captions: Sequence[str],
    rng: random.Random,
    *,
    posaug_on: bool = True,
    rho: float = 0.5,
    phrase: str = DEFAULT_FUZZ_PHRASE,
    text_strong_on: bool = False,
) -> list[str]:
    """The student's text for a batch: TextStrong (if on), then PosAug (if on), per caption."""
    out = []
    for caption in captions:
        if text_strong_on:
            caption = text_strong(caption, rng)
        if posaug_on:
            caption = posaug(caption, rng, rho=rho, phrase=phrase)
        out.append(caption)
    return out


def student_captions_from_config(captions: Sequence[str], rng: random.Random, ssl) -> list[str]:
    """`student_captions` with the switches of an `SSLConfig` (posaug, posaug_rho, posaug_phrase,
    text_strong)."""
    return student_captions(
        captions,
        rng,
        posaug_on=ssl.posaug,
        rho=ssl.posaug_rho,
        phrase=ssl.posaug_phrase,
        text_strong_on=ssl.text_strong,
    )


def mix_captions(captions: Sequence[str], partners: Sequence[int], mixed: Sequence[bool]) -> list[str]:
    """Span mixing over a batch: caption k becomes mix_spans(captions[k], captions[partners[k]])
    where mixed[k] is true (its T-PatchMix mask was kept), else stays as it is."""
    if not len(captions) == len(partners) == len(mixed):
        raise ValueError("captions, partners and mixed must have the same length")
    return [
        mix_spans(caption, captions[partner]) if keep else caption
        for caption, partner, keep in zip(captions, partners, mixed)
    ]
