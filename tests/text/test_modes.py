"""Text modes of `medref evaluate --text-mode`, with worked values."""

from __future__ import annotations

import pytest

from medref_cli.errors import MedrefError
from medref_cli.text.modes import (
    check_mode,
    check_rate,
    constant_caption,
    mode_captions,
    removal_chosen,
    remove_positions,
    removed_captions,
    shuffled_order,
    swapped_labels,
)
from medref_cli.text.positions import parse_caption

BILATERAL = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
LEFT = "unilateral pulmonary infection, one infected area, upper middle left lung."
RIGHT = "unilateral pulmonary infection, one infected area, lower right lung."
NONE = "no pulmonary infection, zero infected areas."
IDS = [f"img{i}" for i in range(10)]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (BILATERAL, "bilateral pulmonary infection, two infected areas."),
        (LEFT, "unilateral pulmonary infection, one infected area."),
        (NONE, NONE),  # nothing positional: unchanged
        # PosAug's placeholders go too (the reference removes them)
        ("bilateral pulmonary infection, two infected areas, [UNK_POS] and a region of the lung.",
         "bilateral pulmonary infection, two infected areas."),
        ("unilateral pulmonary infection, one infected area, all right lung", "unilateral pulmonary infection, one infected area"),
        ("Bilateral pulmonary infection, three infected areas, lower left lung and [UNK_POS] and lower right lung..",
         "Bilateral pulmonary infection, three infected areas.."),
    ],
)
def test_remove_positions_worked_values(caption, expected):
    assert remove_positions(caption) == expected


def test_removed_caption_names_no_zone_and_keeps_the_rest():
    removed = remove_positions(BILATERAL)
    assert "lung" not in removed and "left" not in removed and "right" not in removed
    assert removed.startswith("bilateral pulmonary infection, two infected areas")


def test_which_images_lose_their_phrase_at_half():
    # sha256("42|img<k>")[:8] / 2**64 is 0.957 0.954 0.594 0.331 0.406 0.297 0.135 0.962 0.042 0.392
    assert removal_chosen(IDS, 0.5, 42) == [False, False, False, True, True, True, True, False, True, True]
    # another seed, another draw
    assert removal_chosen(IDS, 0.5, 0) != removal_chosen(IDS, 0.5, 42)


def test_removal_is_independent_of_batch_order_and_of_the_other_images():
    whole = dict(zip(IDS, removal_chosen(IDS, 0.5, 42)))
    reversed_ids = IDS[::-1]
    assert removal_chosen(reversed_ids, 0.5, 42) == [whole[i] for i in reversed_ids]
    for start in range(0, 10, 3):  # in batches of 3
        batch = IDS[start:start + 3]
        assert removal_chosen(batch, 0.5, 42) == [whole[i] for i in batch]


def test_removal_rates_zero_and_one_and_nesting():
    assert removal_chosen(IDS, 0.0, 42) == [False] * 10
    assert removal_chosen(IDS, 1.0, 42) == [True] * 10
    # a larger rate removes a superset: the images of 0.3 lose their phrase at 0.5 too
    low, high = removal_chosen(IDS, 0.3, 42), removal_chosen(IDS, 0.5, 42)
    assert all(h for lo, h in zip(low, high) if lo) and sum(low) == 3


def test_removed_captions_change_exactly_the_chosen_images():
    captions = [BILATERAL] * 10
    out = removed_captions(IDS, captions, 0.5, 42)
    assert [o != c for o, c in zip(out, captions)] == removal_chosen(IDS, 0.5, 42)


def test_swapped_is_an_involution_and_flips_the_label():
    for caption in (BILATERAL, LEFT, RIGHT, NONE, "Left lung and RIGHT lung"):
        once = mode_captions("swapped", ["a"], [caption])[0]
        assert mode_captions("swapped", ["a"], [once])[0] == caption
    swapped_left = mode_captions("swapped", ["a"], [LEFT])[0]
    assert swapped_left == "unilateral pulmonary infection, one infected area, upper middle right lung."
    assert parse_caption(swapped_left).label == (0, 0, 0, 1, 1, 0)
    assert swapped_labels([(1, 1, 0, 0, 0, 0)]) == [(0, 0, 0, 1, 1, 0)]


def test_constant_uses_one_string_the_most_frequent():
    captions = [LEFT, RIGHT, LEFT, BILATERAL, RIGHT, LEFT]
    assert constant_caption(captions) == LEFT
    assert constant_caption([LEFT, RIGHT]) == RIGHT  # a tie: the first in sorted order ("lower" < "upper")
    out = mode_captions("constant", [str(i) for i in range(6)], captions, constant=constant_caption(captions))
    assert set(out) == {LEFT} and len(out) == 6


def test_shuffled_is_a_seeded_permutation():
    assert shuffled_order(6, 0) == [4, 2, 1, 0, 5, 3]
    assert shuffled_order(6, 1) == [2, 3, 5, 0, 4, 1]
    assert sorted(shuffled_order(50, 7)) == list(range(50))
    captions = [f"caption {i}" for i in range(6)]
    out = mode_captions("shuffled", [str(i) for i in range(6)], captions, seed=0)
    assert out == ["caption 4", "caption 2", "caption 1", "caption 0", "caption 5", "caption 3"]
    assert sorted(out) == sorted(captions)
    assert mode_captions("shuffled", [str(i) for i in range(6)], captions, seed=0) == out


def test_full_and_soft_modes():
    captions = [BILATERAL] * 10
    assert mode_captions("full", IDS, captions) == captions
    # the soft modes read the captions of `removed` at the rate
    for mode in ("oracle_soft", "soft_image"):
        assert mode_captions(mode, IDS, captions, rate=0.5, seed=42) == removed_captions(IDS, captions, 0.5, 42)


def test_bad_mode_and_rate_say_why():
    with pytest.raises(MedrefError, match="--text-mode must be one of full, removed, constant, shuffled"):
        check_mode("blank")
    for rate in (-0.1, 1.5):
        with pytest.raises(MedrefError, match=r"--removal-rate is a share of the images in \[0, 1\]"):
            check_rate(rate)


def test_mode_positions_follow_the_caption_given():
    from medref_cli.text.modes import mode_positions

    labels = [(1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 1), (0, 0, 0, 0, 0, 0)]
    assert mode_positions("full", labels) == labels
    assert mode_positions("oracle_soft", labels) == labels
    assert mode_positions("removed", labels) == [(0,) * 6] * 3
    assert mode_positions("swapped", labels) == [(0, 0, 0, 1, 0, 0), (0, 1, 1, 0, 0, 0), (0,) * 6]
    assert mode_positions("constant", labels, constant_label=(0, 0, 1, 0, 0, 1)) == [(0, 0, 1, 0, 0, 1)] * 3
    order = shuffled_order(3, 5)
    assert mode_positions("shuffled", labels, seed=5) == [labels[j] for j in order]
    assert mode_positions("soft_image", labels) is None


def test_zones_named_is_the_union_of_every_zone_phrase():
    from medref_cli.text.positions import zones_named

    assert zones_named(BILATERAL) == (0, 0, 1, 0, 0, 1)
    assert zones_named("opacity in the upper left lung and all right lung") == (1, 0, 0, 1, 1, 1)
    assert zones_named(NONE) == (0,) * 6
