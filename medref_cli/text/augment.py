"""Text-side augmentations, pure Python, seeded by a `random.Random`.

- PosAug (student text only): each zone phrase is edited with probability `edit_prob`
  (reference 0.5); an edited phrase becomes `[UNK_POS]` with probability rho, otherwise a
  location-agnostic phrase.
- Span mixing for T-PatchMix ("pos_i and pos_j" from the first zone phrases), the first zone
  phrase of a caption and its label, and the laterality rules that disable position-constrained
  mixing.
- TextStrong (Table 3 ablation): synonym replacement + random deletion of non-positional words.
- SPC text side: swap left/right words for a horizontally flipped image, and flip the label.

Spans come from :func:`medref_cli.text.positions.find_position_spans` (lenient, no template
check), so these work on any caption; one without a positional phrase passes through unchanged.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from medref_cli.text.positions import (
    check_label,
    find_position_spans,
    find_zone_phrase_spans,
    zone_phrase_label,
)

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


def posaug(caption: str, rng: random.Random, rho: float = 0.5, phrase: str = DEFAULT_FUZZ_PHRASE,
           edit_prob: float = 0.5) -> str:
    """PosAug: each zone phrase is edited with probability `edit_prob`; an edited phrase becomes
    `[UNK_POS]` with probability rho, else `phrase`.

    Draws per phrase, in order: one number against `edit_prob`, and for an edited phrase one
    against rho. `edit_prob=1.0` edits every phrase (the paper's PosAug paragraph read alone).
    A caption without a positional phrase is returned unchanged and consumes no random number.
    """
    for name, value in (("rho", rho), ("edit_prob", edit_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {value}")
    edits = []
    for start, end in find_zone_phrase_spans(caption):
        if rng.random() < edit_prob:
            edits.append((start, end, UNK_POS if rng.random() < rho else phrase))
    for start, end, replacement in reversed(edits):
        caption = caption[:start] + replacement + caption[end:]
    return caption


def posaug_variants(caption: str, phrase: str = DEFAULT_FUZZ_PHRASE) -> list[str]:
    """Every text PosAug can make of `caption` (each phrase kept, `[UNK_POS]` or `phrase`), in a
    fixed order, the caption itself first: what a text-feature cache can be primed with."""
    out = [caption]
    for start, end in reversed(find_zone_phrase_spans(caption)):
        out = [t[:start] + r + t[end:] for t in out for r in (t[start:end], UNK_POS, phrase)]
    return list(dict.fromkeys(out))


def first_zone_phrase(caption: str) -> tuple[int, int] | None:
    """The span of the caption's first zone phrase ("lower left lung"), or None."""
    spans = find_zone_phrase_spans(caption)
    return spans[0] if spans else None


def first_phrase_label(caption: str) -> tuple[int, ...]:
    """The 6-bit label of the caption's first zone phrase (all zeros when it names none): the region
    position-constrained T-PatchMix draws in, and the side its laterality rule compares."""
    span = first_zone_phrase(caption)
    return (0,) * 6 if span is None else zone_phrase_label(caption[span[0]:span[1]])


def mix_spans(caption_i: str, caption_j: str) -> str:
    """Span mixing: caption i with its first zone phrase pos_i replaced by "pos_i and pos_j".

    pos_j is caption j's first zone phrase. When either caption names no zone, or both first
    phrases name the same zones, caption i is returned unchanged. The result keeps the rest of
    caption i (its extent and count words), so it need not parse as a template caption.
    """
    span_i, span_j = first_zone_phrase(caption_i), first_zone_phrase(caption_j)
    if span_i is None or span_j is None:
        return caption_i
    pos_i, pos_j = caption_i[span_i[0]:span_i[1]], caption_j[span_j[0]:span_j[1]]
    if zone_phrase_label(pos_i) == zone_phrase_label(pos_j):
        return caption_i
    return f"{caption_i[:span_i[1]]} and {pos_j}{caption_i[span_i[1]:]}"


def _only_left(label: tuple[int, ...]) -> bool:
    return any(label[:3]) and not any(label[3:])


def _only_right(label: tuple[int, ...]) -> bool:
    return any(label[3:]) and not any(label[:3])


def laterality_conflict(label_i: Sequence[int], label_j: Sequence[int]) -> bool:
    """True when the labels name opposite sides only (one only-left, the other only-right).

    `ssl.tpatchmix_conflict: sides` applies it to the captions' labels; the default
    (`first_phrase`) applies it to the labels of the first zone phrases, which name one side each.
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
    edit_prob: float = 0.5,
) -> list[str]:
    """The student's text for a batch: TextStrong (if on), then PosAug (if on), per caption."""
    out = []
    for caption in captions:
        if text_strong_on:
            caption = text_strong(caption, rng)
        if posaug_on:
            caption = posaug(caption, rng, rho=rho, phrase=phrase, edit_prob=edit_prob)
        out.append(caption)
    return out


def student_captions_from_config(captions: Sequence[str], rng: random.Random, ssl) -> list[str]:
    """`student_captions` with the switches of an `SSLConfig` (posaug, posaug_rho, posaug_phrase,
    posaug_edit_prob, text_strong)."""
    return student_captions(
        captions,
        rng,
        posaug_on=ssl.posaug,
        rho=ssl.posaug_rho,
        phrase=ssl.posaug_phrase,
        text_strong_on=ssl.text_strong,
        edit_prob=ssl.posaug_edit_prob,
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
