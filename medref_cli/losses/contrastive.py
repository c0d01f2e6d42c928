"""Image-text contrastive losses: ITCL (paper eq. 9) and the CLIP baseline.

Both take image embeddings ``v`` (B, d) and text embeddings ``u`` (B, d), l2-normalise
them (a no-op for inputs that already are), and form ``S = v u^T / tau``; row ``i`` of ``S``
compares image i with every text, column ``i`` text i with every image. The similarities
are computed in float32 whatever the input dtype (AMP-safe).

ITCL (eq. 9), with soft positives ``A_ij = Jaccard(q_i, q_j)`` from the 6-bit position labels::

    L = -1/(2B) sum_i [ sum_j A_ij log softmax_j(S_ij) / sum_j A_ij
                      + sum_j A_ij log softmax_j(S_ji) / sum_j A_ij ]

The first term is image->text (softmax over the texts of row i), the second text->image
(softmax over the images for text i, i.e. over column i). Each anchor's weights are its
affinities normalised to sum to one. ``A`` is symmetric, so both directions use the same
weights. With ``A = I`` this is exactly the CLIP loss.

Two different samples whose labels are both empty (neither caption names a zone) have an empty
union, where the paper's Jaccard is undefined; as in the reference they get ``A_ij = 0``
(negatives), or 1 with ``empty_matches_empty`` (ssl.itcl_empty_match).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medref_cli.errors import MedrefError


def jaccard_affinity(labels: torch.Tensor, empty_matches_empty: bool = False) -> torch.Tensor:
    """(B, B) float32 A_ij = |q_i & q_j| / |q_i | q_j| of (B, 6) 0/1 labels, with A_ii = 1.

    Two empty labels (both name no zone, e.g. "no pulmonary infection") have an empty union;
    they get A_ij = 0 (the reference's value), or 1 when ``empty_matches_empty`` (they describe
    the same thing). An empty and a non-empty label get 0 (their intersection is empty).
    """
    if labels.ndim != 2:
        raise MedrefError(f"position labels must have shape (B, 6), got {tuple(labels.shape)}")
    q = labels.bool().float()
    intersection = q @ q.T
    sizes = q.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    empty_value = 1.0 if empty_matches_empty else 0.0
    affinity = torch.where(
        union > 0, intersection / union.clamp(min=1.0), torch.full_like(union, empty_value)
    )
    return affinity.fill_diagonal_(1.0)


def similarity_logits(v: torch.Tensor, u: torch.Tensor, tau: float) -> torch.Tensor:
    """(B, B) float32 S = normalise(v) normalise(u)^T / tau."""
    if v.ndim != 2 or v.shape != u.shape:
        raise ValueError(
            f"expected v and u of the same (B, d) shape, got {tuple(v.shape)} and {tuple(u.shape)}"
        )
    if tau <= 0:
        raise MedrefError(f"temperature tau must be > 0, got {tau}")
    v = F.normalize(v.float(), dim=1)
    u = F.normalize(u.float(), dim=1)
    return v @ u.T / tau


def soft_target_contrastive(logits: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
    """Bidirectional cross-entropy of ``logits`` (B, B) against row-normalised ``affinity``."""
    weights = affinity / affinity.sum(dim=1, keepdim=True)
    image_to_text = -(weights * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    # column i of logits = text i against every image; A symmetric, so row i of the weights
    text_to_image = -(weights * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (image_to_text + text_to_image)


def itcl_loss(
    v: torch.Tensor,
    u: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.07,
    empty_matches_empty: bool = False,
) -> torch.Tensor:
    """Position-guided image-text contrastive loss (paper eq. 9); scalar float32."""
    logits = similarity_logits(v, u, tau)
    affinity = jaccard_affinity(labels.to(logits.device), empty_matches_empty)
    return soft_target_contrastive(logits, affinity)


def clip_loss(v: torch.Tensor, u: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """CLIP loss: identity targets, mean of image->text and text->image cross-entropy; scalar."""
    logits = similarity_logits(v, u, tau)
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
