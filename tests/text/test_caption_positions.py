"""Caption <-> 6-bit position label and phrase spans (medref_cli.text.positions)."""

from __future__ import annotations

import itertools
import json

import pytest

from medref_cli.errors import MedrefError
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

QATA_1 = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
QATA_2 = "unilateral pulmonary infection, one infected area, middle right lung."
QATA_3 = "bilateral pulmonary infection, five infected areas, upper middle lower left lung and middle lower right lung."

# (caption, label, the text of each span) - worked out by hand
PARSE_CASES = [
    (QATA_1, (0, 0, 1, 0, 0, 1), ["lower left lung and lower right lung"]),
    (QATA_2, (0, 0, 0, 0, 1, 0), ["middle right lung"]),
    (QATA_3, (1, 1, 1, 0, 1, 1), ["upper middle lower left lung and middle lower right lung"]),
    (
        "bilateral pulmonary infection, three infected areas, upper lower left lung and lower right lung.",
        (1, 0, 1, 0, 0, 1),
        ["upper lower left lung and lower right lung"],
    ),
    # MosMedData+ style: capitals, "all", counts above six, doubled full stops
    (
        "Bilateral pulmonary infection, nine infected areas, all left lung and all right lung..",
        (1, 1, 1, 1, 1, 1),
        ["all left lung and all right lung"],
    ),
    (
        "Unilateral pulmonary infection, one infected area, lower left lung..",
        (0, 0, 1, 0, 0, 0),
        ["lower left lung"],
    ),
    (
        "Bilateral pulmonary infection, eleven infected areas, all left lung and middle lower right lung.",
        (1, 1, 1, 0, 1, 1),
        ["all left lung and middle lower right lung"],
    ),
    ("No pulmonary infection, zero infected areas.", (0, 0, 0, 0, 0, 0), []),
    ("no pulmonary infection, zero infected areas", (0, 0, 0, 0, 0, 0), []),
    # a side without a level names the whole side
    ("Unilateral pulmonary infection, two infected areas, right lung.", (0, 0, 0, 1, 1, 1), ["right lung"]),
    (
        "Bilateral pulmonary infection, three infected areas, left lung and upper right lung.",
        (1, 1, 1, 1, 0, 0),
        ["left lung and upper right lung"],
    ),
    # levels in any order, repeated sides joined, digits, no full stop, extra spaces, all capitals
    (
        "unilateral pulmonary infection, 2 infected areas, lower upper left lung",
        (1, 0, 1, 0, 0, 0),
        ["lower upper left lung"],
    ),
    (
        "unilateral pulmonary infection, two infected areas, upper left lung and lower left lung.",
        (1, 0, 1, 0, 0, 0),
        ["upper left lung and lower left lung"],
    ),
    (
        "  BILATERAL PULMONARY INFECTION,  TWO INFECTED AREAS,  LOWER LEFT LUNG  and  UPPER RIGHT LUNG . ",
        (0, 0, 1, 1, 0, 0),
        ["LOWER LEFT LUNG  and  UPPER RIGHT LUNG"],
    ),
]

# (caption, a word the error message must contain)
BAD_CAPTIONS = [
    ("", "empty"),
    ("pneumonia in the lower left lung.", "first clause"),
    ("bilateral pulmonary infection, two infected areas.", "no location"),
    ("bilateral pulmonary infection, lower left lung and lower right lung.", "infected areas"),
    ("bilateral pulmonary infection, many infected areas, lower left lung and lower right lung.", "many"),
    ("bilateral pulmonary infection, two infected areas, lower left lung.", "bilateral"),
    (
        "unilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
        "unilateral",
    ),
    ("unilateral pulmonary infection, one infected area, lower lung.", "location"),
    ("unilateral pulmonary infection, one infected area, basal left lung.", "location"),
    ("unilateral pulmonary infection, one infected area, all lower left lung.", "location"),
    ("unilateral pulmonary infection, one infected area, left lungs.", "location"),
    ("unilateral pulmonary infection, zero infected areas, lower left lung.", "zero"),
    ("no pulmonary infection, two infected areas.", "no pulmonary infection"),
    ("no pulmonary infection, zero infected areas, lower left lung.", "followed by a location"),
    ("bilateral pulmonary infection, two infected areas, lower left lung, lower right lung.", "clauses"),
    ("bilateral pulmonary infection, two infected areas, lower left lung. and lower right lung.", "location"),
]


