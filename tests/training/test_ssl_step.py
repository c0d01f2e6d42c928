"""The semi-supervised step's data flow (reference `training_step` / `_build_xpatchmix_batch`): which
images and texts each student pass gets, in which batches, and what the step logs."""

from __future__ import annotations

import dataclasses
import random

import torch
from torch import nn

from medref_cli.config.schema import ExperimentConfig
from medref_cli.data.views import normalise, to_unit
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.models.base import ModelOutput
from medref_cli.runtime.batches import Batch
from medref_cli.text.positions import find_zone_phrase_spans
from medref_cli.training.ssl_step import StepWeights, ssl_loss, student_view, weak_views

LEFT_UPPER = "unilateral pulmonary infection, one infected area, upper left lung."
LEFT_LOWER = "unilateral pulmonary infection, one infected area, lower left lung."
BILATERAL = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
RIGHT_UPPER = "unilateral pulmonary infection, one infected area, upper right lung."
LABELS = {LEFT_UPPER: [1, 0, 0, 0, 0, 0], LEFT_LOWER: [0, 0, 1, 0, 0, 0], BILATERAL: [0, 0, 1, 0, 0, 1],
          RIGHT_UPPER: [0, 0, 0, 1, 0, 0]}


class EchoText(list):
    """Captions standing in for text features; `select` takes rows as TextFeatures does."""

    def select(self, index):
        return EchoText(self[i] for i in index)


class TextEcho:
    """A text cache whose features are the captions themselves (the spy model records them)."""

    def encode(self, captions):
        return EchoText(captions)

    encode_student = encode


