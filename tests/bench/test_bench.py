"""medref bench: the report's figures, and the naive path computing the fast path's loss."""

from __future__ import annotations

import json
import random

import pytest
import torch

from medref_cli.bench.bench_naive import (
    NaiveSampleDataset,
    NaiveViews,
    naive_ssl_loss,
    naive_sup_loss,
)
from medref_cli.bench.bench_steps import contiguous_copy, full_weights
from medref_cli.cli.bench import render_text
from medref_cli.config import load_config
from medref_cli.data.cache import load_split
from medref_cli.data.readers import read_dataset
from medref_cli.data.views import (
    StrongViewSettings,
    configured_weak_view,
    normalise,
    strong_view,
    to_unit,
)
from medref_cli.losses.dice_ce import DiceCELoss
from medref_cli.runtime.batches import take
from medref_cli.runtime.build import build_model, build_text
from medref_cli.training.ema import EMATeacher
from medref_cli.training.ssl_step import ssl_loss
from medref_cli.training.supervised import supervised_loss

TINY_SETS = ["model.backbone=mmi-unet-tiny", "data.image_size=64", "model.text_encoder=tiny-random-bert",
             "model.visual_pretrained=false", "runtime.device=cpu"]
# one torch thread: steadier and faster on the shared 2-core machine (no OpenMP spin-waiting)
TINY_ARGS = ["--backbone", "mmi-unet-tiny", "--size", "64", "--cpu", "--batch", "2", "--threads", "1",
             "--set", "model.text_encoder=tiny-random-bert", "--set", "model.visual_pretrained=false"]
NAIVE_KEYS = ("naive_ssl_step_s", "naive_sup_step_s", "speedup_vs_naive", "sup_speedup_vs_naive",
              "naive_data_wait_share", "naive_ssl_step_cpu_s", "speedup_vs_naive_cpu")
POSITIVE_KEYS = ("sup_step_s", "ssl_step_s", "ssl_over_sup", "teacher_forward_s", "text_cached_ms",
                 "text_uncached_ms", "loader_samples_per_s", "naive_loader_samples_per_s", "peak_mem_mb",
                 "peak_rss_mb", "sup_images_per_s", "ssl_unlabeled_images_per_s", "sup_step_cpu_s",
                 "ssl_step_cpu_s", "ssl_over_sup_cpu", *NAIVE_KEYS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bench_json_with_naive_comparison(cli):
    code, out, err = cli("bench", *TINY_ARGS, "--steps", "2", "--warmup", "1", "--compare", "naive", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["device"] == "cpu" and report["batch"] == 2 and report["steps"] == 2
    assert report["threads"] == 1 and report["cpu_count"] >= 1 and report["load_avg_1min"] >= 0
    for key in POSITIVE_KEYS:
        assert report[key] > 0, key
    assert 0 <= report["data_wait_share"] < 1 and 0 <= report["naive_data_wait_share"] < 1
    assert report["peak_cuda_mb"] is None and report["peak_mem_mb"] == report["peak_rss_mb"]
    # the fast step runs the student and the teacher once and the text encoder never (cache primed);
    # the naive one follows the reference's 3 student, 2 teacher and 5 text-encoder passes
    assert report["passes_per_ssl_step"] == {"student": 3, "teacher": 1, "text_encoder": 0}
    assert report["naive_passes_per_ssl_step"] == {"student": 3, "teacher": 2, "text_encoder": 5}
    assert report["text_cache_hit_rate"] == 1.0
    text = render_text(report)
    assert "semi-supervised step" in text and f"fast is x{report['speedup_vs_naive']:.2f}" in text
    assert "naive passes         student 3, teacher 2, text_encoder 5" in text


def test_bench_without_compare_leaves_naive_keys_null(cli):
    torch.set_num_threads(2)
    try:
        code, out, err = cli("bench", *TINY_ARGS, "--steps", "1", "--warmup", "0", "--json")
        assert torch.get_num_threads() == 2  # --threads 1 held for the run only
    finally:
        torch.set_num_threads(1)
    assert code == 0, err
    report = json.loads(out)
    assert all(report[key] is None for key in NAIVE_KEYS)
    assert report["naive_passes_per_ssl_step"] is None and report["threads"] == 1
    assert report["ssl_step_s"] > 0 and report["speedup_vs_naive"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "fancy"], "--compare takes naive"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--compare", "naive", "--set", "ssl.mix=cutmix"], "ssl.mix=cutmix is not supported"),
    ],
)
def test_bench_refuses_bad_settings_in_one_line(cli, args, message):
    code, _, err = cli("bench", *TINY_ARGS, *args)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("batch", ["1", "0"])
def test_bench_refuses_a_batch_below_two(cli, batch):
    code, _, err = cli("bench", "--backbone", "mmi-unet-tiny", "--cpu", "--batch", batch)
    assert code == 2 and "--batch must be at least 2" in err


# ----------------------------------------------------------------------------- the same loss both ways


@pytest.fixture(scope="module")
def tiny_setup(synthetic_root):
    """The tiny config, its text encoder and cache, a labeled and an unlabeled split of 6."""
    cfg = load_config(None, sets=TINY_SETS)
    records = read_dataset(synthetic_root)["train"]
    encoder, cache = build_text(cfg, torch.device("cpu"))
    labeled = load_split(records[:6], 64)
    unlabeled = load_split(records[6:12], 64)
    return cfg, encoder, cache, labeled, unlabeled, records


def _models(cfg, dim: int):
    """A channels_last student (fast) and its contiguous copy (naive), both in eval mode, with teachers."""
    student = build_model(cfg, dim, torch.device("cpu")).eval()
    naive = contiguous_copy(student).eval()
    return student, EMATeacher(student).model, naive, EMATeacher(naive).model


