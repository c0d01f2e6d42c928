"""Pair mixing shared by T-PatchMix and CutMix: partners, the lesion gate, eq. 6 and eq. 8.

Shapes: images (B, C, H, W); teacher probabilities and masks (B, 1, H, W); position
labels (B, 6). Sample i is mixed with its partner ``j = partner[i]``; the mask M_i says
which pixels of i are replaced by the same pixels of j. Everything is vectorised over the
batch and runs on the tensors' device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medref_cli.augment.blocks import block_mean, blocks_to_pixels, uniform_draw


@dataclass(frozen=True)
class MixResult:
    """The student's mixed strong view and its mixed teacher target.

    - ``images``: (B, C, H, W) ``(1 - M) * x_i + M * x_j`` (paper eq. 6);
    - ``probs``: (B, 1, H, W) mixed teacher probability ``(1 - M) * P_i + M * P_j``;
    - ``pseudo_mask``: (B, 1, H, W) float 0/1, ``probs >= threshold`` (eq. 8, threshold 0.5);
    - ``mask``: (B, 1, H, W) bool, the final mask M (after the gate, for T-PatchMix);
    - ``partner``: (B,) long, the index j mixed into each i;
    - ``kept``: (B,) bool, the final mask is non-empty (some pixels of j were pasted);
    - ``labels``: (B, 6) position labels of the student captions after mixing (or None when
      no labels were given): for T-PatchMix ``q_i | q_j`` where kept, else ``q_i``; for
      naive CutMix the captions, hence the labels, are unchanged;
    - ``text_mixing``: whether the caption of each kept sample must get span mixing
      ("pos_i and pos_j"): True for T-PatchMix, False for naive CutMix.
    """

    images: torch.Tensor
    probs: torch.Tensor
    pseudo_mask: torch.Tensor
    mask: torch.Tensor
    partner: torch.Tensor
    kept: torch.Tensor
    labels: torch.Tensor | None
    text_mixing: bool


def partner_indices(
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B,) long: ``j = (i + s) mod B`` with one random shift ``s`` in ``1 .. B-1`` per batch.

    A random cyclic shift is a permutation with no fixed point, so no sample is paired with
    itself (for B = 1 the only partner is the sample itself, and mixing is a no-op).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    index = torch.arange(batch_size, device=device)
    if batch_size < 2:
        return index
    shift = 1 + torch.floor(uniform_draw((1,), generator, device) * (batch_size - 1)).long()
    return (index + shift) % batch_size


def lesion_ratio(mask: torch.Tensor, partner_probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B,) r_i = sum(P_j * M_i) / (sum M_i + eps) (paper eq. 7): the lesion share inside M_i."""
    mask_f = mask.float()
    inside = (partner_probs.float() * mask_f).sum(dim=(1, 2, 3))
    return inside / (mask_f.sum(dim=(1, 2, 3)) + eps)


def lesion_gate(
    mask: torch.Tensor, partner_probs: torch.Tensor, delta: float, eps: float = 1e-6
) -> torch.Tensor:
    """(B, 1, H, W) bool: M_hat_i = M_i if r_i >= delta else all False (paper eq. 7).

    An empty mask has r = 0, so it stays empty for any delta > 0.
    """
    passes = lesion_ratio(mask, partner_probs, eps) >= delta
    return mask.bool() & passes[:, None, None, None]


def lesion_gate_per_block(
    mask: torch.Tensor, partner_probs: torch.Tensor, delta: float, block: int
) -> torch.Tensor:
    """(B, 1, H, W) bool: each block of M_i kept only if the mean of P_j over that block is >= delta.

    Not the paper's eq. 7 (one ratio per sample) but a per-patch reading of "delta gates the
    patches"; offered as a setting because the per-sample gate rejects most position-constrained
    masks (blocks drawn over a whole zone rarely lie mostly on the partner's lesion).
    """
    _, _, height, width = mask.shape
    confident = blocks_to_pixels(block_mean(partner_probs, block) >= delta, height, width, block)
    return mask.bool() & confident


def mix_by_mask(
    images: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor,
    partner: torch.Tensor,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste partner pixels where ``mask`` is True: (mixed images, mixed probs, pseudo-mask).

    For a binary M, ``torch.where(M, x_j, x_i)`` equals ``(1 - M) x_i + M x_j`` exactly
    (eq. 6), and likewise for the teacher probabilities; the pseudo-mask is
    ``1[mixed probs >= threshold]`` as a float tensor (eq. 8 uses 0.5).
    """
    mask = mask.bool()
    mixed_images = torch.where(mask, images[partner], images)
    mixed_probs = torch.where(mask, teacher_probs[partner], teacher_probs)
    pseudo_mask = (mixed_probs >= threshold).float()
    return mixed_images, mixed_probs, pseudo_mask


def mask_is_nonempty(mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the (B, 1, H, W) mask has at least one True pixel."""
    return mask.flatten(1).any(dim=1)
