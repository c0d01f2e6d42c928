"""Text augmentations: PosAug, span mixing, laterality rule, TextStrong, SPC side swap."""

from __future__ import annotations

import itertools
import random

import pytest

from medref_cli.config.schema import SSLConfig
from medref_cli.text.augment import (
    UNK_POS,
    first_phrase_label,
    flip_label,
    laterality_conflict,
    mix_captions,
    mix_spans,
    posaug,
    posaug_variants,
    student_captions,
    student_captions_from_config,
    swap_sides,
    text_strong,
)
from medref_cli.text.positions import (
    compose_caption,
    find_position_spans,
    find_zone_phrase_spans,
    parse_caption,
    union_labels,
)

BILATERAL = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
LEFT = "unilateral pulmonary infection, one infected area, upper left lung."
RIGHT = "unilateral pulmonary infection, one infected area, middle lower right lung."
NONE = "No pulmonary infection, zero infected areas."


def test_posaug_outputs():
    # reference setting (each phrase edited with p 0.5): every phrase kept, [UNK_POS] or fuzzed
    outputs = {posaug(BILATERAL, random.Random(seed)) for seed in range(200)}
    assert outputs == set(posaug_variants(BILATERAL)) and len(outputs) == 9
    assert BILATERAL in outputs
    # every phrase edited (the PosAug paragraph read alone): no phrase survives
    edited = {posaug(BILATERAL, random.Random(seed), edit_prob=1.0) for seed in range(200)}
    assert edited == {
        f"bilateral pulmonary infection, two infected areas, {a} and {b}."
        for a in (UNK_POS, "a region of the lung") for b in (UNK_POS, "a region of the lung")
    }
    assert posaug(LEFT, random.Random(0), rho=0.0, phrase="somewhere in the chest", edit_prob=1.0) == (
        "unilateral pulmonary infection, one infected area, somewhere in the chest."
    )


@pytest.mark.parametrize("seed", range(8))
def test_posaug_draws_per_phrase_against_edit_prob_then_rho(seed):
    rng = random.Random(seed)
    expected = []
    for phrase in ("lower left lung", "lower right lung"):
        if rng.random() < 0.4:
            expected.append(UNK_POS if rng.random() < 0.3 else "a region of the lung")
        else:
            expected.append(phrase)
    out = posaug(BILATERAL, random.Random(seed), rho=0.3, edit_prob=0.4)
    assert out == f"bilateral pulmonary infection, two infected areas, {expected[0]} and {expected[1]}."


def test_half_of_the_phrases_survive_posaug_at_the_reference_setting():
    """Reference `pos_token_dropout(p_mask=0.5, mode="mix")`: each phrase edited with p 0.5, an edited
    phrase [UNK_POS] or fuzzed 50/50 (the config defaults); so ~50% of phrases survive."""
    captions = [BILATERAL, LEFT, RIGHT] * 1000  # 4000 zone phrases
    out = student_captions_from_config(captions, random.Random(1234), SSLConfig())
    phrases = sum(len(find_zone_phrase_spans(c)) for c in captions)
    survived = sum(len(find_zone_phrase_spans(c)) for c in out)
    unk = sum(c.count(UNK_POS) for c in out)
    fuzzed = sum(c.count("a region of the lung") for c in out)
    assert phrases == 4000 and survived + unk + fuzzed == phrases
    # binomial sd = sqrt(4000 * 0.25) = 31.6; allow 4 sd
    assert abs(survived - 2000) <= 127
    assert abs(unk - fuzzed) <= 4 * (phrases / 2 * 0.25) ** 0.5 * 2


