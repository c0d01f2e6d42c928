"""T-PatchMix: the lesion gate, eq. 8 on a hand example, conflicts, pairing, seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from medref_cli.augment.mixing import (
    lesion_gate,
    lesion_gate_per_block,
    lesion_ratio,
    mix_by_mask,
    partner_indices,
)
from medref_cli.augment.tpatchmix import tpatchmix
from medref_cli.errors import MedrefError

LU = [1, 0, 0, 0, 0, 0]
LL = [0, 0, 1, 0, 0, 0]
RU = [0, 0, 0, 1, 0, 0]


def test_mixed_pseudo_mask_on_a_hand_example():
    # P_i = [[0.9, 0.2], [0.6, 0.4]], P_j = [[0.1, 0.8], [0.3, 0.7]], M_i = [[0, 1], [1, 0]]
    # (1 - M) P_i + M P_j = [[0.9, 0.8], [0.3, 0.4]] -> >= 0.5 -> [[1, 1], [0, 0]]
    probs = torch.tensor([[[[0.9, 0.2], [0.6, 0.4]]], [[[0.1, 0.8], [0.3, 0.7]]]])
    images = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[5.0, 6.0], [7.0, 8.0]]]])
    mask = torch.tensor([[[[False, True], [True, False]]], [[[False, False], [False, False]]]])
    partner = torch.tensor([1, 0])
    mixed_images, mixed_probs, pseudo = mix_by_mask(images, probs, mask, partner, threshold=0.5)
    assert torch.allclose(mixed_probs[0, 0], torch.tensor([[0.9, 0.8], [0.3, 0.4]]))
    assert pseudo[0, 0].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert mixed_images[0, 0].tolist() == [[1.0, 6.0], [7.0, 4.0]]  # eq. 6
    assert torch.equal(mixed_images[1], images[1]) and pseudo[1, 0].tolist() == [
        [0.0, 1.0],
        [0.0, 1.0],
    ]  # P_j unmixed


def lesion_left_probs() -> torch.Tensor:
    """8 x 8 partner map: 0.9 on the left half (a lesion), 0.1 on the right half."""
    probs = torch.full((1, 1, 8, 8), 0.1)
    probs[..., :4] = 0.9
    return probs


def half_mask(columns: slice) -> torch.Tensor:
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, columns] = True
    return mask


@pytest.mark.parametrize(
    ("columns", "ratio", "kept_at_055", "kept_at_045"),
    [
        (slice(0, 4), 0.9, True, True),  # over the lesion: r = 0.9
        (slice(4, 8), 0.1, False, False),  # over background: r = 0.1
        (slice(2, 6), 0.5, False, True),  # half and half: r = (8 * 0.9 + 8 * 0.1) / 16 = 0.5
    ],
)
def test_lesion_gate(columns, ratio, kept_at_055, kept_at_045):
    mask, probs = half_mask(columns), lesion_left_probs()
    assert lesion_ratio(mask, probs).item() == pytest.approx(ratio, abs=1e-5)
    for delta, kept in ((0.55, kept_at_055), (0.45, kept_at_045)):
        gated = lesion_gate(mask, probs, delta)
        assert torch.equal(gated, mask if kept else torch.zeros_like(mask))


def test_per_block_gate_keeps_only_the_lesion_blocks():
    # mask = top row of 4 x 4 blocks over the whole width; lesion on the left half:
    # block (0, 0) mean 0.9 -> kept, block (0, 1) mean 0.1 -> dropped. The per-sample ratio is
    # (16 * 0.9 + 16 * 0.1) / 32 = 0.5 < 0.55, so the paper's gate drops the whole mask.
    mask = half_mask(slice(0, 8))
    probs = lesion_left_probs()
    per_block = lesion_gate_per_block(mask, probs, delta=0.55, block=4)
    assert torch.equal(per_block, half_mask(slice(0, 4)))
    assert not lesion_gate(mask, probs, 0.55).any()


def test_empty_mask_stays_empty_through_the_gate():
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    assert lesion_ratio(empty, lesion_left_probs()).item() == 0.0
    assert not lesion_gate(empty, lesion_left_probs(), 0.55).any()


@pytest.mark.parametrize("batch", [2, 3, 5, 8, 32])
def test_partners_form_a_permutation_without_fixed_points(batch):
    for seed in range(5):
        partner = partner_indices(batch, torch.Generator().manual_seed(seed))
        assert sorted(partner.tolist()) == list(range(batch))
        assert (partner != torch.arange(batch)).all()


def test_single_sample_is_its_own_partner_and_is_not_kept():
    assert partner_indices(1).tolist() == [0]
    images, probs = torch.rand(1, 1, 32, 32), torch.full((1, 1, 32, 32), 0.9)
    result = tpatchmix(images, probs, torch.tensor([LU]), block=16, block_prob=1.0)
    assert result.kept.tolist() == [False]


def pair_batch(label_i, label_j, prob_j=0.9):
    """Two 48 x 48 samples: image i all 0, image j all 1; P_i = 0.2, P_j = prob_j; partner swap."""
    images = torch.stack([torch.zeros(1, 48, 48), torch.ones(1, 48, 48)])
    probs = torch.stack([torch.full((1, 48, 48), 0.2), torch.full((1, 48, 48), prob_j)])
    return images, probs, torch.tensor([label_i, label_j]), torch.tensor([1, 0])


def test_position_mode_pastes_partner_blocks_into_the_named_zone():
    # 48 x 48, block 16: left upper = rows [0,16) x cols [0,24) -> one whole block, (0, 0)
    images, probs, labels, partner = pair_batch(LU, LL)
    result = tpatchmix(images, probs, labels, block=16, block_prob=1.0, delta=0.55, partner=partner, draw="grid")
    expected = torch.zeros(48, 48, dtype=torch.bool)
    expected[:16, :16] = True
    assert torch.equal(result.mask[0, 0], expected)
    assert torch.equal(result.images[0, 0], expected.float())  # ones (from j) inside M, zeros outside
    assert torch.equal(result.pseudo_mask[0, 0], expected.float())  # 0.9 inside, 0.2 outside
    assert result.kept[0] and result.text_mixing
    assert result.labels[0].tolist() == [1, 0, 1, 0, 0, 0]  # "left upper and left lower"
    # sample 1 (left lower, partner 0 with P = 0.2): its block fails the gate (r = 0.2 < 0.55)
    assert not result.kept[1] and not result.mask[1].any()
    assert result.labels[1].tolist() == LL and torch.equal(result.images[1], images[1])


def test_laterality_conflict_disables_mixing():
    images, probs, labels, partner = pair_batch(LU, RU)
    result = tpatchmix(images, probs, labels, block=16, block_prob=1.0, partner=partner)
    assert result.kept.tolist() == [False, False] and not result.mask.any()
    assert torch.equal(result.images, images)
    assert torch.equal(result.pseudo_mask, (probs >= 0.5).float())
    assert torch.equal(result.labels, labels)


def test_gate_drops_blocks_over_background_of_partner():
    images, probs, labels, partner = pair_batch(LU, LL, prob_j=0.3)
    result = tpatchmix(images, probs, labels, block=16, block_prob=1.0, partner=partner)
    assert not result.kept.any() and not result.mask.any()


def test_block_gate_in_tpatchmix():
    # 48 x 48, block 16; i names the whole left side (admissible blocks: column 0, rows 0-2);
    # j's lesion (0.9) covers only block (0, 0), elsewhere 0.1 -> per-sample r = (0.9 + 0.1 + 0.1) / 3
    images, probs, labels, partner = pair_batch([1, 1, 1, 0, 0, 0], LL, prob_j=0.1)
    probs[1, :, :16, :16] = 0.9
    kwargs = {"block": 16, "block_prob": 1.0, "delta": 0.55, "partner": partner, "draw": "grid"}
    assert not tpatchmix(images, probs, labels, gate="sample", **kwargs).kept[0]
    result = tpatchmix(images, probs, labels, gate="block", **kwargs)
    expected = torch.zeros(48, 48, dtype=torch.bool)
    expected[:16, :16] = True
    assert result.kept[0] and torch.equal(result.mask[0, 0], expected)


def test_probability_mode_takes_partner_lesion_blocks():
    # partner j: lesion (0.9) on block (2, 2) only; i names left upper but probability mode ignores it
    images, probs, labels, partner = pair_batch(LU, RU, prob_j=0.1)
    probs[1, :, 32:48, 32:48] = 0.9
    result = tpatchmix(images, probs, labels, mode="probability", block=16, block_prob=1.0, partner=partner,
                       draw="grid")
    expected = torch.zeros(48, 48, dtype=torch.bool)
    expected[32:, 32:] = True
    assert torch.equal(result.mask[0, 0], expected) and result.kept[0]
    assert not result.kept[1]  # P_0 = 0.2 everywhere: no high-confidence block


def random_batch(seed: int, batch: int = 8):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 64, 64, generator=generator)
    probs = torch.rand(batch, 1, 64, 64, generator=generator) * 0.4 + 0.5  # 0.5 .. 0.9
    labels = torch.randint(0, 2, (batch, 6), generator=generator)
    return images, probs, labels


@pytest.mark.parametrize("mode", ["position", "probability"])
def test_seeded_generator_reproduces_the_result(mode):
    images, probs, labels = random_batch(0)

    def run(seed):
        return tpatchmix(images, probs, labels, mode=mode, block=16, block_prob=0.5, delta=0.6,
                         generator=torch.Generator().manual_seed(seed))  # fmt: skip

    first, again, other = run(11), run(11), run(12)
    for field in ("images", "probs", "pseudo_mask", "mask", "partner", "kept", "labels"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    assert first.kept.any()
    assert not (torch.equal(first.mask, other.mask) and torch.equal(first.partner, other.partner))


def test_kept_matches_nonempty_final_mask_and_shapes():
    images, probs, labels = random_batch(3)
    result = tpatchmix(images, probs, labels, block=16, block_prob=0.5, delta=0.6,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert result.images.shape == images.shape and result.pseudo_mask.shape == probs.shape
    assert result.kept.tolist() == result.mask.flatten(1).any(dim=1).tolist()
    expected_images = torch.where(result.mask, images[result.partner], images)
    assert torch.equal(result.images, expected_images)


@pytest.mark.parametrize("bad", [{"mode": "random"}, {"gate": "pixel"}])
def test_unknown_mode_or_gate_raises(bad):
    images, probs, labels = random_batch(0, batch=2)
    with pytest.raises(MedrefError):
        tpatchmix(images, probs, labels, **bad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["position", "probability"])
def test_same_result_on_cuda_with_a_cpu_generator(mode):
    images, probs, labels = random_batch(4)
    kwargs = {"mode": mode, "block": 16, "block_prob": 0.5, "delta": 0.6}
    on_cpu = tpatchmix(images, probs, labels, generator=torch.Generator().manual_seed(9), **kwargs)
    on_cuda = tpatchmix(images.cuda(), probs.cuda(), labels.cuda(),
                        generator=torch.Generator().manual_seed(9), **kwargs)  # fmt: skip
    assert on_cuda.images.is_cuda and on_cuda.kept.is_cuda
    for field in ("images", "pseudo_mask", "mask", "partner", "kept", "labels"):
        assert torch.equal(getattr(on_cpu, field), getattr(on_cuda, field).cpu())
