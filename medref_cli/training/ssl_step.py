"""One semi-supervised step of Semi-MedRef (paper eq. 5), with every component a switch.

    views:    weak view (random zoom, reference p 0.10) of both batches, standardised per image;
              strong view = ColorJitter + GaussianBlur of the standardised weak view (ImgStrong)
    teacher:  weak unlabeled view + its caption -> P (one pass, no grad)
    student:  text first: PosAug / TextStrong; then T-PatchMix | CutMix | SPC on the strong view,
              span mixing on the PosAug'd text (so the text update reaches the student);
              passes (``ssl.student_passes``): separate (reference: labeled; strong; weak, so
              BatchNorm takes each batch alone) or joint (one pass over all of them)
    loss:     L_sup + lambda_u L_unsup + l_itcl_sup L_itcl(labeled) + l_itcl_unsup L_itcl(unlabeled)

Pseudo-mask: 1[P >= delta] (hard); with T-PatchMix the mixed probability is thresholded at 0.5
and delta gates the patches; with naive CutMix the hard pseudo-masks are mixed.
Unlabeled ITC (``ssl.itc_unsup_view``): weak (reference) = a student pass on the weak image with
the original caption and its label; strong = the student's strong pass with the caption's
6-bit label (q_i | q_j after span mixing, the left/right-swapped label after SPC).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from medref_cli.augment.cutmix import cutmix
from medref_cli.augment.spc import draw_flips, spc_flip
from medref_cli.augment.tpatchmix import tpatchmix
from medref_cli.config import ExperimentConfig
from medref_cli.data.views import StrongViewSettings, configured_weak_view, normalise, strong_view
from medref_cli.losses.contrastive import clip_loss, itcl_loss
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.encoders import TextFeatures
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import Batch
from medref_cli.runtime.distributed import gather_rows
from medref_cli.runtime.precision import autocast
from medref_cli.runtime.step_model import core
from medref_cli.text.augment import first_phrase_label, mix_captions, student_captions_from_config, swap_sides
from medref_cli.text.modes import removed_where


@dataclass
class StepWeights:
    lambda_u: float
    lambda_itcl_sup: float
    lambda_itcl_unsup: float


@dataclass
class StudentView:
    images: torch.Tensor  # (B,1,H,W) float, the student's (standardised, then jittered) input
    pseudo: torch.Tensor  # (B,1,H,W) float 0/1 target
    captions: list[str]
    labels: torch.Tensor  # (B,6) position labels of the student text
    mixed: torch.Tensor  # (B,) bool: a patch of another sample was pasted (after the gate)


def layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A model input in channels_last memory format if asked."""
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def weak_views(lab: Batch | None, unl: Batch, cfg: ExperimentConfig, gen: torch.Generator):
    """(labeled weak view, its masks, unlabeled weak view): standardised model inputs (labeled first)."""
    weak_l = None if lab is None else configured_weak_view(lab.images, lab.masks, gen, cfg.ssl)
    weak_u = configured_weak_view(unl.images, None, gen, cfg.ssl)
    x_l = None if weak_l is None else normalise(weak_l.images)
    return x_l, None if weak_l is None else weak_l.masks, normalise(weak_u.images)


@torch.inference_mode()
def teacher_probs(teacher: nn.Module, images: torch.Tensor, text: TextFeatures, cfg: ExperimentConfig) -> torch.Tensor:
    """Sigmoid of the teacher's logits on standardised `images`, in eval mode (also when the teacher
    is the student itself)."""
    was_training = teacher.training
    teacher.eval()
    try:
        with autocast(images.device, cfg.runtime.amp):
            logits = teacher(layout(images, cfg.runtime.channels_last), text).logits
    finally:
        teacher.train(was_training)
    return torch.sigmoid(logits.float())


def first_phrase_labels(captions: list[str], device: torch.device) -> torch.Tensor:
    """(B, 6) float: the label of each caption's first zone phrase (zeros when it names none)."""
    return torch.tensor([first_phrase_label(c) for c in captions], dtype=torch.float32).to(device)