@pytest.mark.parametrize(("caption", "label", "span_texts"), PARSE_CASES)
def test_parse_caption(caption, label, span_texts):
    position = parse_caption(caption)
    assert isinstance(position, CaptionPosition)
    assert position.label == label
    assert [caption[a:b] for a, b in position.spans] == span_texts


@pytest.mark.parametrize(("caption", "reason"), BAD_CAPTIONS)
def test_unparsable_caption_says_why(caption, reason):
    with pytest.raises(CaptionParseError) as info:
        parse_caption(caption)
    assert isinstance(info.value, MedrefError)
    assert reason.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_span_replacement_gives_location_free_caption():
    position = parse_caption(QATA_1)
    ((start, end),) = position.spans
    fuzzed = QATA_1[:start] + "a region of the lung" + QATA_1[end:]
    assert fuzzed == "bilateral pulmonary infection, two infected areas, a region of the lung."
    assert find_position_spans(fuzzed) == ()


def test_zones_in_bit_order():
    assert ZONES == ("left upper", "left middle", "left lower", "right upper", "right middle", "right lower")


@pytest.mark.parametrize(
    ("label", "phrase", "caption"),
    [
        ((0, 0, 1, 0, 0, 1), "lower left lung and lower right lung", QATA_1),
        ((0, 0, 0, 0, 1, 0), "middle right lung", QATA_2),
        ((1, 1, 1, 0, 1, 1), "upper middle lower left lung and middle lower right lung", QATA_3),
        (
            (1, 1, 1, 1, 1, 1),
            "upper middle lower left lung and upper middle lower right lung",
            (
                "bilateral pulmonary infection, six infected areas, "
                "upper middle lower left lung and upper middle lower right lung."
            ),
        ),
    ],
)
def test_compose_caption_and_phrase(label, phrase, caption):
    assert position_phrase(label) == phrase
    assert compose_caption(label) == caption


def test_compose_no_infection_and_bad_labels():
    assert compose_caption([0] * 6) == "no pulmonary infection, zero infected areas."
    with pytest.raises(ValueError):
        position_phrase([0] * 6)
    with pytest.raises(ValueError):
        compose_caption([1, 0, 0])
    with pytest.raises(ValueError):
        compose_caption([2, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("label", list(itertools.product((0, 1), repeat=6)))
def test_compose_parse_roundtrip_all_64_labels(label):
    caption = compose_caption(label)
    assert parse_caption(caption).label == label


def test_union_labels():
    assert union_labels((1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 1), (1, 1, 0, 0, 0, 0)) == (1, 1, 0, 0, 0, 1)


def test_find_position_spans_in_free_text():
    text = "Opacity in the lower left lung; the right lung is clear and upper middle left lung too"
    spans = find_position_spans(text)
    assert [text[a:b] for a, b in spans] == ["lower left lung", "right lung", "upper middle left lung"]


def test_agrees_with_pseudo_label_on_every_qata_caption(qata_root):
    path = qata_root / "prompts" / "annotation_full.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    annotation = json.loads(path.read_text())
    entries = [entry for split in ("train", "valid", "test") for entry in annotation[split]]
    assert len(entries) == 9258
    disagree = []
    for entry in entries:
        position = parse_caption(entry["caption"])
        if list(position.label) != entry["pseudo_label"]:
            disagree.append(entry["caption"])
        assert len(position.spans) == 1
        start, end = position.spans[0]
        assert entry["caption"][end:] == "."
        assert entry["caption"][:start].endswith("infected areas, ") or entry["caption"][:start].endswith(
            "infected area, "
        )
    assert disagree == []