@pytest.mark.parametrize("rho", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_posaug_rate_on_fixed_seed(rho):
    rng = random.Random(1234)
    n = 4000
    unk = sum(posaug(RIGHT, rng, rho=rho, edit_prob=1.0).count(UNK_POS) for _ in range(n))
    # binomial sd <= sqrt(n)/2 = 32; allow 4 sd
    assert abs(unk - rho * n) <= 128
    if rho in (0.0, 1.0):
        assert unk == rho * n


def test_posaug_leaves_caption_without_phrase_and_rng_untouched():
    rng = random.Random(7)
    state = rng.getstate()
    assert posaug(NONE, rng) == NONE
    assert rng.getstate() == state
    with pytest.raises(ValueError):
        posaug(BILATERAL, rng, rho=1.5)
    with pytest.raises(ValueError, match="edit_prob"):
        posaug(BILATERAL, rng, edit_prob=-0.1)


def test_first_phrase_label():
    assert first_phrase_label(BILATERAL) == (0, 0, 1, 0, 0, 0)
    assert first_phrase_label(RIGHT) == (0, 0, 0, 0, 1, 1)
    assert first_phrase_label("x, [UNK_POS] and upper right lung.") == (0, 0, 0, 1, 0, 0)
    assert first_phrase_label(NONE) == (0,) * 6


@pytest.mark.parametrize(
    ("caption_i", "caption_j", "expected"),
    [
        (LEFT, BILATERAL, "unilateral pulmonary infection, one infected area, upper left lung and lower left lung."),
        (
            BILATERAL,
            RIGHT,
            (
                "bilateral pulmonary infection, two infected areas, "
                "lower left lung and middle lower right lung and lower right lung."
            ),
        ),
        # the first phrases name the same zones: nothing to add
        (BILATERAL, "unilateral pulmonary infection, one infected area, lower left lung.", BILATERAL),
        # PosAug'd captions: the first phrase that survived
        ("x, [UNK_POS] and lower right lung.", LEFT, "x, [UNK_POS] and lower right lung and upper left lung."),
        ("x, [UNK_POS].", LEFT, "x, [UNK_POS]."),
        (LEFT, NONE, LEFT),
        (NONE, LEFT, NONE),
    ],
)
def test_mix_spans(caption_i, caption_j, expected):
    assert mix_spans(caption_i, caption_j) == expected


def test_mixed_caption_names_the_union_of_zones():
    mixed = mix_spans(BILATERAL, RIGHT)
    label = union_labels(parse_caption(BILATERAL).label, parse_caption(RIGHT).label)
    assert parse_caption(mixed).label == label == (0, 0, 1, 0, 1, 1)


def test_mix_captions_batch():
    captions = [LEFT, BILATERAL, NONE]
    out = mix_captions(captions, partners=[1, 0, 0], mixed=[True, False, True])
    assert out == [mix_spans(LEFT, BILATERAL), BILATERAL, NONE]
    with pytest.raises(ValueError):
        mix_captions(captions, partners=[1], mixed=[True])


@pytest.mark.parametrize(
    ("label_i", "label_j", "conflict"),
    [
        ((1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 1), True),  # only-left vs only-right
        ((0, 1, 1, 0, 0, 0), (0, 0, 0, 1, 1, 1), True),
        ((0, 0, 0, 1, 0, 0), (1, 1, 1, 0, 0, 0), True),  # only-right vs only-left
        ((1, 0, 0, 0, 0, 0), (0, 1, 0, 0, 0, 0), False),  # same side
        ((1, 0, 0, 0, 0, 0), (0, 0, 1, 0, 0, 1), False),  # the other names both sides
        ((0, 0, 1, 0, 0, 1), (0, 0, 1, 0, 0, 1), False),
        ((0, 0, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0), False),  # no position: nothing to conflict with
    ],
)
def test_laterality_conflict(label_i, label_j, conflict):
    assert laterality_conflict(label_i, label_j) is conflict
    assert laterality_conflict(label_j, label_i) is conflict


@pytest.mark.parametrize(
    ("caption", "swapped"),
    [
        (
            BILATERAL,
            "bilateral pulmonary infection, two infected areas, lower right lung and lower left lung.",
        ),
        (LEFT, "unilateral pulmonary infection, one infected area, upper right lung."),
        ("Left and RIGHT, leftover lung; right-sided", "Right and LEFT, leftover lung; left-sided"),
    ],
)
def test_swap_sides(caption, swapped):
    assert swap_sides(caption) == swapped


@pytest.mark.parametrize("label", list(itertools.product((0, 1), repeat=6)))
def test_flip_label_matches_swapped_caption(label):
    assert flip_label(label) == label[3:] + label[:3]
    assert parse_caption(swap_sides(compose_caption(label))).label == flip_label(label)


def _phrases(caption: str) -> list[str]:
    return [caption[a:b] for a, b in find_position_spans(caption)]


@pytest.mark.parametrize("caption", [BILATERAL, LEFT, RIGHT])
def test_text_strong_keeps_positional_words(caption):
    outputs = {text_strong(caption, random.Random(seed), p_synonym=0.5, p_delete=0.3) for seed in range(200)}
    assert len(outputs) > 20  # it does change the text
    for out in outputs:
        assert _phrases(out) == _phrases(caption)
        assert "  " not in out and " ," not in out and not out.startswith(",")


def test_text_strong_is_seeded_and_respects_zero_rates():
    assert text_strong(BILATERAL, random.Random(3)) == text_strong(BILATERAL, random.Random(3))
    assert text_strong(BILATERAL, random.Random(3), p_synonym=0.0, p_delete=0.0) == BILATERAL
    # delete everything it may: the last non-positional word stays
    out = text_strong(BILATERAL, random.Random(0), p_synonym=0.0, p_delete=1.0)
    assert out == "areas, lower left lung and lower right lung."


def test_text_strong_synonyms_only():
    out = text_strong(BILATERAL, random.Random(0), p_synonym=1.0, p_delete=0.0)
    words = out.split()
    assert "pulmonary" not in words and "infected" not in words and "two" not in words
    assert out.endswith(", lower left lung and lower right lung.")


def test_student_captions_applies_text_strong_then_posaug():
    captions = [BILATERAL, NONE]
    out = student_captions(captions, random.Random(0), posaug_on=True, rho=1.0, text_strong_on=False,
                           edit_prob=1.0)
    assert out == ["bilateral pulmonary infection, two infected areas, [UNK_POS] and [UNK_POS].", NONE]
    both = student_captions(captions, random.Random(0), posaug_on=True, rho=1.0, text_strong_on=True,
                            edit_prob=1.0)
    assert UNK_POS in both[0] and find_position_spans(both[0]) == ()
    off = student_captions(captions, random.Random(0), posaug_on=False, text_strong_on=False)
    assert off == captions
    from_config = student_captions_from_config(captions, random.Random(0),
                                               SSLConfig(posaug_rho=1.0, posaug_edit_prob=1.0))
    assert from_config == out
