"""ISPG removal-aware training: a model with a soft position input trains on captions whose positional
phrases are removed at train.ispg_removal_rate, the soft input carrying each caption's position label;
the teacher reads the whole caption. A model without one trains exactly as before (no draw, no input)."""

from __future__ import annotations

import random

import pytest
import torch

from medref_cli.bench.bench_steps import full_weights
from medref_cli.config import load_config
from medref_cli.data.cache import load_split
from medref_cli.data.readers import read_dataset
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.runtime.batches import take
from medref_cli.runtime.build import build_model, build_text
from medref_cli.text.modes import remove_positions
from medref_cli.training.ema import EMATeacher
from medref_cli.training.ssl_step import soft_position_inputs, ssl_loss
from medref_cli.training.supervised import supervised_loss

TINY_SETS = ["model.backbone=mmi-unet-tiny", "data.image_size=64", "model.text_encoder=tiny-random-bert",
             "model.visual_pretrained=false", "runtime.device=cpu", "ssl.mix=none", "ssl.posaug=false"]
CAPTIONS = ["bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
            "unilateral pulmonary infection, one infected area, upper left lung.",
            "no pulmonary infection, zero infected areas."]
LABELS = torch.tensor([[0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0], [0] * 6], dtype=torch.uint8)


def test_soft_position_inputs_worked_values():
    on_all = load_config(None, sets=["model.soft_position=true", "train.ispg_removal_rate=1.0"])
    captions, positions = soft_position_inputs(on_all, CAPTIONS, LABELS, torch.Generator().manual_seed(0))
    assert captions == ["bilateral pulmonary infection, two infected areas.",
                        "unilateral pulmonary infection, one infected area.", CAPTIONS[2]]
    assert torch.equal(positions, LABELS.float())
    on_none = load_config(None, sets=["model.soft_position=true", "train.ispg_removal_rate=0.0"])
    assert soft_position_inputs(on_none, CAPTIONS, LABELS, torch.Generator().manual_seed(0))[0] == CAPTIONS
    # at the reference's 0.5: the draw is one torch.rand per caption of the generator
    half = load_config(None, sets=["model.soft_position=true"])
    assert half.train.ispg_removal_rate == 0.5
    chosen = (torch.rand(3, generator=torch.Generator().manual_seed(3)) < 0.5).tolist()
    captions, _ = soft_position_inputs(half, CAPTIONS, LABELS, torch.Generator().manual_seed(3))
    assert captions == [remove_positions(c) if pick else c for c, pick in zip(CAPTIONS, chosen)]


def test_without_soft_input_nothing_is_drawn_or_given():
    cfg = load_config(None, sets=["train.ispg_removal_rate=1.0"])  # the rate alone changes nothing
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    captions, positions = soft_position_inputs(cfg, CAPTIONS, LABELS, gen)
    assert captions == CAPTIONS and positions is None and torch.equal(gen.get_state(), state)


class Spy(torch.nn.Module):
    """Records the captions' soft positions each forward receives."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    @property
    def takes_positions(self):
        return self.model.takes_positions

    def forward(self, images, text):
        self.seen.append(None if text.positions is None else text.positions.clone())
        return self.model(images, text)

    def embed(self, fused, text):
        return self.model.embed(fused, text)


@pytest.fixture(scope="module")
def splits(synthetic_root):
    records = read_dataset(synthetic_root)["train"]
    return load_split(records[:4], 64), load_split(records[4:8], 64)


def test_ssl_and_burnin_steps_feed_labels_and_removed_captions(splits):
    labeled, unlabeled = splits
    cfg = load_config(None, sets=[*TINY_SETS, "model.soft_position=true", "train.ispg_removal_rate=1.0",
                                  "train.burnin_itcl=true"])
    _, cache = build_text(cfg, torch.device("cpu"))
    model = build_model(cfg, cache.encoder.dim, torch.device("cpu"))
    student, teacher = Spy(model), Spy(EMATeacher(model).model)
    asked = []
    encode_student = cache.encode_student
    cache.encode_student = lambda texts: asked.append(list(texts)) or encode_student(texts)
    lab, unl = take(labeled, torch.arange(4)), take(unlabeled, torch.arange(4))
    loss, _ = ssl_loss(student, teacher, lab, unl, cache, DiceCELoss(), cfg, full_weights(cfg),
                       torch.Generator().manual_seed(5), random.Random(9))
    assert torch.isfinite(loss)
    assert torch.equal(teacher.seen[0], unl.labels.float())  # the teacher: whole caption + its label
    labeled_pass, strong_pass, weak_pass = student.seen
    assert torch.equal(labeled_pass, lab.labels.float()) and torch.equal(strong_pass, unl.labels.float())
    assert torch.equal(weak_pass, unl.labels.float())
    assert asked[0] == [remove_positions(c) for c in lab.captions]  # rate 1.0: every phrase removed
    assert asked[1] == [remove_positions(c) for c in unl.captions]
    assert asked[2] == list(unl.captions)  # the unlabeled ITC pass reads the original caption

    student.seen.clear()
    asked.clear()
    supervised_loss(student, labeled, torch.arange(4), cache, DiceCELoss(), cfg, torch.Generator().manual_seed(2))
    assert torch.equal(student.seen[0], labeled.labels.float())
    assert asked[0] == [remove_positions(c) for c in labeled.captions]
