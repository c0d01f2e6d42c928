"""ITCL (paper eq. 9) and CLIP: worked values, the Jaccard table, ITCL == CLIP for disjoint labels."""

from __future__ import annotations

import math

import pytest
import torch

from medref_cli.losses.contrastive import clip_loss, itcl_loss, jaccard_affinity

# bits: LU LM LL RU RM RL
LU = [1, 0, 0, 0, 0, 0]
LU_LM = [1, 1, 0, 0, 0, 0]
LEFT = [1, 1, 1, 0, 0, 0]
LM_LL_RU = [0, 1, 1, 1, 0, 0]
ALL = [1, 1, 1, 1, 1, 1]
RL = [0, 0, 0, 0, 0, 1]
EMPTY = [0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("q_i", "q_j", "expected"),
    [
        (LU, LU_LM, 1 / 2),  # |{LU}| / |{LU, LM}|
        (LEFT, LM_LL_RU, 2 / 4),  # {LM, LL} / {LU, LM, LL, RU}
        (ALL, RL, 1 / 6),
        (LU, RL, 0.0),  # disjoint
        (LU, EMPTY, 0.0),  # empty vs non-empty: empty intersection
        (EMPTY, EMPTY, 0.0),  # empty vs empty: Jaccard undefined; the reference's value (negatives)
        (LEFT, LEFT, 1.0),
    ],
)
def test_jaccard_affinity_table(q_i, q_j, expected):
    affinity = jaccard_affinity(torch.tensor([q_i, q_j]))
    assert affinity[0, 1].item() == pytest.approx(expected)
    assert affinity[1, 0].item() == pytest.approx(expected)
    assert affinity[0, 0].item() == affinity[1, 1].item() == 1.0


def test_two_empty_labels_are_negatives_by_default_and_the_diagonal_stays_one():
    """Row 20 (the reference's value): two all-zero labels -> A = I."""
    affinity = jaccard_affinity(torch.tensor([EMPTY, EMPTY, EMPTY]))
    assert affinity.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_two_empty_labels_match_when_asked():
    affinity = jaccard_affinity(torch.tensor([EMPTY, EMPTY, LU]), empty_matches_empty=True)
    assert affinity.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_itcl_of_all_empty_labels_is_clip_by_default_and_follows_the_setting():
    generator = torch.Generator().manual_seed(4)
    v = torch.randn(4, 8, generator=generator)
    u = torch.randn(4, 8, generator=generator)
    empty = torch.zeros(4, 6, dtype=torch.long)
    assert itcl_loss(v, u, empty).item() == pytest.approx(clip_loss(v, u).item(), rel=1e-6)
    # all four count as positives of each other: uniform weights over the row
    logits = torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(u, dim=1).T / 0.07
    uniform = -0.5 * (logits.log_softmax(dim=1).mean() + logits.T.log_softmax(dim=1).mean())
    assert itcl_loss(v, u, empty, empty_matches_empty=True).item() == pytest.approx(uniform.item(), rel=1e-5)


def test_the_ssl_step_passes_ssl_itcl_empty_match_to_itcl():
    from medref_cli.config import load_config
    from medref_cli.training.ssl_step import contrastive_term

    assert load_config().ssl.itcl_empty_match is False
    generator = torch.Generator().manual_seed(5)
    v = torch.randn(3, 8, generator=generator)
    u = torch.randn(3, 8, generator=generator)
    labels = torch.tensor([EMPTY, EMPTY, RL]).float()
    for match in (False, True):
        expected = itcl_loss(v, u, labels, 0.07, empty_matches_empty=match)
        assert contrastive_term("itcl", v, u, labels, 0.07, match).item() == pytest.approx(expected.item())
    assert contrastive_term("itcl", v, u, labels, 0.07).item() == pytest.approx(clip_loss(v, u).item(), rel=1e-6)


IDENTITY_2 = torch.eye(2)


