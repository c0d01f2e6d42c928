"""T-PatchMix's default draw (reference `sample_block_mask_pos` / `sample_block_mask_prob`): ONE block
per sample with probability 0.08, the reference gate, laterality rule and paste-before-gate quirk,
and the fire rate on the real QaTa-COV19 masks under each draw."""

from __future__ import annotations

import random

import pytest
import torch

from medref_cli.augment.blocks import sample_position_block, sample_probability_block
from medref_cli.augment.mixing import partner_indices
from medref_cli.augment.regions import region_mask
from medref_cli.augment.tpatchmix import draw_tpatchmix_mask, gate_mask, tpatchmix
from medref_cli.config.schema import SSLConfig
from medref_cli.text.augment import first_phrase_label, student_captions_from_config

LU = [1, 0, 0, 0, 0, 0]
LL = [0, 0, 1, 0, 0, 0]
RU = [0, 0, 0, 1, 0, 0]


def _box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = mask.nonzero(as_tuple=True)
    return rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1


def test_position_draw_is_one_block_inside_the_first_phrase_region_at_any_offset():
    # 96 x 96: "middle lower left lung" = rows [32, 96) x cols [0, 48)
    labels = torch.tensor([[0, 1, 1, 0, 0, 0]] * 400, dtype=torch.float32)
    mask = sample_position_block(labels, 96, 96, block=16, prob=1.0, generator=torch.Generator().manual_seed(0))
    region = region_mask(labels[:1], 96, 96)[0, 0]
    tops, lefts = set(), set()
    for m in mask[:, 0]:
        top, bottom, left, right = _box(m)
        assert (bottom - top, right - left) == (16, 16) and int(m.sum()) == 256  # one whole block
        assert region[m].all()  # inside the region
        tops.add(top)
        lefts.add(left)
    assert min(tops) >= 32 and max(tops) <= 80 and min(lefts) >= 0 and max(lefts) <= 32
    assert len(tops) > 20 and any(t % 16 for t in tops)  # any pixel offset, not grid cells


def test_position_draw_fires_with_its_probability_and_never_without_a_phrase():
    labels = torch.tensor([LU] * 3000 + [[0] * 6] * 100, dtype=torch.float32)
    mask = sample_position_block(labels, 48, 48, block=16, prob=0.08, generator=torch.Generator().manual_seed(1))
    fired = mask.flatten(1).any(dim=1)
    assert not fired[3000:].any()
    # binomial sd = sqrt(3000 * 0.08 * 0.92) = 14.9; allow 4 sd
    assert abs(int(fired[:3000].sum()) - 240) <= 60


def test_probability_draw_is_one_block_centred_on_a_confident_partner_pixel():
    probs = torch.zeros(300, 1, 64, 64)
    probs[:, :, 40:44, 10:14] = 0.9  # a small confident spot, near no edge
    probs[:, :, 0:2, 60:64] = 0.9  # and one at the top-right corner: the block is shifted inside
    mask = sample_probability_block(probs, block=16, prob=1.0, confidence=0.55,
                                    generator=torch.Generator().manual_seed(2))
    centres = set()
    for m in mask[:, 0]:
        top, bottom, left, right = _box(m)
        assert (bottom - top, right - left) == (16, 16) and int(m.sum()) == 256
        assert 0 <= top and bottom <= 64 and 0 <= left and right <= 64
        centres.add((top, left))
        if top == 0:  # the corner spot: clipped to the image
            assert left == 48
        else:  # centred on a pixel of the spot: top = row - 8, left = col - 8
            assert 32 <= top <= 35 and 2 <= left <= 5
    assert (0, 48) in centres and len(centres) > 5
    none = sample_probability_block(torch.full((4, 1, 64, 64), 0.5), block=16, prob=1.0, confidence=0.55)
    assert not none.any()  # no pixel reaches delta: no block


def test_probability_mode_single_block_in_tpatchmix():
    images = torch.stack([torch.zeros(1, 48, 48), torch.ones(1, 48, 48)])
    probs = torch.stack([torch.full((1, 48, 48), 0.2), torch.full((1, 48, 48), 0.1)])
    probs[1, :, :, 12:] = 0.95  # any block centred in here has r >= (12 x 0.95 + 4 x 0.1) / 16 > delta
    for seed in range(5):
        result = tpatchmix(images, probs, torch.tensor([LU, RU]), mode="probability", block=16, block_prob=1.0,
                           partner=torch.tensor([1, 0]), generator=torch.Generator().manual_seed(seed))
        m = result.mask[0, 0]
        assert int(m.sum()) == 256 and result.kept[0]  # one block, over the partner's lesion
        assert torch.equal(result.images[0, 0], m.float())
    assert not result.kept[1]  # P_0 = 0.2 everywhere: nothing confident to centre on


