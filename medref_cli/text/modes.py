"""Text modes of `medref evaluate --text-mode`: what a trained model is given instead of its captions.

Each mode is a pure function of the split's image ids and captions (and a rate and a seed), so
the same mode on the same split gives the same captions in any batch order:

- ``full``: the recorded captions.
- ``removed``: every positional phrase removed (:func:`remove_positions`) from the captions of
  a deterministic share ``rate`` of the images. Image ``id`` is chosen when
  ``sha256(f"{seed}|{id}")``'s first 8 bytes, read as a big-endian integer over 2**64, are below
  ``rate`` (:func:`removal_score`): a property of the id alone, so it does not depend on the
  batch, the order of the split or the other images, and rate 1.0 chooses every image.
- ``constant``: one caption for every image (:func:`constant_caption`: the most frequent caption
  of the captions it is given; `medref evaluate` gives it the train split's). It keeps the data
  set's wording and is the best guess a model could make without reading the image's caption,
  so the drop against ``full`` is what the per-image caption is worth.
- ``shuffled``: the captions permuted across images by a permutation seeded with ``seed``
  (:func:`shuffled_order`).
- ``swapped``: the words left and right exchanged in every caption (an involution).
- ``oracle_soft`` and ``soft_image`` (models with a soft position input only): the captions as in
  ``removed`` at ``rate``; the soft input carries the true label or the positions predicted from
  the image.

Removal follows the reference's rule: every zone phrase is deleted, and so are the placeholders
PosAug writes (``[UNK_POS]``, the location-agnostic phrase); the extent and count clauses stay
("bilateral pulmonary infection, two infected areas."). Unlike the reference, which leaves
"areas, ." behind, the punctuation is tidied, and "all left lung" counts as a zone phrase.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence

from medref_cli.errors import MedrefError
from medref_cli.text.augment import DEFAULT_FUZZ_PHRASE, UNK_POS, flip_label, replace_spans, swap_sides
from medref_cli.text.positions import find_position_spans

TEXT_MODES: tuple[str, ...] = ("full", "removed", "constant", "shuffled", "swapped", "oracle_soft", "soft_image")
# modes that feed the model a soft position input of their own: only a model built with one takes them
SOFT_MODES: tuple[str, ...] = ("oracle_soft", "soft_image")
# modes whose captions lose their positional phrases at a rate
RATE_MODES: tuple[str, ...] = ("removed", *SOFT_MODES)
# modes that draw with the seed (the removal hash, the permutation)
SEEDED_MODES: tuple[str, ...] = ("shuffled", *RATE_MODES)
DEFAULT_REMOVAL_RATE = 1.0  # the reference's evaluation default: every report loses its position
DEFAULT_SEED = 42  # the reference's removal seed

_SPACES_RE = re.compile(r"\s+")
_SPACE_BEFORE_RE = re.compile(r"\s+([,.])")
_DANGLING_AND_RE = re.compile(r"(^|,)\s*and\b|\band\s*(?=[,.]|$)", re.IGNORECASE)
_EMPTY_CLAUSE_RE = re.compile(r",\s*(?=[,.]|$)")


def check_mode(mode: str) -> str:
    if mode not in TEXT_MODES:
        raise MedrefError(f"--text-mode must be one of {', '.join(TEXT_MODES)}, got '{mode}'")
    return mode


def check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise MedrefError(f"--removal-rate is a share of the images in [0, 1], got {rate}")
    return float(rate)


def remove_positions(caption: str, fuzz_phrase: str = DEFAULT_FUZZ_PHRASE) -> str:
    """The caption without its positional phrases, PosAug's placeholders and the "and" between them.

    "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
    -> "bilateral pulmonary infection, two infected areas."; a caption without one is unchanged.
    """
    text = replace_spans(caption, find_position_spans(caption), "")
    text = text.replace(UNK_POS, "")
    text = re.sub(re.escape(fuzz_phrase), "", text, flags=re.IGNORECASE)
    if text == caption:
        return caption
    text = _SPACES_RE.sub(" ", text)
    previous = None
    while previous != text:
        previous = text
        text = _DANGLING_AND_RE.sub(lambda m: m.group(1), text)
        text = _SPACE_BEFORE_RE.sub(r"\1", text)
        text = _EMPTY_CLAUSE_RE.sub("", text)
    return text.strip(" ,")


def removal_score(image_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the image id and the seed: the image loses its phrase below the rate."""
    digest = hashlib.sha256(f"{seed}|{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def removal_chosen(image_ids: Sequence[str], rate: float, seed: int) -> list[bool]:
    """For each id, whether its caption loses its positional phrases at `rate`."""
    check_rate(rate)
    return [removal_score(str(i), seed) < rate for i in image_ids]


def removed_captions(image_ids: Sequence[str], captions: Sequence[str], rate: float, seed: int) -> list[str]:
    """The captions, those of the images `removal_chosen` picks without their positional phrases."""
    _same_length(image_ids, captions)
    chosen = removal_chosen(image_ids, rate, seed)
    return [remove_positions(c) if pick else c for c, pick in zip(captions, chosen)]


def constant_caption(captions: Sequence[str]) -> str:
    """The most frequent caption (ties: the first in sorted order)."""
    if not captions:
        raise MedrefError("no captions to choose the constant caption from")
    counts = Counter(captions)
    return min(counts, key=lambda c: (-counts[c], c))


def shuffled_order(n: int, seed: int) -> list[int]:
    """A permutation of range(n) seeded by `seed`: image k gets the caption of image order[k]."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def swapped_labels(labels: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """The labels of `swapped` captions: left and right bits exchanged."""
    return [flip_label(label) for label in labels]


def mode_captions(mode: str, image_ids: Sequence[str], captions: Sequence[str], *, rate: float = DEFAULT_REMOVAL_RATE,
                  seed: int = DEFAULT_SEED, constant: str | None = None) -> list[str]:
    """The captions the model reads under `mode` (see the module doc); `constant` for mode constant."""
    check_mode(mode)
    _same_length(image_ids, captions)
    if mode == "full":
        return list(captions)
    if mode in RATE_MODES:
        return removed_captions(image_ids, captions, rate, seed)
    if mode == "constant":
        if constant is None:
            raise ValueError("mode constant needs the constant caption")
        return [constant] * len(captions)
    if mode == "shuffled":
        order = shuffled_order(len(captions), seed)
        return [captions[j] for j in order]
    return [swap_sides(c) for c in captions]


def _same_length(image_ids: Sequence[str], captions: Sequence[str]) -> None:
    if len(image_ids) != len(captions):
        raise ValueError(f"{len(image_ids)} image ids but {len(captions)} captions")


def mode_positions(mode: str, labels: Sequence[Sequence[int]], *, seed: int = DEFAULT_SEED,
                   constant_label: Sequence[int] | None = None) -> list[tuple[int, ...]] | None:
    """The soft position input a model with one (ISPG) reads under `mode`, one 6-bit label per image:
    the position of the caption it is given (its route "caption + the caption's own positions"):
    full and oracle_soft: the true labels; removed: zeros for every image (the reference's
    removed_zero); constant: the constant caption's label; shuffled: the labels permuted as the
    captions are; swapped: left and right bits exchanged. soft_image: None (predicted from the image)."""
    check_mode(mode)
    labels = [tuple(int(b) for b in label) for label in labels]
    if mode in ("full", "oracle_soft"):
        return labels
    if mode == "removed":
        return [(0,) * 6] * len(labels)
    if mode == "constant":
        if constant_label is None:
            raise ValueError("mode constant needs the constant caption's label")
        return [tuple(int(b) for b in constant_label)] * len(labels)
    if mode == "shuffled":
        return [labels[j] for j in shuffled_order(len(labels), seed)]
    if mode == "swapped":
        return swapped_labels(labels)
    return None


def removed_where(captions: Sequence[str], chosen: Sequence[bool]) -> list[str]:
    """The captions, those where `chosen` is true without their positional phrases (ISPG's
    removal-aware training draws `chosen` per caption and step)."""
    if len(captions) != len(chosen):
        raise ValueError(f"{len(captions)} captions but {len(chosen)} choices")
    return [remove_positions(c) if pick else c for c, pick in zip(captions, chosen)]
