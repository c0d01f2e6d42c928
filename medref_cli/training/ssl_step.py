"""One semi-supervised step of Semi-MedRef (paper eq. 5), with every component a switch.

    teacher:  weak view (random zoom) of the unlabeled batch + its caption -> P (one pass, no grad)
    student:  strong view of the same geometry (ImgStrong: ColorJitter + GaussianBlur), then
              T-PatchMix | CutMix | SPC, then PosAug / TextStrong on the text;
              ONE forward over [labeled weak view ; unlabeled strong view]
    loss:     L_sup + lambda_u L_unsup + l_itcl_sup L_itcl(labeled) + l_itcl_unsup L_itcl(unlabeled)

Pseudo-mask: 1[P >= delta] (hard); with T-PatchMix the mixed probability is thresholded at 0.5
and delta gates the patches (the design's and the reference's reading of the paper); with
naive CutMix the hard pseudo-masks are mixed (mixed P thresholded at delta).
ITCL position labels: the caption's 6-bit label; after span mixing q_i | q_j; after SPC the
left/right-swapped label. Text dropped by PosAug keeps the label of the image's caption.
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
from medref_cli.data.views import strong_view, to_unit, weak_view
from medref_cli.losses.contrastive import clip_loss, itcl_loss
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.encoders import TextFeatures
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import Batch, model_input
from medref_cli.runtime.distributed import gather_rows
from medref_cli.runtime.precision import autocast
from medref_cli.runtime.step_model import core
from medref_cli.text.augment import mix_captions, student_captions_from_config, swap_sides


@dataclass
class StepWeights:
    lambda_u: float
    lambda_itcl_sup: float
    lambda_itcl_unsup: float


@dataclass
class StudentView:
    images: torch.Tensor  # (B,1,H,W) float in [0,1]
    pseudo: torch.Tensor  # (B,1,H,W) float 0/1 target
    captions: list[str]
    labels: torch.Tensor  # (B,6) position labels of the student text
    mixed: torch.Tensor  # (B,) bool: a patch of another sample was pasted


@torch.inference_mode()
def teacher_probs(teacher: nn.Module, images: torch.Tensor, text: TextFeatures, cfg: ExperimentConfig) -> torch.Tensor:
    """Sigmoid of the teacher's logits, in eval mode (also when the teacher is the student itself)."""
    was_training = teacher.training
    teacher.eval()
    try:
        with autocast(images.device, cfg.runtime.amp):
            logits = teacher(model_input(images, cfg.runtime.channels_last), text).logits
    finally:
        teacher.train(was_training)
    return torch.sigmoid(logits.float())


def student_view(unl: Batch, weak_images: torch.Tensor, probs: torch.Tensor, cfg: ExperimentConfig,
                 gen: torch.Generator, rng: random.Random) -> StudentView:
    """The strong view of the unlabeled batch and its pseudo-mask, per the config's switches."""
    s = cfg.ssl
    x = strong_view(weak_images, gen) if s.img_strong else weak_images
    labels = unl.labels.float()
    captions = list(unl.captions)
    mixed = torch.zeros(len(unl), dtype=torch.bool, device=x.device)
    if s.mix == "tpatchmix":
        res = tpatchmix(x, probs, labels, mode=s.tpatchmix_mode, block=s.tpatchmix_block,
                        block_prob=s.tpatchmix_block_prob, delta=s.threshold, laterality=cfg.data.laterality,
                        gate=s.tpatchmix_gate, generator=gen)
        x, pseudo, labels, mixed = res.images, res.pseudo_mask, res.labels, res.kept
        # one device -> host read (a sync on a GPU) for both the partners and the kept flags
        partners, kept = torch.stack((res.partner, res.kept.to(res.partner.dtype))).tolist()
        captions = mix_captions(captions, partners, [bool(k) for k in kept])
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
    captions = student_captions_from_config(captions, rng, s)
    return StudentView(x, pseudo, captions, labels, mixed)


def contrastive_term(kind: str, v: torch.Tensor, u: torch.Tensor, labels: torch.Tensor, tau: float,
                     empty_match: bool = False) -> torch.Tensor:
    if kind == "itcl":
        return itcl_loss(v, u, labels, tau, empty_match)
    return clip_loss(v, u, tau)


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
    zoom = (cfg.ssl.zoom_min, cfg.ssl.zoom_max)
    weak_l = weak_view(to_unit(lab.images), lab.masks, gen, zoom)
    weak_u = weak_view(to_unit(unl.images), None, gen, zoom)
    probs = teacher_probs(teacher, weak_u.images, text_cache.encode(unl.captions), cfg).clone()
    view = student_view(unl, weak_u.images, probs, cfg, gen, rng)

    n_l = len(lab)
    images = torch.cat([weak_l.images, view.images])
    text = text_cache.encode_student(lab.captions + view.captions)
    with autocast(images.device, cfg.runtime.amp):
        out = student(model_input(images, cfg.runtime.channels_last), text)
    logits = out.logits.float()
    sup = loss_fn(logits[:n_l], weak_l.masks.float())
    unsup = loss_fn(logits[n_l:], view.pseudo)
    total = sup + weights.lambda_u * unsup
    parts = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(),
             "mixed_share": view.mixed.float().mean(), "pseudo_fg": view.pseudo.mean()}
    if cfg.ssl.contrastive != "none":
        with autocast(images.device, cfg.runtime.amp):
            v, u = core(student).embed(out.fused, text)
        # across processes, each term sees the embeddings of the whole global batch (gradients flow back)
        v, u = v.float(), u.float()
        c_sup = contrastive_term(cfg.ssl.contrastive, gather_rows(v[:n_l]), gather_rows(u[:n_l]),
                                 gather_rows(lab.labels.float()), cfg.ssl.itcl_tau, cfg.ssl.itcl_empty_match)
        c_uns = contrastive_term(cfg.ssl.contrastive, gather_rows(v[n_l:]), gather_rows(u[n_l:]),
                                 gather_rows(view.labels.float()), cfg.ssl.itcl_tau, cfg.ssl.itcl_empty_match)
        total = total + weights.lambda_itcl_sup * c_sup + weights.lambda_itcl_unsup * c_uns
        parts.update({"loss_itc_sup": c_sup.detach(), "loss_itc_unsup": c_uns.detach()})
    parts["loss"] = total.detach()
    return total, parts