@pytest.mark.parametrize(
    "overrides",
    [
        # every block of the named zones drawn and every gate passed: T-PatchMix mixes for sure
        ["ssl.threshold=0.01", "ssl.tpatchmix_block_prob=1.0"],
        ["ssl.threshold=0.01", "ssl.tpatchmix_block_prob=1.0", "ssl.tpatchmix_mode=probability",
         "ssl.contrastive=clip"],
        ["ssl.mix=none", "ssl.contrastive=none", "ssl.posaug=false", "ssl.img_strong=false"],
        # the other readings: grid draw, label sides rule, the reference quirks, ITC on the strong pass
        ["ssl.threshold=0.01", "ssl.tpatchmix_block_prob=1.0", "ssl.tpatchmix_draw=grid",
         "ssl.tpatchmix_conflict=sides", "ssl.tpatchmix_paste_before_gate=true", "ssl.strong_clip=true",
         "ssl.itc_unsup_view=strong", "ssl.zoom_prob=1.0", "ssl.zoom_mode=bilinear", "ssl.posaug_edit_prob=1.0"],
        ["ssl.threshold=0.01", "ssl.tpatchmix_block_prob=1.0", "ssl.tpatchmix_mode=probability",
         "ssl.tpatchmix_probability_text=unchanged"],
    ],
)
def test_naive_ssl_loss_equals_fast_ssl_loss(tiny_setup, overrides):
    base, encoder, cache, labeled, unlabeled, _ = tiny_setup
    cfg = load_config(None, sets=TINY_SETS + overrides)
    assert base.model == cfg.model
    student, teacher, naive_student, naive_teacher = _models(cfg, encoder.dim)
    lab = take(labeled, torch.tensor([0, 2, 4, 5]))
    unl = take(unlabeled, torch.tensor([1, 3, 0, 5]))
    loss_fn, weights = DiceCELoss(), full_weights(cfg)

    fast_loss, fast_parts = ssl_loss(student, teacher, lab, unl, cache, loss_fn, cfg, weights,
                                     torch.Generator().manual_seed(5), random.Random(9))

    # the same views the fast step draws, in its order: weak labeled, weak unlabeled, strong
    gen = torch.Generator().manual_seed(5)
    weak_l = configured_weak_view(lab.images, lab.masks, gen, cfg.ssl)
    weak_u = configured_weak_view(unl.images, None, gen, cfg.ssl)
    settings = StrongViewSettings(clip=cfg.ssl.strong_clip)
    strong = strong_view(normalise(weak_u.images), gen, settings) if cfg.ssl.img_strong else None
    naive_loss, naive_parts = naive_ssl_loss(
        naive_student, naive_teacher, encoder,
        NaiveViews(weak_l.images, weak_l.masks, None, lab.labels, lab.captions),
        NaiveViews(weak_u.images, None, strong, unl.labels, unl.captions),
        loss_fn, cfg, weights, gen, random.Random(9),
    )  # fmt: skip

    if cfg.ssl.mix == "tpatchmix":
        assert fast_parts["mixed_share"] > 0  # the mixing code really ran
    for key, value in naive_parts.items():
        assert value.item() == pytest.approx(fast_parts[key].item(), rel=1e-4, abs=1e-5), key
    assert naive_loss.item() == pytest.approx(fast_loss.item(), rel=1e-4)


def test_naive_ssl_loss_differs_when_the_inputs_differ(tiny_setup):
    """The comparison above has teeth: another PosAug draw changes the student text and the loss."""
    _, encoder, cache, labeled, unlabeled, _ = tiny_setup
    cfg = load_config(None, sets=TINY_SETS + ["ssl.posaug_rho=0.5"])
    student, teacher, _, _ = _models(cfg, encoder.dim)
    lab, unl = take(labeled, torch.tensor([0, 1, 2, 3])), take(unlabeled, torch.tensor([0, 1, 2, 3]))
    losses = []
    for text_seed in range(6):
        loss, _ = ssl_loss(student, teacher, lab, unl, cache, DiceCELoss(), cfg, full_weights(cfg),
                           torch.Generator().manual_seed(5), random.Random(text_seed))
        losses.append(round(loss.item(), 6))
    assert len(set(losses)) > 1


def test_naive_sup_loss_equals_supervised_loss(tiny_setup):
    cfg, encoder, cache, labeled, _, _ = tiny_setup
    student, _, naive_student, _ = _models(cfg, encoder.dim)
    index = torch.tensor([5, 1, 3])
    fast = supervised_loss(student, labeled, index, cache, DiceCELoss(), cfg, torch.Generator().manual_seed(2))
    batch = take(labeled, index)
    weak = configured_weak_view(batch.images, batch.masks, torch.Generator().manual_seed(2), cfg.ssl)
    naive = naive_sup_loss(naive_student, encoder, NaiveViews(weak.images, weak.masks, None, batch.labels,
                                                              batch.captions), DiceCELoss())
    assert naive.item() == pytest.approx(fast.item(), rel=1e-5)


def test_naive_dataset_decodes_what_the_cache_holds(tiny_setup):
    """With the zoom fixed at 1 the naive per-sample path returns the cached pixels and masks."""
    _, _, _, labeled, _, records = tiny_setup
    dataset = NaiveSampleDataset(records[:6], 64, (1.0, 1.0), with_masks=True, with_strong=True, seed=0)
    for i in (0, 4):
        item = dataset[i]
        assert torch.allclose(item["weak"], to_unit(labeled.images[i]), atol=1e-6)
        assert torch.equal(item["mask"], labeled.masks[i])
        assert torch.equal(item["label"], labeled.labels[i]) and item["caption"] == labeled.captions[i]
        assert item["strong"].shape == (1, 64, 64) and item["strong"].dtype == torch.float32