def test_first_phrase_laterality_rule_and_the_sides_rule():
    """Reference: "left" in i's first phrase and "right" in j's (or the reverse) disables mixing; the
    `sides` reading only when one label names only left zones and the other only right zones."""
    bilateral_left_first = torch.tensor([[0, 0, 1, 0, 0, 1]], dtype=torch.float32)  # "lower left ... and lower right"
    right_only = torch.tensor([[0, 0, 0, 1, 0, 0]], dtype=torch.float32)
    labels = torch.cat([bilateral_left_first, right_only])
    first = torch.tensor([[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.float32)
    probs = torch.ones(2, 1, 48, 48)
    partner = torch.tensor([1, 0])
    kwargs = {"block": 16, "block_prob": 1.0, "delta": 0.55, "generator": torch.Generator().manual_seed(0)}
    reference = draw_tpatchmix_mask(first, probs, partner, conflict_labels=first, **kwargs)
    assert not reference.any()  # left vs right first phrases: conflict for both samples
    sides = draw_tpatchmix_mask(first, probs, partner, conflict_labels=labels, **kwargs)
    assert sides.flatten(1).any(dim=1).tolist() == [True, True]  # a bilateral label never conflicts


def test_gate_on_the_one_block_and_the_paste_before_gate_quirk():
    images = torch.stack([torch.zeros(1, 48, 48), torch.ones(1, 48, 48)])
    probs = torch.stack([torch.full((1, 48, 48), 0.2), torch.full((1, 48, 48), 0.3)])  # j below delta
    kwargs = {"block": 16, "block_prob": 1.0, "delta": 0.55, "partner": torch.tensor([1, 0])}
    plain = tpatchmix(images, probs, torch.tensor([LU, LL]), generator=torch.Generator().manual_seed(0), **kwargs)
    assert not plain.kept.any() and torch.equal(plain.images, images)
    quirk = tpatchmix(images, probs, torch.tensor([LU, LL]), paste_before_gate=True,
                      generator=torch.Generator().manual_seed(0), **kwargs)
    assert not quirk.kept.any() and torch.equal(quirk.pseudo_mask, plain.pseudo_mask)  # target untouched
    assert int(quirk.images[0].sum()) == 256  # ... but the image got the patch of j
    assert torch.equal(quirk.labels, plain.labels)


def _fire_rate(split, draw: str, seeds: range) -> float:
    masks = split.masks.float()  # ground-truth masks stand in for the teacher's P
    labels = split.labels.float()
    fired = drawn = 0
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        captions = student_captions_from_config(split.captions, random.Random(seed), SSLConfig())  # PosAug first
        first = torch.tensor([first_phrase_label(c) for c in captions], dtype=torch.float32)
        partner = partner_indices(len(captions), gen)
        mask = draw_tpatchmix_mask(first if draw == "single" else labels, masks, partner, draw=draw,
                                   conflict_labels=first, generator=gen)
        gated = gate_mask(mask, masks[partner], SSLConfig().threshold, "sample", 16)
        fired += int(gated.flatten(1).any(dim=1).sum())
        drawn += len(captions)
    return fired / drawn


@pytest.mark.slow
def test_fire_rate_on_the_real_masks_under_each_draw(qata_root):
    """On the 1000 QaTa-COV19 train masks at 224 px (the reference's rate: ~0.5% of samples): the
    single block fires for ~0.55% (6000 draws, sd 0.1%), the grid draw for ~1.1% (3000 draws, sd 0.19%)."""
    from medref_cli.data.cache import load_split
    from medref_cli.data.readers import read_dataset

    split = load_split(read_dataset(qata_root)["train"], 224)
    assert len(split.captions) == 1000
    single = _fire_rate(split, "single", range(6))
    assert 0.0025 <= single <= 0.009, single
    grid = _fire_rate(split, "grid", range(3))
    assert 0.006 <= grid <= 0.018, grid
