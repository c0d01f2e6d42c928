"""T-PatchMix (paper Sec. 2.3, eq. 6-8): image-text alignment-preserving block mixing.

For each unlabeled sample i with partner j (a fixed-point-free permutation of the batch):

1. sample a block-wise mask M_i (block 16):
   - ``mode="position"``: blocks inside the coarse region named by i's position label,
     each drawn with ``block_prob`` (reference 0.08); M_i is emptied when i and j conflict
     in laterality (one names only left zones, the other only right zones);
   - ``mode="probability"``: blocks whose mean teacher probability P_j is >= ``delta``,
     each drawn with ``block_prob``;
2. lesion gate: ``gate="sample"`` (paper eq. 7) keeps M_i only if
   r_i = sum(P_j * M_i) / (sum M_i + eps) >= ``delta``; ``gate="block"`` keeps each block of
   M_i whose own mean of P_j is >= ``delta`` (a per-patch reading of the reference's "delta
   gates the patches"; with the per-sample gate few position-constrained masks survive);
3. mix the student images and the teacher probabilities with the gated mask and threshold
   the mixed probability at ``mix_threshold`` (0.5) for the hard pseudo-mask.

The caller mixes the caption spans ("pos_i and pos_j") exactly where ``result.kept``.
"""

from __future__ import annotations

import torch

from medref_cli.augment.blocks import sample_position_blocks, sample_probability_blocks
from medref_cli.augment.labels import laterality_conflict, union_labels
from medref_cli.augment.mixing import (
    MixResult,
    lesion_gate,
    lesion_gate_per_block,
    mask_is_nonempty,
    mix_by_mask,
    partner_indices,
)
from medref_cli.errors import MedrefError

TPATCHMIX_MODES = ("position", "probability")
GATES = ("sample", "block")


def tpatchmix_mask(
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    partner: torch.Tensor,
    *,
    mode: str = "position",
    block: int = 16,
    block_prob: float = 0.08,
    delta: float = 0.55,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
    gate: str = "sample",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, 1, H, W) bool: the gated block mask M_hat_i of every sample (steps 1 and 2 above)."""
    if mode not in TPATCHMIX_MODES:
        raise MedrefError(f"T-PatchMix mode must be one of {', '.join(TPATCHMIX_MODES)}, got {mode!r}")
    if gate not in GATES:
        raise MedrefError(f"T-PatchMix gate must be one of {', '.join(GATES)}, got {gate!r}")
    _, _, height, width = teacher_probs.shape
    partner_probs = teacher_probs[partner]
    if mode == "position":
        mask = sample_position_blocks(
            labels, height, width, block=block, block_prob=block_prob,
            laterality=laterality, row_band=row_band, generator=generator,
        )  # fmt: skip
        compatible = ~laterality_conflict(labels, labels[partner])
        mask = mask & compatible[:, None, None, None]
    else:
        mask = sample_probability_blocks(
            partner_probs, block=block, block_prob=block_prob, confidence=delta, generator=generator
        )
    if gate == "block":
        return lesion_gate_per_block(mask, partner_probs, delta, block)
    return lesion_gate(mask, partner_probs, delta)


def tpatchmix(
    images: torch.Tensor,
    teacher_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    mode: str = "position",
    block: int = 16,
    block_prob: float = 0.08,
    delta: float = 0.55,
    laterality: str = "image",
    row_band: tuple[float, float] = (0.0, 1.0),
    mix_threshold: float = 0.5,
    gate: str = "sample",
    partner: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MixResult:
    """Mix a batch with T-PatchMix; see the module docstring for the rule.

    ``images`` (B, C, H, W) is the student's strong view, ``teacher_probs`` (B, 1, H, W) the
    teacher's sigmoid output on the weak view, ``labels`` (B, 6) the position labels of the
    student captions. ``partner`` fixes the pairing; by default it is drawn with
    :func:`partner_indices` from ``generator`` (drawn before the blocks, so one seeded
    generator reproduces the whole result).
    """
    batch = images.shape[0]
    labels = labels.to(images.device)
    if partner is None:
        partner = partner_indices(batch, generator, images.device)
    mask = tpatchmix_mask(
        labels, teacher_probs, partner, mode=mode, block=block, block_prob=block_prob,
        delta=delta, laterality=laterality, row_band=row_band, gate=gate, generator=generator,
    )  # fmt: skip
    mixed_images, mixed_probs, pseudo_mask = mix_by_mask(images, teacher_probs, mask, partner, mix_threshold)
    self_paired = partner == torch.arange(batch, device=partner.device)
    kept = mask_is_nonempty(mask) & ~self_paired
    mixed_labels = torch.where(kept[:, None], union_labels(labels, labels[partner]), labels)
    return MixResult(
        images=mixed_images, probs=mixed_probs, pseudo_mask=pseudo_mask, mask=mask,
        partner=partner, kept=kept, labels=mixed_labels, text_mixing=True,
    )  # fmt: skip
