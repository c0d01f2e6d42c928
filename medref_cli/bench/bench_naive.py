"""The naive training steps that `medref bench --compare naive` measures the fast path against.

"Naive" is what a plain PyTorch port of the method does, point by point:

- data: every step decodes the PNGs of its batch and applies the views per sample on the CPU
  (a map-style Dataset whose items are collated into a batch, as a DataLoader without workers
  does), then copies the batch to the device;
- text: the frozen text encoder runs on every caption list of the step (no TextFeatureCache);
- precision: fp32, no autocast, contiguous (NCHW) weights and inputs;
- passes, following the public reference's call pattern (3 student passes, 2 teacher passes
  and 5 text-encoder runs per SSL step):
    teacher 1: weak view of the unlabeled batch -> P_i       text 1: unlabeled captions
    teacher 2: weak view of the mixing partners -> P_j       text 2: partner captions
    student 1: labeled weak view -> L_sup, labeled ITCL      text 3: labeled captions
    student 2: unlabeled mixed strong view -> L_unsup        text 4: student captions
    student 3: unlabeled weak view -> unlabeled ITCL         text 5: unlabeled captions
  (without a contrastive term, or with `ssl.itc_unsup_view: strong`, the ITCL terms come from
  the passes before: no third student pass and no fifth text run).

It computes the fast step's loss: the same views (the caller hands them over), the same
augmentations drawn from the same generators in the same order (PosAug, partner, T-PatchMix
block), and the same terms; with `ssl.student_passes: separate` (the default) both take
BatchNorm statistics over each batch apart, so they agree in train mode as well.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from medref_cli.augment.labels import union_labels
from medref_cli.augment.mixing import mask_is_nonempty, partner_indices
from medref_cli.augment.tpatchmix import draw_tpatchmix_mask, gate_mask
from medref_cli.config import ExperimentConfig
from medref_cli.data.cache import decode_record, record_label
from medref_cli.data.records import SampleRecord
from medref_cli.data.views import StrongViewSettings, normalise, strong_view, to_unit, weak_view
from medref_cli.errors import MedrefError
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.encoders import TextEncoder
from medref_cli.text.augment import first_phrase_label, mix_captions, student_captions_from_config
from medref_cli.training.ssl_step import StepWeights, contrastive_term, teacher_probs

NAIVE_MIX_MODES = ("tpatchmix", "none")
MIX_THRESHOLD = 0.5  # T-PatchMix thresholds the mixed teacher probability at 0.5 (eq. 8)


@dataclass
class NaiveViews:
    """One batch as the naive path delivers it: views done, on the device."""

    weak_images: torch.Tensor  # (B,1,H,W) float in [0,1], random zoom
    weak_masks: torch.Tensor | None  # (B,1,H,W) uint8 in {0,1}, zoomed alike (labeled data)
    strong_images: torch.Tensor | None  # (B,1,H,W) float, strong view of the standardised weak one
    labels: torch.Tensor  # (B,6) uint8
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


class NaiveSampleDataset(Dataset):
    """Decodes one record's PNGs and applies the views to that sample alone, on every access."""

    def __init__(self, records: Sequence[SampleRecord], image_size: int, zoom: tuple[float, float],
                 with_masks: bool, with_strong: bool, seed: int, zoom_prob: float = 1.0,
                 zoom_mode: str = "bicubic", strong: StrongViewSettings | None = None, shift: float = 0.0) -> None:
        self.records = list(records)
        self.image_size = image_size
        self.zoom = zoom
        self.zoom_prob, self.zoom_mode, self.shift = zoom_prob, zoom_mode, shift
        self.strong = StrongViewSettings() if strong is None else strong
        self.with_masks = with_masks
        self.with_strong = with_strong
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image, mask = decode_record(record, self.image_size)
        image_t = to_unit(torch.from_numpy(image)[None, None])
        mask_t = torch.from_numpy(mask)[None, None] if self.with_masks else None
        weak = weak_view(image_t, mask_t, self.generator, self.zoom, self.zoom_prob, self.zoom_mode, self.shift)
        item = {"weak": weak.images[0], "label": torch.tensor(record_label(record), dtype=torch.uint8),
                "caption": record.caption}
        if self.with_masks:
            item["mask"] = weak.masks[0]
        if self.with_strong:
            item["strong"] = strong_view(normalise(weak.images), self.generator, self.strong)[0]
        return item


def naive_batch(dataset: NaiveSampleDataset, index: Sequence[int], device: torch.device) -> NaiveViews:
    """Collate the items at `index` (what a DataLoader with num_workers=0 does) and move them to `device`."""
    batch = default_collate([dataset[i] for i in index])
    moved = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return NaiveViews(moved["weak"], moved.get("mask"), moved.get("strong"), moved["label"], list(batch["caption"]))


def fp32_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with autocast and channels_last off (the naive path's precision and layout)."""
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, amp=False, channels_last=False))


def check_naive_supported(cfg: ExperimentConfig) -> None:
    if cfg.ssl.mix not in NAIVE_MIX_MODES:
        raise MedrefError(
            f"--compare naive models the T-PatchMix step; ssl.mix={cfg.ssl.mix} is not supported "
            f"(use {' or '.join(NAIVE_MIX_MODES)})"
        )


def naive_sup_loss(model: nn.Module, encoder: TextEncoder, lab: NaiveViews, loss_fn: DiceCELoss) -> torch.Tensor:
    """DiceCE of one fp32 forward on the labeled weak view, the text encoder run on the captions."""
    out = model(normalise(lab.weak_images), encoder.encode(lab.captions))
    return loss_fn(out.logits.float(), lab.weak_masks.float())


