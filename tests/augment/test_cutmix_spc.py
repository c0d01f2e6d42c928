"""Naive CutMix (one box, text unchanged) and SPC (flip image + maps, swap label sides)."""

from __future__ import annotations

import pytest
import torch

from medref_cli.augment.cutmix import cutmix, random_boxes
from medref_cli.augment.spc import draw_flips, flip_where, spc_flip
from medref_cli.errors import MedrefError


def box_extent(mask: torch.Tensor) -> tuple[int, int]:
    """(height, width) of a (H, W) mask, asserting it is one filled axis-aligned rectangle."""
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    assert height == len(rows) and width == len(cols)
    assert mask.sum().item() == height * width
    return height, width


def test_boxes_are_rectangles_with_area_in_range():
    generator = torch.Generator().manual_seed(0)
    masks = random_boxes(64, 100, 100, area_range=(0.1, 0.3), generator=generator)
    assert masks.shape == (64, 1, 100, 100)
    for mask in masks[:, 0]:
        height, width = box_extent(mask)
        # rounding each side by up to 0.5 px and clipping to the image moves the area a little
        assert 0.1 * 0.75 <= height * width / 10_000 <= 0.3 * 1.25
        assert 0.3 / 1.3 <= height / width <= 1.3 / 0.3


def test_boxes_are_seeded():
    first = random_boxes(4, 32, 32, generator=torch.Generator().manual_seed(5))
    again = random_boxes(4, 32, 32, generator=torch.Generator().manual_seed(5))
    other = random_boxes(4, 32, 32, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_cutmix_mixes_images_and_probs_but_not_text():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 32, 32, generator=generator)
    probs = torch.rand(4, 1, 32, 32, generator=generator)
    labels = torch.tensor([[1, 0, 0, 0, 0, 0]] * 4)
    result = cutmix(images, probs, labels, generator=torch.Generator().manual_seed(2))
    assert result.text_mixing is False and result.labels is labels
    assert result.kept.all()
    assert torch.equal(result.images, torch.where(result.mask, images[result.partner], images))
    mixed = torch.where(result.mask, probs[result.partner], probs)
    assert torch.equal(result.pseudo_mask, (mixed >= 0.5).float())


def test_bad_area_range_raises():
    with pytest.raises(MedrefError):
        random_boxes(1, 8, 8, area_range=(0.5, 0.2))


def test_spc_flips_selected_samples_and_swaps_label_sides():
    images = torch.tensor([[[[1.0, 2.0, 3.0]]], [[[4.0, 5.0, 6.0]]]])
    maps = torch.tensor([[[[1.0, 0.0, 0.0]]], [[[0.0, 0.0, 1.0]]]])
    labels = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]])
    flip = torch.tensor([True, False])
    out_images, out_maps, out_labels = spc_flip(images, maps, labels, flip)
    assert out_images[0, 0].tolist() == [[3.0, 2.0, 1.0]] and out_images[1, 0].tolist() == [[4.0, 5.0, 6.0]]
    assert out_maps[0, 0].tolist() == [[0.0, 0.0, 1.0]] and out_maps[1, 0].tolist() == [[0.0, 0.0, 1.0]]
    # left upper + right lower -> right upper + left lower; sample 1 unchanged
    assert out_labels.tolist() == [[0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]]


def test_double_flip_is_identity_and_draws_are_seeded():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(6, 2, 4, 5, generator=generator)
    flip = draw_flips(6, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(flip, draw_flips(6, 0.5, torch.Generator().manual_seed(4)))
    assert torch.equal(flip_where(flip_where(x, flip), flip), x)
    assert draw_flips(5, 1.0).all() and not draw_flips(5, 0.0).any()
