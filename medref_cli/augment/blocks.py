"""Block-wise binary masks for T-PatchMix: a grid of ``block x block`` squares over the image.

The grid starts at the top-left corner and has ``H // block`` rows and ``W // block``
columns; when ``block`` does not divide the size, the leftover bottom rows / right columns
belong to no block and are never mixed. Every mask is (B, 1, H, W) bool.

Randomness comes from an optional ``torch.Generator``: the uniform numbers are drawn on the
generator's device and then moved to the data's device, so a CPU generator seeded once
gives the same masks on any device (and ``None`` uses the global RNG of the data's device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medref_cli.augment.regions import region_mask
from medref_cli.errors import MedrefError


def uniform_draw(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` on ``device``, from ``generator`` when one is given."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def check_block(block: int, height: int, width: int) -> None:
    if block < 1 or block > min(height, width):
        raise MedrefError(f"block size must be between 1 and {min(height, width)}, got {block}")


def check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise MedrefError(f"{name} must be in [0, 1], got {value}")


def blocks_fully_inside(region: torch.Tensor, block: int) -> torch.Tensor:
    """(B, 1, H//block, W//block) bool: the blocks whose every pixel lies inside ``region``."""
    outside = (~region.bool()).float()
    return F.max_pool2d(outside, kernel_size=block, stride=block) == 0


def block_mean(values: torch.Tensor, block: int) -> torch.Tensor:
    """(B, 1, H//block, W//block): the mean of ``values`` (B, 1, H, W) over each block."""
    return F.avg_pool2d(values.float(), kernel_size=block, stride=block)


def blocks_to_pixels(blocks: torch.Tensor, height: int, width: int, block: int) -> torch.Tensor:
    """(B, 1, H, W) bool: each grid cell of ``blocks`` spread over its pixels, leftovers False."""
    pixels = blocks.bool().repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    pad_bottom, pad_right = height - pixels.shape[2], width - pixels.shape[3]
    if pad_bottom or pad_right:
        pixels = F.pad(pixels, (0, pad_right, 0, pad_bottom), value=False)
    return pixels


def draw_blocks(
    candidates: torch.Tensor, block_prob: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Keep each True cell of ``candidates`` (a block grid) independently with ``block_prob``."""
    check_probability("block_prob", block_prob)
    draws = uniform_draw(tuple(candidates.shape), generator, candidates.device)
    return candidates.bool() & (draws < block_prob)


def sample_position_blocks(
    labels: torch.Tensor,
    height: int,
    width: int,
    *,
    block: int = 16,
    block_prob: float = 0.08,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Position-constrained mask M_i: blocks inside the region named by sample i's label.

    The admissible blocks are those lying entirely inside the union of the zones that the
    (B, 6) label names (see :mod:`medref_cli.augment.regions`); each is drawn independently
    with probability ``block_prob`` (reference 0.08). An empty label gives an empty mask.
    """
    check_block(block, height, width)
    region = region_mask(labels, height, width, laterality, row_band)
    chosen = draw_blocks(blocks_fully_inside(region, block), block_prob, generator)
    return blocks_to_pixels(chosen, height, width, block)


def sample_probability_blocks(
    partner_probs: torch.Tensor,
    *,
    block: int = 16,
    block_prob: float = 0.08,
    confidence: float = 0.55,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Probability-driven mask M_i: blocks from the high-confidence region of the partner's map.

    ``partner_probs`` (B, 1, H, W) is the teacher probability map P_j of sample i's partner j
    (weak view). Rule: a block is a candidate when the mean of P_j over the block is
    >= ``confidence`` (delta); each candidate is drawn independently with ``block_prob``.
    """
    _, _, height, width = partner_probs.shape
    check_block(block, height, width)
    candidates = block_mean(partner_probs, block) >= confidence
    chosen = draw_blocks(candidates, block_prob, generator)
    return blocks_to_pixels(chosen, height, width, block)


def place_blocks(top: torch.Tensor, left: torch.Tensor, size_h: torch.Tensor, size_w: torch.Tensor,
                 keep: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool: one rectangle per sample, rows [top, top+size_h) x cols [left, left+size_w),
    empty where ``keep`` (B,) is False. All arguments are (B,) tensors on one device."""
    rows = torch.arange(height, device=top.device)[None, :]
    cols = torch.arange(width, device=top.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + size_h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + size_w)[:, None])  # (B, W)
    return (in_rows[:, :, None] & in_cols[:, None, :] & keep[:, None, None])[:, None]


def _uniform_start(low: torch.Tensor, high: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    """An integer uniform in [low, high] (inclusive) per sample from uniform draws in [0, 1)."""
    span = (high - low + 1).clamp_min(1)
    return low + torch.minimum(torch.floor(draw * span).long(), span - 1)


def region_boxes(region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounding box (y0, y1, x0, x1) of each sample's (B, 1, H, W) region, end-exclusive, and (B,)
    whether the region is non-empty (an empty region gives a zero box)."""
    rows = region[:, 0].any(dim=2)  # (B, H)
    cols = region[:, 0].any(dim=1)  # (B, W)
    height, width = rows.shape[1], cols.shape[1]
    y0 = rows.float().argmax(dim=1)
    y1 = height - rows.flip(1).float().argmax(dim=1)
    x0 = cols.float().argmax(dim=1)
    x1 = width - cols.flip(1).float().argmax(dim=1)
    return y0, y1, x0, x1, rows.any(dim=1)


def sample_position_block(
    region_labels: torch.Tensor,
    height: int,
    width: int,
    *,
    block: int = 16,
    prob: float = 0.08,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ONE block per sample, with probability ``prob``, at a uniform random place inside the
    bounding box of the zones its (B, 6) label names (the first phrase's region; one side).

    The block is ``block x block`` (clipped to the box when the box is smaller); its corner is any
    pixel that keeps it inside the box, not a grid cell. An empty label gives no block.
    """
    check_block(block, height, width)
    check_probability("prob", prob)
    device = region_labels.device
    region = region_mask(region_labels, height, width, laterality, row_band)
    y0, y1, x0, x1, nonempty = region_boxes(region)
    draws = uniform_draw((3, region_labels.shape[0]), generator, device)
    size_h = torch.clamp(y1 - y0, max=block)
    size_w = torch.clamp(x1 - x0, max=block)
    top = _uniform_start(y0, y1 - size_h, draws[1])
    left = _uniform_start(x0, x1 - size_w, draws[2])
    return place_blocks(top, left, size_h, size_w, nonempty & (draws[0] < prob), height, width)


def sample_probability_block(
    partner_probs: torch.Tensor,
    *,
    block: int = 16,
    prob: float = 0.08,
    confidence: float = 0.55,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ONE block per sample, with probability ``prob``, centred on a uniformly drawn pixel whose
    partner probability P_j is >= ``confidence`` and shifted to lie inside the image; no block
    when P_j has no such pixel."""
    batch, _, height, width = partner_probs.shape
    check_block(block, height, width)
    check_probability("prob", prob)
    device = partner_probs.device
    confident = (partner_probs[:, 0] >= confidence).flatten(1)  # (B, H*W)
    draws = uniform_draw((2, batch), generator, device)
    fire = draws[0] < prob
    # the k-th confident pixel (row-major), k uniform over the confident pixels of the sample
    count = confident.sum(dim=1)
    k = torch.minimum(torch.floor(draws[1] * count).long(), (count - 1).clamp_min(0))
    pixel = (confident.cumsum(dim=1) > k[:, None]).float().argmax(dim=1)
    cy, cx = pixel // width, pixel % width
    top = torch.clamp(cy - block // 2, 0, height - block)
    left = torch.clamp(cx - block // 2, 0, width - block)
    size = torch.full_like(top, block)
    return place_blocks(top, left, size, size, fire & confident.any(dim=1), height, width)
