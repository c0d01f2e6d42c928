"""Zone geometry under both laterality conventions, with worked pixel ranges."""

from __future__ import annotations

import pytest
import torch

from medref_cli.augment.regions import level_of_rows, region_mask, zone_masks
from medref_cli.errors import MedrefError

ZONE_NAMES = ["left upper", "left middle", "left lower", "right upper", "right middle", "right lower"]


def rectangle(height, width, rows, cols):
    out = torch.zeros(height, width, dtype=torch.bool)
    out[rows[0] : rows[1], cols[0] : cols[1]] = True
    return out


# 96 x 96 image: thirds of rows [0,32) [32,64) [64,96); halves of columns [0,48) [48,96)
ROWS = {"upper": (0, 32), "middle": (32, 64), "lower": (64, 96)}
IMAGE_LEFT, IMAGE_RIGHT = (0, 48), (48, 96)
EXPECTED_COLUMNS = {
    ("image", "left"): IMAGE_LEFT,
    ("image", "right"): IMAGE_RIGHT,
    ("patient", "left"): IMAGE_RIGHT,  # the patient's left is shown on the image's right
    ("patient", "right"): IMAGE_LEFT,
}
CASES = [(lat, k) for lat in ("image", "patient") for k in range(6)]


@pytest.mark.parametrize(("laterality", "zone"), CASES)
def test_each_zone_is_its_rectangle(laterality, zone):
    side, level = ZONE_NAMES[zone].split()
    expected = rectangle(96, 96, ROWS[level], EXPECTED_COLUMNS[(laterality, side)])
    assert torch.equal(zone_masks(96, 96, laterality)[zone], expected)
    label = torch.zeros(1, 6, dtype=torch.long)
    label[0, zone] = 1
    assert torch.equal(region_mask(label, 96, 96, laterality)[0, 0], expected)


def test_region_is_union_of_named_zones_per_sample():
    labels = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    regions = region_mask(labels, 96, 96, "image")
    assert regions.shape == (3, 1, 96, 96) and regions.dtype == torch.bool
    assert torch.equal(regions[0, 0], rectangle(96, 96, (0, 64), IMAGE_LEFT))
    assert torch.equal(regions[1, 0], rectangle(96, 96, (64, 96), (0, 96)))
    assert not regions[2].any()


def test_odd_sizes_use_pixel_centres():
    # W = 5: column centres 0.5 1.5 | 2.5 3.5 4.5 against W/2 = 2.5 -> left = columns 0, 1
    # H = 4: row centres / 4 * 3 = 0.375 1.125 1.875 2.625 -> levels 0 1 1 2
    zones = zone_masks(4, 5, "image")
    assert zones[0].tolist() == [[True, True, False, False, False]] + [[False] * 5] * 3
    assert level_of_rows(4).tolist() == [0, 1, 1, 2]


def test_row_band_restricts_and_splits_the_band():
    # band (0.25, 0.75) of H = 12 covers rows 3..8; relative centre (c/12 - 0.25) / 0.5:
    # row 3 -> 0.083, 4 -> 0.25, 5 -> 0.417, 6 -> 0.583, 7 -> 0.75, 8 -> 0.917
    expected = [-1, -1, -1, 0, 0, 1, 1, 2, 2, -1, -1, -1]
    assert level_of_rows(12, (0.25, 0.75)).tolist() == expected
    region = region_mask(torch.ones(1, 6), 12, 4, "image", row_band=(0.25, 0.75))[0, 0]
    assert region.any(dim=1).tolist() == [r != -1 for r in expected]


@pytest.mark.parametrize("bad", [{"laterality": "radiological"}, {"row_band": (0.5, 0.5)}])
def test_bad_settings_raise_one_line_errors(bad):
    with pytest.raises(MedrefError):
        region_mask(torch.ones(1, 6), 8, 8, **bad)


def test_wrong_label_shape_raises():
    with pytest.raises(MedrefError):
        region_mask(torch.ones(2, 5), 8, 8)
