"""Zone geometry: where each of the six lung zones of a position label lies on an H x W image.

Conventions (the 6-bit label order is the data's: left upper, left middle, left lower,
right upper, right middle, right lower):

- **Sides.** A pixel column ``c`` belongs to the image's left half when its centre
  ``c + 0.5`` lies before ``W / 2``, else to the right half (for odd ``W`` the middle column
  goes right). ``laterality="image"``: a caption's "left" is the image's left half (QaTa-COV19
  captions follow this). ``laterality="patient"``: "left" is the patient's left, which a
  chest radiograph shows on the image's right half.
- **Levels.** Rows are split into equal thirds (upper, middle, lower) of a horizontal band
  ``row_band = (top, bottom)`` given as fractions of ``H``; by default the band is the whole
  image height. A row belongs to the third that holds its centre ``r + 0.5``; rows outside
  the band belong to no zone.

All functions are pure tensor code: batched, device-agnostic, no Python loop over samples.
"""

from __future__ import annotations

import torch

from medref_cli.errors import MedrefError

LATERALITIES = ("image", "patient")
NUM_ZONES = 6


def _check_laterality(laterality: str) -> None:
    if laterality not in LATERALITIES:
        raise MedrefError(f"laterality must be one of {', '.join(LATERALITIES)}, got {laterality!r}")


def _check_row_band(row_band: tuple[float, float]) -> None:
    top, bottom = row_band
    if not 0.0 <= top < bottom <= 1.0:
        raise MedrefError(f"row_band must satisfy 0 <= top < bottom <= 1, got {row_band!r}")


def image_left_half_columns(width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(W,) bool: True for the columns of the image's left half (column centre before W/2)."""
    centres = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    return centres < width / 2.0


def level_of_rows(
    height: int, row_band: tuple[float, float] = (0.0, 1.0), device: torch.device | str | None = None
) -> torch.Tensor:
    """(H,) long: 0 upper, 1 middle, 2 lower, -1 for rows outside ``row_band``."""
    _check_row_band(row_band)
    top, bottom = row_band
    centres = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height
    relative = (centres - top) / (bottom - top)
    level = torch.floor(relative * 3.0).long()
    inside = (relative >= 0.0) & (relative < 1.0)
    return torch.where(inside, level, torch.full_like(level, -1))


def zone_masks(
    height: int,
    width: int,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(6, H, W) bool: the pixel region of each zone, in label bit order.

    Zone ``k`` is side ``k // 3`` (0 = the caption's left, 1 = its right) and level ``k % 3``.
    """
    _check_laterality(laterality)
    image_left = image_left_half_columns(width, device)
    caption_left = image_left if laterality == "image" else ~image_left
    side_columns = torch.stack([caption_left, ~caption_left])  # (2, W)
    level = level_of_rows(height, row_band, device)
    level_rows = torch.stack([level == k for k in range(3)])  # (3, H)
    # zone k = (side k // 3, level k % 3)
    rows = level_rows.repeat(2, 1)  # (6, H): levels 0,1,2,0,1,2
    columns = side_columns.repeat_interleave(3, dim=0)  # (6, W): sides 0,0,0,1,1,1
    return rows[:, :, None] & columns[:, None, :]


def region_mask(
    labels: torch.Tensor,
    height: int,
    width: int,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """(B, 1, H, W) bool: the union of the zones named by each sample's (B, 6) label.

    An all-zero label names no zone and gives an empty region.
    """
    if labels.ndim != 2 or labels.shape[1] != NUM_ZONES:
        raise MedrefError(f"position labels must have shape (B, 6), got {tuple(labels.shape)}")
    zones = zone_masks(height, width, laterality, row_band, device=labels.device)
    # counts[b, p] = number of named zones that contain pixel p
    counts = labels.bool().float() @ zones.flatten(1).float()  # (B, H*W)
    return (counts > 0).view(labels.shape[0], 1, height, width)
