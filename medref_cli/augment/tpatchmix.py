"""T-PatchMix (paper Sec. 2.3, eq. 6-8): image-text alignment-preserving block mixing.

For each unlabeled sample i with partner j (a fixed-point-free permutation of the batch):

1. sample a block-wise mask M_i (block 16), ``draw="single"`` (default, the reference's rule and
   the paper's "the mixed patch"): with probability ``block_prob`` (reference 0.08) ONE block,
   - ``mode="position"``: at a random place inside the region of ``region_labels`` (the caller
     gives the label of the first zone phrase of i's student text);
   - ``mode="probability"``: centred on a random pixel where P_j >= ``delta``;
   ``draw="grid"``: each grid block inside the region (position) or with block mean of
   P_j >= ``delta`` (probability) drawn independently with ``block_prob``.
   In position mode M_i is emptied when i and j conflict in laterality: the labels in
   ``conflict_labels`` name opposite sides only (first-phrase labels name one side each);
2. lesion gate: ``gate="sample"`` (paper eq. 7) keeps M_i only if
   r_i = sum(P_j * M_i) / (sum M_i + eps) >= ``delta``; ``gate="block"`` keeps each block of
   M_i whose own mean of P_j is >= ``delta`` (a per-patch reading of "delta gates the patches");
3. mix the student images and the teacher probabilities with the gated mask and threshold
   the mixed probability at ``mix_threshold`` (0.5) for the hard pseudo-mask. With
   ``paste_before_gate`` (a quirk of the reference) the image gets the drawn, ungated patch.

The caller mixes the caption spans ("pos_i and pos_j") exactly where ``result.kept``.
"""

from __future__ import annotations

import torch

from medref_cli.augment.blocks import (
    sample_position_block,
    sample_position_blocks,
    sample_probability_block,
    sample_probability_blocks,
)
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
DRAWS = ("single", "grid")


def draw_tpatchmix_mask(
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
    draw: str = "single",
    conflict_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, 1, H, W) bool: the drawn block mask M_i of every sample, before the gate (step 1 above).

    ``labels`` (B, 6) name the region of position mode; ``conflict_labels`` (default ``labels``)
    decide the laterality conflict.
    """
    if mode not in TPATCHMIX_MODES:
        raise MedrefError(f"T-PatchMix mode must be one of {', '.join(TPATCHMIX_MODES)}, got {mode!r}")
    if draw not in DRAWS:
        raise MedrefError(f"T-PatchMix draw must be one of {', '.join(DRAWS)}, got {draw!r}")
    _, _, height, width = teacher_probs.shape
    if mode == "position":
        sampler = sample_position_block if draw == "single" else sample_position_blocks
        kwargs = {"prob": block_prob} if draw == "single" else {"block_prob": block_prob}
        mask = sampler(labels, height, width, block=block, laterality=laterality, row_band=row_band,
                       generator=generator, **kwargs)
        sides = labels if conflict_labels is None else conflict_labels.to(labels.device)
        compatible = ~laterality_conflict(sides, sides[partner])
        return mask & compatible[:, None, None, None]
    partner_probs = teacher_probs[partner]
    if draw == "single":
        return sample_probability_block(partner_probs, block=block, prob=block_prob, confidence=delta,
                                        generator=generator)
    return sample_probability_blocks(partner_probs, block=block, block_prob=block_prob, confidence=delta,
                                     generator=generator)


def gate_mask(mask: torch.Tensor, partner_probs: torch.Tensor, delta: float, gate: str, block: int) -> torch.Tensor:
    """M_hat_i: the lesion gate of step 2 above."""
    if gate not in GATES:
        raise MedrefError(f"T-PatchMix gate must be one of {', '.join(GATES)}, got {gate!r}")
    if gate == "block":
        return lesion_gate_per_block(mask, partner_probs, delta, block)
    return lesion_gate(mask, partner_probs, delta)


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
    draw: str = "single",
    conflict_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, 1, H, W) bool: the gated block mask M_hat_i of every sample (steps 1 and 2 above)."""
    if gate not in GATES:
        raise MedrefError(f"T-PatchMix gate must be one of {', '.join(GATES)}, got {gate!r}")
    mask = draw_tpatchmix_mask(
        labels, teacher_probs, partner, mode=mode, block=block, block_prob=block_prob, delta=delta,
        laterality=laterality, row_band=row_band, draw=draw, conflict_labels=conflict_labels,
        generator=generator,
    )  # fmt: skip
    return gate_mask(mask, teacher_probs[partner], delta, gate, block)


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
    draw: str = "single",
    region_labels: torch.Tensor | None = None,
    conflict_labels: torch.Tensor | None = None,
    paste_before_gate: bool = False,
    partner: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MixResult:
    """Mix a batch with T-PatchMix; see the module docstring for the rule.

    ``images`` (B, C, H, W) is the student's strong view, ``teacher_probs`` (B, 1, H, W) the
    teacher's sigmoid output on the weak view, ``labels`` (B, 6) the position labels of the
    student captions (united with the partner's where kept). ``region_labels`` (default
    ``labels``) name the region of position mode, ``conflict_labels`` (default: the region
    labels) decide the laterality conflict. ``partner`` fixes the pairing; by default it is drawn
    with :func:`partner_indices` from ``generator`` (drawn before the blocks, so one seeded
    generator reproduces the whole result).
    """
    batch = images.shape[0]
    labels = labels.to(images.device)
    region = labels if region_labels is None else region_labels.to(images.device)
    if partner is None:
        partner = partner_indices(batch, generator, images.device)
    if gate not in GATES:
        raise MedrefError(f"T-PatchMix gate must be one of {', '.join(GATES)}, got {gate!r}")
    drawn = draw_tpatchmix_mask(
        region, teacher_probs, partner, mode=mode, block=block, block_prob=block_prob, delta=delta,
        laterality=laterality, row_band=row_band, draw=draw, conflict_labels=conflict_labels,
        generator=generator,
    )  # fmt: skip
    mask = gate_mask(drawn, teacher_probs[partner], delta, gate, block)
    mixed_images, mixed_probs, pseudo_mask = mix_by_mask(images, teacher_probs, mask, partner, mix_threshold)
    if paste_before_gate:
        mixed_images = torch.where(drawn, images[partner], images)
    self_paired = partner == torch.arange(batch, device=partner.device)
    kept = mask_is_nonempty(mask) & ~self_paired
    mixed_labels = torch.where(kept[:, None], union_labels(labels, labels[partner]), labels)
    return MixResult(
        images=mixed_images, probs=mixed_probs, pseudo_mask=pseudo_mask, mask=mask,
        partner=partner, kept=kept, labels=mixed_labels, text_mixing=True,
    )  # fmt: skip