@dataclass
class NaiveMix:
    images: torch.Tensor
    pseudo: torch.Tensor
    captions: list[str]
    labels: torch.Tensor
    mixed: torch.Tensor


def naive_mix(teacher: nn.Module, encoder: TextEncoder, unl: NaiveViews, images: torch.Tensor,
              probs: torch.Tensor, cfg: ExperimentConfig, gen: torch.Generator, rng: random.Random) -> NaiveMix:
    """PosAug, then T-PatchMix with the partners' probabilities from a second teacher pass over
    their weak view, then span mixing of the PosAug'd text."""
    s = cfg.ssl
    labels = unl.labels.float()
    captions = student_captions_from_config(list(unl.captions), rng, s)
    if s.mix == "none":
        return NaiveMix(images, (probs >= s.threshold).float(), captions, labels,
                        torch.zeros(len(unl), dtype=torch.bool, device=images.device))
    batch = len(unl)
    first = labels
    if s.tpatchmix_mode == "position":
        first = torch.tensor([first_phrase_label(c) for c in captions], dtype=torch.float32, device=images.device)
    partner = partner_indices(batch, gen, images.device)
    partner_rows = partner.tolist()
    partner_text = encoder.encode([unl.captions[j] for j in partner_rows])
    probs_j = teacher_probs(teacher, normalise(unl.weak_images[partner]), partner_text, cfg).clone()
    by_row = torch.empty_like(probs)
    by_row[partner] = probs_j  # by_row[partner] is P_j, the layout the mask functions read
    drawn = draw_tpatchmix_mask(first if s.tpatchmix_draw == "single" else labels, by_row, partner,
                                mode=s.tpatchmix_mode, block=s.tpatchmix_block, block_prob=s.tpatchmix_block_prob,
                                delta=s.threshold, laterality=cfg.data.laterality, draw=s.tpatchmix_draw,
                                conflict_labels=first if s.tpatchmix_conflict == "first_phrase" else labels,
                                generator=gen)
    mask = gate_mask(drawn, probs_j, s.threshold, s.tpatchmix_gate, s.tpatchmix_block)
    mixed_images = torch.where(drawn if s.tpatchmix_paste_before_gate else mask, images[partner], images)
    pseudo = (torch.where(mask, probs_j, probs) >= MIX_THRESHOLD).float()
    kept = mask_is_nonempty(mask) & (partner != torch.arange(batch, device=partner.device))
    if s.tpatchmix_mode == "position" or s.tpatchmix_probability_text == "span_mix":
        labels = torch.where(kept[:, None], union_labels(labels, labels[partner]), labels)
        captions = mix_captions(captions, partner_rows, kept.tolist())
    return NaiveMix(mixed_images, pseudo, captions, labels, kept)


def naive_ssl_loss(
    student: nn.Module,
    teacher: nn.Module,
    encoder: TextEncoder,
    lab: NaiveViews,
    unl: NaiveViews,
    loss_fn: DiceCELoss,
    cfg: ExperimentConfig,
    weights: StepWeights,
    gen: torch.Generator,
    rng: random.Random,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The SSL loss of `ssl_loss`, computed the naive way (module docstring)."""
    cfg = fp32_config(cfg)
    x_w = normalise(unl.weak_images)
    probs = teacher_probs(teacher, x_w, encoder.encode(unl.captions), cfg).clone()
    student_images = unl.strong_images if cfg.ssl.img_strong else x_w
    mix = naive_mix(teacher, encoder, unl, student_images, probs, cfg, gen, rng)

    text_l = encoder.encode(lab.captions)
    out_l = student(normalise(lab.weak_images), text_l)
    sup = loss_fn(out_l.logits, lab.weak_masks.float())
    text_u = encoder.encode(mix.captions)
    out_u = student(mix.images, text_u)
    unsup = loss_fn(out_u.logits, mix.pseudo)
    total = sup + weights.lambda_u * unsup
    changed = sum(a != b for a, b in zip(mix.captions, unl.captions, strict=True)) / len(unl)
    parts = {"loss_sup": sup.detach(), "loss_unsup": unsup.detach(), "mixed_share": mix.mixed.float().mean(),
             "pseudo_fg": mix.pseudo.mean(), "text_changed_share": torch.tensor(changed)}
    if cfg.ssl.contrastive != "none":
        if cfg.ssl.itc_unsup_view == "weak":
            text_c = encoder.encode(unl.captions)
            v_u, u_u = student.embed(student(x_w, text_c).fused, text_c)
            labels_u = unl.labels.float()
        else:
            v_u, u_u = student.embed(out_u.fused, text_u)
            labels_u = mix.labels.float()
        v_l, u_l = student.embed(out_l.fused, text_l)
        c_sup = contrastive_term(cfg.ssl.contrastive, v_l, u_l, lab.labels.float(), cfg.ssl.itcl_tau,
                                 cfg.ssl.itcl_empty_match)
        c_uns = contrastive_term(cfg.ssl.contrastive, v_u, u_u, labels_u, cfg.ssl.itcl_tau,
                                 cfg.ssl.itcl_empty_match)
        total = total + weights.lambda_itcl_sup * c_sup + weights.lambda_itcl_unsup * c_uns
        parts.update({"loss_itc_sup": c_sup.detach(), "loss_itc_unsup": c_uns.detach()})
    parts["loss"] = total.detach()
    return total, parts
