"""Block sampling: confinement to the named zone under both lateralities, probability-driven candidates."""

from __future__ import annotations

import pytest
import torch

from medref_cli.augment.blocks import (
    blocks_fully_inside,
    blocks_to_pixels,
    sample_position_blocks,
    sample_probability_blocks,
)
from medref_cli.augment.regions import region_mask
from medref_cli.errors import MedrefError

CASES = [(lat, k) for lat in ("image", "patient") for k in range(6)]


def one_zone(zone: int, batch: int = 1) -> torch.Tensor:
    labels = torch.zeros(batch, 6, dtype=torch.long)
    labels[:, zone] = 1
    return labels


def block_grid(mask: torch.Tensor, block: int) -> torch.Tensor:
    """(B, gh, gw) bool of the mask's blocks; asserts the mask is block-aligned."""
    b, _, h, w = mask.shape
    cells = mask.view(b, h // block, block, w // block, block)
    full, any_ = cells.all(dim=(2, 4)), cells.any(dim=(2, 4))
    assert torch.equal(full, any_), "mask is not made of whole blocks"
    return full


@pytest.mark.parametrize(("laterality", "zone"), CASES)
def test_every_block_lies_inside_the_named_zone(laterality, zone):
    # 224 x 224, block 16: a zone is rows [0,74.7) [74.7,149.3) [149.3,224) x a half of 112 columns.
    # Blocks fully inside one third: 4 block rows (e.g. upper = block rows 0-3; row 4 spans pixels
    # 64-79 and crosses 74.7); inside a half: 7 block columns -> 28 admissible blocks.
    labels = one_zone(zone)
    region = region_mask(labels, 224, 224, laterality)
    everything = sample_position_blocks(labels, 224, 224, block=16, block_prob=1.0, laterality=laterality)
    assert block_grid(everything, 16).sum().item() == 28
    assert not (everything & ~region).any()
    generator = torch.Generator().manual_seed(zone)
    drawn = sample_position_blocks(
        one_zone(zone, batch=16),
        224,
        224,
        block=16,
        block_prob=0.3,
        laterality=laterality,
        generator=generator,
    )
    assert drawn.any()
    assert not (drawn & ~region).any()
    block_grid(drawn, 16)


def test_union_of_zones_admits_blocks_across_the_zone_border():
    # left upper + left middle = pixel rows 0..148: block rows 0-8 (row 4 now fits) x 7 columns
    labels = torch.tensor([[1, 1, 0, 0, 0, 0]])
    mask = sample_position_blocks(labels, 224, 224, block=16, block_prob=1.0)
    assert block_grid(mask, 16).sum().item() == 9 * 7
    assert mask[0, 0, :144, :112].all() and not mask[0, 0, 144:].any() and not mask[0, 0, :, 112:].any()


def test_empty_label_and_zero_probability_give_empty_masks():
    assert not sample_position_blocks(torch.zeros(2, 6), 64, 64, block=16, block_prob=1.0).any()
    assert not sample_position_blocks(torch.ones(2, 6), 64, 64, block=16, block_prob=0.0).any()


def test_draw_rate_is_close_to_block_prob():
    # 32 samples x 28 admissible blocks = 896 draws at p = 0.08 -> 71.7 expected, sd 8.1
    generator = torch.Generator().manual_seed(7)
    mask = sample_position_blocks(one_zone(0, batch=32), 224, 224, block_prob=0.08, generator=generator)
    assert 40 <= block_grid(mask, 16).sum().item() <= 105


def test_blocks_fully_inside_and_back_to_pixels_with_leftover():
    # 10 x 10 image, block 4: grid 2 x 2, pixel rows/cols 8-9 belong to no block
    region = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    region[..., 0:4, 0:7] = True  # covers block (0,0) fully, block (0,1) only partly
    inside = blocks_fully_inside(region, 4)
    assert inside[0, 0].tolist() == [[True, False], [False, False]]
    pixels = blocks_to_pixels(torch.ones(1, 1, 2, 2, dtype=torch.bool), 10, 10, 4)
    assert pixels[0, 0, :8, :8].all() and not pixels[0, 0, 8:].any() and not pixels[0, 0, :, 8:].any()


def test_probability_blocks_come_from_high_confidence_blocks():
    # 64 x 64 map, block 16: P = 0.9 on pixels [0,32) x [0,32) (four whole blocks), 0.1 elsewhere,
    # plus a block whose mean is 0.5 * 0.9 + 0.5 * 0.1 = 0.5 < delta = 0.55
    probs = torch.full((1, 1, 64, 64), 0.1)
    probs[..., :32, :32] = 0.9
    probs[..., 48:56, 48:64] = 0.9
    mask = sample_probability_blocks(probs, block=16, block_prob=1.0, confidence=0.55)
    assert block_grid(mask, 16)[0].tolist() == [[True, True, False, False], [True, True, False, False],
                                                [False] * 4, [False] * 4]  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    probs8 = probs.expand(8, -1, -1, -1)
    some = sample_probability_blocks(probs8, block=16, block_prob=0.5, confidence=0.55, generator=generator)
    assert some.any() and not (some & (probs8 < 0.55)).any()


@pytest.mark.parametrize("block", [0, 65])
def test_bad_block_size_raises(block):
    with pytest.raises(MedrefError):
        sample_position_blocks(torch.ones(1, 6), 64, 64, block=block)


def test_bad_block_prob_raises():
    with pytest.raises(MedrefError):
        sample_position_blocks(torch.ones(1, 6), 64, 64, block_prob=1.5)