class SpyModel(nn.Module):
    """Records the images and texts of every call; a confident lesion everywhere (P ~ 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[torch.Tensor, list[str]]] = []

    def forward(self, images, text):
        self.calls.append((images.detach().clone(), list(text)))
        logits = self.scale * (images * 0 + 8.0)
        return ModelOutput(logits=logits, fused=logits[:, :, :4, :4].expand(-1, 3, -1, -1))

    def embed(self, fused, text):
        v = fused.mean(dim=(2, 3))
        return v, torch.ones_like(v)


def batch(captions, seed=0, size=64):
    gen = torch.Generator().manual_seed(seed)
    n = len(captions)
    return Batch(index=torch.arange(n), images=torch.randint(0, 256, (n, 1, size, size), generator=gen,
                                                             dtype=torch.uint8),
                 masks=(torch.rand(n, 1, size, size, generator=gen) > 0.5).to(torch.uint8),
                 labels=torch.tensor([LABELS[c] for c in captions], dtype=torch.uint8), captions=list(captions))


def config(**ssl) -> ExperimentConfig:
    cfg = ExperimentConfig()
    return dataclasses.replace(cfg, ssl=dataclasses.replace(cfg.ssl, **ssl))


def run_step(cfg, lab, unl, seed=0):
    student, teacher = SpyModel(), SpyModel()
    _, parts = ssl_loss(student, teacher, lab, unl, TextEcho(), DiceCELoss(), cfg, StepWeights(1.0, 0.02, 0.1),
                            torch.Generator().manual_seed(seed), random.Random(seed))
    return student, teacher, parts


def test_a_span_mixed_caption_reaches_the_student_text():
    """PosAug first, span mixing on its output (reference order): the mixed text is what the student
    reads, whenever both first phrases survived PosAug; an unmixed caption never names two zones."""
    unl = batch([LEFT_UPPER, LEFT_LOWER])
    cfg = config(tpatchmix_block_prob=1.0)
    probs = torch.ones(2, 1, 64, 64)
    x_w = normalise(to_unit(unl.images))
    mixed_texts = 0
    for seed in range(24):
        view = student_view(unl, x_w, probs, cfg, torch.Generator().manual_seed(seed), random.Random(seed))
        for k, caption in enumerate(view.captions):
            phrases = [caption[a:b] for a, b in find_zone_phrase_spans(caption)]
            if len(phrases) == 2:
                assert view.mixed[k]
                assert phrases == [["upper left lung", "lower left lung"], ["lower left lung", "upper left lung"]][k]
                mixed_texts += 1
    # each sample's and its partner's first phrases both survive with p 0.25: 12 of 48 expected
    assert mixed_texts >= 4


def test_step_passes_and_their_inputs():
    """Reference: three student passes (labeled 8; mixed strong 8; weak 8 with the ORIGINAL captions for
    the unlabeled ITC), so BatchNorm sees each batch alone; the strong input is not re-standardised."""
    lab, unl = batch([LEFT_UPPER, BILATERAL] * 4, seed=1), batch([LEFT_LOWER, RIGHT_UPPER] * 4, seed=2)
    student, teacher, parts = run_step(config(), lab, unl)
    assert [len(texts) for _, texts in student.calls] == [8, 8, 8]
    (x_l, t_l), (x_s, _), (x_w, t_w) = student.calls
    (teacher_x, teacher_t), = teacher.calls
    assert t_l == lab.captions and t_w == unl.captions == teacher_t
    assert torch.equal(x_w, teacher_x)  # the ITC branch: the weak image, as the teacher sees it
    for x in (x_l, x_w):
        assert torch.allclose(x.flatten(1).std(dim=1, correction=0), torch.ones(8), atol=1e-4)
    strong_std = x_s.flatten(1).std(dim=1, correction=0)
    assert (strong_std - 1).abs().max() > 0.05  # ColorJitter survives: the student sees another scale
    for key in ("mixed_share", "text_changed_share", "pseudo_fg", "loss_itc_unsup"):
        assert key in parts
    assert parts["pseudo_fg"].item() == 1.0 and 0 <= parts["text_changed_share"].item() <= 1


def test_joint_pass_and_strong_itc_settings():
    lab, unl = batch([LEFT_UPPER] * 4, seed=1), batch([LEFT_LOWER] * 4, seed=2)
    student, _, _ = run_step(config(student_passes="joint"), lab, unl)
    assert [len(texts) for _, texts in student.calls] == [12]
    student, _, _ = run_step(config(itc_unsup_view="strong"), lab, unl)
    assert [len(texts) for _, texts in student.calls] == [4, 4]
    student, _, _ = run_step(config(contrastive="none", img_strong=False), lab, unl)
    assert [len(texts) for _, texts in student.calls] == [4, 4]
    assert torch.allclose(student.calls[1][0].flatten(1).std(dim=1, correction=0), torch.ones(4), atol=1e-4)


def test_text_changed_share_counts_the_student_texts_that_differ():
    lab, unl = batch([LEFT_UPPER] * 4), batch([LEFT_LOWER] * 4)
    _, _, parts = run_step(config(posaug_edit_prob=1.0, mix="none"), lab, unl)
    assert parts["text_changed_share"].item() == 1.0
    _, _, parts = run_step(config(posaug=False, mix="none"), lab, unl)
    assert parts["text_changed_share"].item() == 0.0


def test_reference_laterality_rule_in_the_step():
    """i = bilateral with "lower left lung" first, j = "upper right lung": the reference rule (first
    phrases) forbids mixing; the `sides` rule (only-left vs only-right labels) allows it."""
    unl = batch([BILATERAL, RIGHT_UPPER])
    probs = torch.ones(2, 1, 64, 64)
    x_w = normalise(to_unit(unl.images))
    for conflict, expect_mixing in (("first_phrase", False), ("sides", True)):
        cfg = config(tpatchmix_block_prob=1.0, posaug=False, tpatchmix_conflict=conflict)
        view = student_view(unl, x_w, probs, cfg, torch.Generator().manual_seed(0), random.Random(0))
        assert bool(view.mixed.any()) is expect_mixing, conflict


def test_probability_mode_text_setting():
    unl = batch([LEFT_UPPER, LEFT_LOWER])
    probs = torch.ones(2, 1, 64, 64)
    x_w = normalise(to_unit(unl.images))
    for text, changed in (("span_mix", True), ("unchanged", False)):
        cfg = config(tpatchmix_mode="probability", tpatchmix_block_prob=1.0, posaug=False, img_strong=False,
                     tpatchmix_probability_text=text)
        view = student_view(unl, x_w, probs, cfg, torch.Generator().manual_seed(0), random.Random(0))
        assert view.mixed.all()
        assert (view.captions != unl.captions) is changed
        assert (view.images != x_w).flatten(1).any(dim=1).all()  # a patch pasted into both


def test_weak_zoom_probability_in_the_step():
    unl = batch([LEFT_LOWER] * 400, size=16)
    plain = normalise(to_unit(unl.images))
    for prob, low, high in ((0.1, 20, 70), (1.0, 400, 400), (0.0, 0, 0)):
        cfg = dataclasses.replace(config(zoom_prob=prob), data=dataclasses.replace(ExperimentConfig().data))
        _, _, x_w = weak_views(None, unl, cfg, torch.Generator().manual_seed(4))
        zoomed = int((x_w != plain).flatten(1).any(dim=1).sum())
        assert low <= zoomed <= high, (prob, zoomed)


def test_weak_shift_in_the_step():
    """ssl.shift reaches the SSL step's weak views: with an identity zoom on every sample, only the
    shift can change an image (beyond resampling's float error), and it changes each one."""
    unl = batch([LEFT_LOWER] * 8, size=16)
    plain = normalise(to_unit(unl.images))
    for shift, moved in ((0.0, 0), (0.2, 8)):
        cfg = config(zoom_min=1.0, zoom_max=1.0, zoom_prob=1.0, shift=shift)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(ExperimentConfig().data))
        _, _, x_w = weak_views(None, unl, cfg, torch.Generator().manual_seed(4))
        changed = (x_w - plain).abs().flatten(1).amax(dim=1) > 1e-3
        assert int(changed.sum()) == moved, shift
