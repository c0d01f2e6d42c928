"""SPC (Table 3 "w/ SPC"): flip the image horizontally and swap left/right in the text.

The image side is here: the selected samples' images and maps (teacher probabilities, masks
or pseudo-masks) are mirrored along the width, and their position labels get left and right
exchanged. Swapping the words of the caption is the text side's job
(:func:`medref_cli.text.augment.swap_sides`), for exactly the samples where ``flip`` is True.
The rule holds under either laterality convention: mirroring moves a lesion to the other
side of the image, and the caption's side word changes with it.
"""

from __future__ import annotations

import torch

from medref_cli.augment.blocks import check_probability, uniform_draw
from medref_cli.augment.labels import swap_left_right


def draw_flips(
    batch: int,
    prob: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(B,) bool: which samples to flip, each independently with ``prob``."""
    check_probability("flip prob", prob)
    return uniform_draw((batch,), generator, device) < prob


def flip_where(tensor: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror (B, ..., W) ``tensor`` along its last axis for the samples where ``flip`` (B,)."""
    selector = flip.view(-1, *([1] * (tensor.ndim - 1)))
    return torch.where(selector, tensor.flip(-1), tensor)


def spc_flip(
    images: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor, flip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, maps, labels) with the ``flip`` samples mirrored and their labels side-swapped."""
    flipped_labels = torch.where(flip[:, None], swap_left_right(labels), labels)
    return flip_where(images, flip), flip_where(maps, flip), flipped_labels