def student_view(unl: Batch, weak_x: torch.Tensor, probs: torch.Tensor, cfg: ExperimentConfig,
                 gen: torch.Generator, rng: random.Random) -> StudentView:
    """The strong view of the unlabeled batch, its text and its pseudo-mask, per the config's switches."""
    s = cfg.ssl
    x = strong_view(weak_x, gen, StrongViewSettings(clip=s.strong_clip)) if s.img_strong else weak_x
    labels = unl.labels.float()
    captions = student_captions_from_config(unl.captions, rng, s)
    mixed = torch.zeros(len(unl), dtype=torch.bool, device=x.device)
    if s.mix == "tpatchmix":
        first = first_phrase_labels(captions, x.device) if s.tpatchmix_mode == "position" else labels
        res = tpatchmix(x, probs, labels, mode=s.tpatchmix_mode, block=s.tpatchmix_block,
                        block_prob=s.tpatchmix_block_prob, delta=s.threshold, laterality=cfg.data.laterality,
                        gate=s.tpatchmix_gate, draw=s.tpatchmix_draw,
                        region_labels=first if s.tpatchmix_draw == "single" else labels,
                        conflict_labels=first if s.tpatchmix_conflict == "first_phrase" else labels,
                        paste_before_gate=s.tpatchmix_paste_before_gate, generator=gen)
        x, pseudo, labels, mixed = res.images, res.pseudo_mask, res.labels, res.kept
        if s.tpatchmix_mode == "position" or s.tpatchmix_probability_text == "span_mix":
            # one device -> host read (a sync on a GPU) for both the partners and the kept flags
            partners, kept = torch.stack((res.partner, res.kept.to(res.partner.dtype))).tolist()
            captions = mix_captions(captions, partners, [bool(k) for k in kept])
        else:
            labels = unl.labels.float()  # the text is unchanged, and so is its label
    elif s.mix == "cutmix":
        res = cutmix(x, probs, labels, mix_threshold=s.threshold, generator=gen)
        x, pseudo, mixed = res.images, res.pseudo_mask, res.kept
    elif s.mix == "spc":
        flips = draw_flips(len(unl), 0.5, generator=gen, device=x.device)
        x, flipped_probs, labels = spc_flip(x, probs, labels, flips)
        pseudo = (flipped_probs >= s.threshold).float()
        captions = [swap_sides(c) if f else c for c, f in zip(captions, flips.tolist(), strict=True)]
        mixed = flips
    else:
        pseudo = (probs >= s.threshold).float()
    return StudentView(x, pseudo, captions, labels, mixed)


def contrastive_term(kind: str, v: torch.Tensor, u: torch.Tensor, labels: torch.Tensor, tau: float,
                     empty_match: bool = False) -> torch.Tensor:
    if kind == "itcl":
        return itcl_loss(v, u, labels, tau, empty_match)
    return clip_loss(v, u, tau)


def soft_position_inputs(cfg: ExperimentConfig, captions: list[str], labels: torch.Tensor,
                         gen: torch.Generator) -> tuple[list[str], torch.Tensor | None]:
    """ISPG's removal-aware training of a model with a soft position input (model.soft_position): each
    caption loses its positional phrases with probability train.ispg_removal_rate (one draw per caption
    from `gen`), and the soft input carries the caption's position label. A model without one: the
    captions unchanged, no positions, no draw."""
    if not cfg.model.soft_position:
        return captions, None
    chosen = torch.rand(len(captions), generator=gen, device=gen.device) < cfg.train.ispg_removal_rate
    return removed_where(captions, chosen.tolist()), labels.float()