def test_itcl_two_by_two_worked_value():
    # v = u = identity rows, tau = 1  ->  S = [[1, 0], [0, 1]]
    # labels LU and LU+LM  ->  A = [[1, 1/2], [1/2, 1]], row weights (2/3, 1/3) and (1/3, 2/3)
    # log softmax of row 0: (1 - L, -L) with L = log(e^1 + e^0) = log(1 + e) = 1.31326169
    # row 0 term: -(2/3 (1 - L) + 1/3 (-L)) = L - 2/3; every row and column gives the same by symmetry
    # loss = L - 2/3 = 0.64659502
    expected = math.log(1.0 + math.e) - 2.0 / 3.0
    loss = itcl_loss(IDENTITY_2, IDENTITY_2, torch.tensor([LU, LU_LM]), tau=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.64659502, abs=1e-8)


def test_clip_two_by_two_worked_value():
    # S = I: each direction's cross-entropy = -log(e / (e + 1)) = log(1 + e) - 1 = 0.31326169
    loss = clip_loss(IDENTITY_2, IDENTITY_2, tau=1.0)
    assert loss.item() == pytest.approx(math.log(1.0 + math.e) - 1.0, abs=1e-6)


def eq9_by_loops(v: list[list[float]], u: list[list[float]], labels: list[list[int]], tau: float) -> float:
    """Paper eq. 9 written out with plain Python sums (inputs already unit length)."""
    n = len(v)
    s = [[sum(a * b for a, b in zip(v[i], u[j])) / tau for j in range(n)] for i in range(n)]

    def jaccard(a, b):
        inter = sum(x & y for x, y in zip(a, b))
        union = sum(x | y for x, y in zip(a, b))
        return inter / union

    a = [[1.0 if i == j else jaccard(labels[i], labels[j]) for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        row_norm = math.log(sum(math.exp(s[i][k]) for k in range(n)))
        col_norm = math.log(sum(math.exp(s[k][i]) for k in range(n)))
        weight_sum = sum(a[i])
        image_to_text = sum(a[i][j] * (s[i][j] - row_norm) for j in range(n)) / weight_sum
        text_to_image = sum(a[i][j] * (s[j][i] - col_norm) for j in range(n)) / weight_sum
        total += image_to_text + text_to_image
    return -total / (2 * n)


def test_itcl_three_by_three_matches_loop_reference():
    # unit vectors at angles 0, 60 and 150 degrees (images) and 20, 90, 200 degrees (texts)
    def unit(deg):
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    v = [unit(0), unit(60), unit(150)]
    u = [unit(20), unit(90), unit(200)]
    labels = [LEFT, LM_LL_RU, RL]
    expected = eq9_by_loops(v, u, labels, tau=0.5)
    loss = itcl_loss(torch.tensor(v), torch.tensor(u), torch.tensor(labels), tau=0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_itcl_equals_clip_when_labels_are_disjoint():
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(6, 16, generator=generator)
    u = torch.randn(6, 16, generator=generator)
    one_hot = torch.eye(6, dtype=torch.long)  # six mutually disjoint single-zone labels
    assert itcl_loss(v, u, one_hot).item() == pytest.approx(clip_loss(v, u).item(), rel=1e-6)


def test_itcl_differs_from_clip_when_labels_overlap():
    generator = torch.Generator().manual_seed(1)
    v = torch.randn(3, 8, generator=generator)
    u = torch.randn(3, 8, generator=generator)
    labels = torch.tensor([LEFT, LEFT, RL])
    assert abs(itcl_loss(v, u, labels).item() - clip_loss(v, u).item()) > 1e-3


def test_inputs_are_normalised_inside():
    generator = torch.Generator().manual_seed(2)
    v = torch.randn(4, 8, generator=generator)
    u = torch.randn(4, 8, generator=generator)
    labels = torch.tensor([LEFT, LU, RL, ALL])
    assert itcl_loss(3.0 * v, 0.5 * u, labels).item() == pytest.approx(
        itcl_loss(v, u, labels).item(), rel=1e-6
    )


@pytest.mark.parametrize("loss_name", ["itcl", "clip"])
def test_gradients_finite_at_small_temperature(loss_name):
    generator = torch.Generator().manual_seed(3)
    v = torch.randn(8, 32, generator=generator, requires_grad=True)
    u = v.detach().clone().requires_grad_(True)  # identical pairs: large logits at tau = 0.07
    labels = torch.randint(0, 2, (8, 6), generator=generator)
    loss = itcl_loss(v, u, labels, tau=0.07) if loss_name == "itcl" else clip_loss(v, u, tau=0.07)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(v.grad).all() and torch.isfinite(u.grad).all()
    assert v.grad.abs().sum() > 0
