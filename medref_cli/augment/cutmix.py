"""Naive CutMix (Table 3 "w/ CutMix"): one random rectangle of the partner, captions unchanged.

Box rule (one box per sample, vectorised): the box covers a share ``a`` of the image with
``a ~ U(area_range)`` (default 0.02-0.4) and height/width ratio ``r`` log-uniform in
``aspect_range`` (default 0.3-3.33): ``h = sqrt(a H W r)``, ``w = sqrt(a H W / r)``, rounded
and clipped to 1..H and 1..W; its top-left corner is uniform over the positions where the
whole box fits. The pseudo-mask is the mixed teacher probability thresholded at
``mix_threshold`` (eq. 8 without the lesion gate), and the text is not touched.
"""

from __future__ import annotations

import math

import torch

from medref_cli.augment.blocks import uniform_draw
from medref_cli.augment.mixing import MixResult, mask_is_nonempty, mix_by_mask, partner_indices
from medref_cli.errors import MedrefError


def _check_range(name: str, bounds: tuple[float, float], low: float, high: float) -> None:
    if not low < bounds[0] <= bounds[1] <= high:
        raise MedrefError(f"{name} must satisfy {low} < min <= max <= {high}, got {bounds!r}")


def random_boxes(
    batch: int,
    height: int,
    width: int,
    *,
    area_range: tuple[float, float] = (0.02, 0.4),
    aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(B, 1, H, W) bool: one random rectangle per sample (rule in the module docstring)."""
    _check_range("area_range", area_range, 0.0, 1.0)
    _check_range("aspect_range", aspect_range, 0.0, math.inf)
    draws = uniform_draw((batch, 4), generator, device)
    area = area_range[0] + (area_range[1] - area_range[0]) * draws[:, 0]
    log_lo, log_hi = math.log(aspect_range[0]), math.log(aspect_range[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[:, 1])
    box_h = torch.sqrt(area * height * width * aspect).round().clamp(1, height).long()
    box_w = torch.sqrt(area * height * width / aspect).round().clamp(1, width).long()
    top = torch.floor(draws[:, 2] * (height - box_h + 1)).long()
    left = torch.floor(draws[:, 3] * (width - box_w + 1)).long()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # (B, W)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def cutmix(
    images: torch.Tensor,
    teacher_probs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    area_range: tuple[float, float] = (0.02, 0.4),
    aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
    mix_threshold: float = 0.5,
    partner: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MixResult:
    """Mix each sample with its partner inside one random box; labels and captions unchanged."""
    batch, _, height, width = images.shape
    if partner is None:
        partner = partner_indices(batch, generator, images.device)
    mask = random_boxes(
        batch, height, width, area_range=area_range, aspect_range=aspect_range,
        generator=generator, device=images.device,
    )  # fmt: skip
    mixed_images, mixed_probs, pseudo_mask = mix_by_mask(images, teacher_probs, mask, partner, mix_threshold)
    self_paired = partner == torch.arange(batch, device=partner.device)
    kept = mask_is_nonempty(mask) & ~self_paired
    return MixResult(
        images=mixed_images, probs=mixed_probs, pseudo_mask=pseudo_mask, mask=mask,
        partner=partner, kept=kept, labels=labels, text_mixing=False,
    )  # fmt: skip