def student_passes(student: nn.Module, inputs: list[tuple[torch.Tensor, list[str], torch.Tensor | None]],
                   text_cache: TextFeatureCache, cfg: ExperimentConfig
                   ) -> list[tuple[torch.Tensor, torch.Tensor, TextFeatures]]:
    """(logits, fused feature, text) of each (images, captions, soft positions or None) input: one
    student pass each (`separate`), or one pass over all of them, split back (`joint`)."""
    def run(images: torch.Tensor, captions: list[str], positions: torch.Tensor | None):
        text = text_cache.encode_student(captions)
        if positions is not None:
            text = text.with_positions(positions)
        with autocast(images.device, cfg.runtime.amp):
            out = student(layout(images, cfg.runtime.channels_last), text)
        return out.logits.float(), out.fused, text

    if cfg.ssl.student_passes == "separate":
        return [run(images, captions, positions) for images, captions, positions in inputs]
    joint_positions = None if inputs[0][2] is None else torch.cat([p for *_, p in inputs])
    logits, fused, text = run(torch.cat([x for x, _, _ in inputs]), [c for _, cs, _ in inputs for c in cs],
                              joint_positions)
    sizes = [len(cs) for _, cs, _ in inputs]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    texts = [text.select(range(a, a + n)) for a, n in zip(starts, sizes, strict=True)]
    return list(zip(logits.split(sizes), fused.split(sizes), texts, strict=True))


def ssl_loss(
    student: nn.Module,
    teacher: nn.Module,
    lab: Batch,
    unl: Batch,
    text_cache: TextFeatureCache,
    loss_fn: DiceCELoss,
    cfg: ExperimentConfig,
    weights: StepWeights,
    gen: torch.Generator,
    rng: random.Random,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step's total loss and its detached parts (on the device)."""
    s = cfg.ssl
    x_l, masks_l, x_w = weak_views(lab, unl, cfg, gen)
    soft = cfg.model.soft_position  # ISPG: the teacher reads the whole caption and its position label
    teacher_text = text_cache.encode(unl.captions)
    teacher_text = teacher_text.with_positions(unl.labels.float()) if soft else teacher_text
    probs = teacher_probs(teacher, x_w, teacher_text, cfg).clone()
    view = student_view(unl, x_w, probs, cfg, gen, rng)

    weak_itc = s.contrastive != "none" and s.itc_unsup_view == "weak"
    inputs = [(x_l, *soft_position_inputs(cfg, list(lab.captions), lab.labels, gen)),
              (view.images, *soft_position_inputs(cfg, view.captions, view.labels, gen))]
    if weak_itc:
        inputs.append((x_w, list(unl.captions), unl.labels.float() if soft else None))
    outs = student_passes(student, inputs, text_cache, cfg)
    sup = loss_fn(outs[0][0], masks_l.float())
    unsup = loss_fn(outs[1][0], view.pseudo)
    total = sup + weights.lambda_u * unsup
    changed = [a != b for a, b in zip(view.captions, unl.captions, strict=True)]
    parts = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(),
             "mixed_share": view.mixed.float().mean(), "pseudo_fg": view.pseudo.mean(),
             "text_changed_share": torch.tensor(sum(changed) / len(changed), device=sup.device)}
    if s.contrastive != "none":
        model = core(student)
        c_sup = contrastive_embed_term(model, outs[0], lab.labels, cfg)
        branch, labels_u = (outs[2], unl.labels) if weak_itc else (outs[1], view.labels)
        c_uns = contrastive_embed_term(model, branch, labels_u, cfg)
        total = total + weights.lambda_itcl_sup * c_sup + weights.lambda_itcl_unsup * c_uns
        parts.update({"loss_itc_sup": c_sup.detach(), "loss_itc_unsup": c_uns.detach()})
    parts["loss"] = total.detach()
    return total, parts


def contrastive_embed_term(model: nn.Module, out: tuple[torch.Tensor, torch.Tensor, TextFeatures],
                           labels: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    """The contrastive term of one student pass; across processes each term sees the embeddings of
    the whole global batch (gradients flow back)."""
    _, fused, text = out
    with autocast(fused.device, cfg.runtime.amp):
        v, u = model.embed(fused, text)
    return contrastive_term(cfg.ssl.contrastive, gather_rows(v.float()), gather_rows(u.float()),
                            gather_rows(labels.float()), cfg.ssl.itcl_tau, cfg.ssl.itcl_empty_match)
