"""model.text_dropout: the training student's text passes see the text encoder's dropout (the
reference's quirk), the teacher's do not; off (the default), every pass reads the cache."""

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
from medref_cli.training.ema import EMATeacher
from medref_cli.training.ssl_step import ssl_loss
from medref_cli.training.supervised import supervised_loss

TINY_SETS = ["model.backbone=mmi-unet-tiny", "data.image_size=64", "model.text_encoder=tiny-random-bert",
             "model.visual_pretrained=false", "runtime.device=cpu", "ssl.mix=none", "ssl.posaug=false"]


@pytest.fixture(scope="module")
def splits(synthetic_root):
    records = read_dataset(synthetic_root)["train"]
    return load_split(records[:4], 64), load_split(records[4:8], 64)


def _losses(cfg, labeled, unlabeled):
    """(supervised loss, SSL loss) of an eval-mode student, under two global seeds each: with the
    model in eval mode only the text encoder's dropout can draw from the global generator."""
    _, cache = build_text(cfg, torch.device("cpu"))
    student = build_model(cfg, cache.encoder.dim, torch.device("cpu")).eval()
    teacher = EMATeacher(student).model
    lab, unl = take(labeled, torch.arange(4)), take(unlabeled, torch.arange(4))
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        sup = supervised_loss(student, labeled, torch.arange(4), cache, DiceCELoss(), cfg,
                              torch.Generator().manual_seed(2))
        torch.manual_seed(seed)
        ssl, _ = ssl_loss(student, teacher, lab, unl, cache, DiceCELoss(), cfg, full_weights(cfg),
                          torch.Generator().manual_seed(5), random.Random(9))
        out.append((sup.item(), ssl.item()))
    return out, cache


def test_default_student_text_is_cached_and_dropout_free(splits):
    cfg = load_config(None, sets=TINY_SETS)
    assert cfg.model.text_dropout is False
    (first, second), cache = _losses(cfg, *splits)
    assert first == second
    assert cache.hits > 0


def test_text_dropout_reaches_the_supervised_and_the_ssl_student_passes(splits):
    cfg = load_config(None, sets=[*TINY_SETS, "model.text_dropout=true"])
    (first, second), _ = _losses(cfg, *splits)
    assert first[0] != pytest.approx(second[0], abs=1e-7)
    assert first[1] != pytest.approx(second[1], abs=1e-7)


def test_burnin_itcl_adds_the_weighted_labeled_contrastive_term(splits):
    """train.burnin_itcl: the burn-in loss is DiceCE + lambda_itcl_sup x the labeled ITCL of the same
    pass (the reference's labeled ITC in burn-in); off by default (the paper's eq. 2)."""
    from medref_cli.training.supervised import supervised_loss_parts

    labeled, _ = splits
    totals = {}
    for itcl in ("false", "true"):
        cfg = load_config(None, sets=[*TINY_SETS, f"train.burnin_itcl={itcl}", "ssl.lambda_itcl_sup=0.5"])
        _, cache = build_text(cfg, torch.device("cpu"))
        model = build_model(cfg, cache.encoder.dim, torch.device("cpu")).eval()
        loss, parts = supervised_loss_parts(model, labeled, torch.arange(4), cache, DiceCELoss(), cfg,
                                            torch.Generator().manual_seed(2))
        totals[itcl] = (loss.item(), parts)
    plain, parts_off = totals["false"]
    with_itc, parts_on = totals["true"]
    assert "loss_itc_sup" not in parts_off
    itc = parts_on["loss_itc_sup"].item()
    assert itc > 0
    assert with_itc == pytest.approx(plain + 0.5 * itc, rel=1e-5)
