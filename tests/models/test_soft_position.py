"""ISPG's soft position input on the segmentation models: off, a model computes exactly what it did
before the input existed (golden outputs made with that code); on, six zone probabilities reach the
fusion as one gated token and the ITCL text embedding as a gated offset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medref_cli.config.schema import ModelConfig
from medref_cli.models.encoders import TINY_RANDOM_BERT
from medref_cli.models.registry import create_model

GOLDEN = Path(__file__).parent / "golden" / "soft_position_off.pt"
CAPTIONS = ["bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
            "unilateral pulmonary infection, one infected area, upper middle left lung."]
BACKBONES = ("mmi-unet-tiny", "guidedecoder-tiny")


def build(backbone: str, text_dim: int, **soft) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, visual_pretrained=False, text_encoder=TINY_RANDOM_BERT, proj_dim=16, **soft)
    return create_model(cfg, text_dim).eval()


def images() -> torch.Tensor:
    return torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def one_thread():
    """The golden outputs were computed on one CPU thread: other thread counts split the reductions
    differently and change the last bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_soft_position_off_gives_todays_outputs(backbone, tiny_text, one_thread):
    golden = torch.load(GOLDEN, weights_only=True)
    text = tiny_text.encode(CAPTIONS)
    # the same up to the last bits: CPUs of other kinds run other kernels (one thread still); a change
    # of the model path moves outputs by far more than this
    assert torch.allclose(text.tokens, golden["text_tokens"], rtol=1e-5, atol=1e-6)
    model = build(backbone, tiny_text.dim)
    assert sorted(model.state_dict()) == golden[backbone]["params"]  # no new weight
    with torch.no_grad():
        out = model(images(), text)
        v, u = model.embed(out.fused, text)
    expected = golden[backbone]
    for name, value in (("logits", out.logits), ("fused", out.fused), ("v", v), ("u", u)):
        assert torch.allclose(value, expected[name], rtol=1e-4, atol=1e-4), name


@pytest.mark.parametrize("backbone", BACKBONES)
def test_soft_position_input_reaches_the_output_and_the_text_embedding(backbone, tiny_text):
    model = build(backbone, tiny_text.dim, soft_position=True)
    text = tiny_text.encode(CAPTIONS)
    soft = model.soft_position
    assert soft is not None and model.takes_positions
    assert torch.sigmoid(soft.token_gate).item() == pytest.approx(0.1192, abs=1e-4)  # gate init -2.0
    label = torch.tensor([[0, 0, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        zero = model(images(), text)
        _none_v, none_u = model.embed(zero.fused, text)
        given = model(images(), text.with_positions(torch.zeros(2, 6)))
        labelled = model(images(), text.with_positions(label))
        _v, u = model.embed(labelled.fused, text.with_positions(label))
    # no positions = zeros (the reference's removed route)
    assert torch.equal(zero.logits, given.logits)
    assert not torch.allclose(labelled.logits, zero.logits)
    assert not torch.allclose(u, none_u)
    # the offset is added before normalisation: u = normalise(text_proj(pooled) + sigmoid(g) * MLP(label))
    with torch.no_grad():
        raw = model.itcl.text_proj(text.pooled) + torch.sigmoid(soft.contrast_gate) * soft.contrast(label)
    assert torch.allclose(u, torch.nn.functional.normalize(raw, dim=-1), atol=1e-6)


def test_position_token_is_appended_as_a_real_token(tiny_text):
    model = build("mmi-unet-tiny", tiny_text.dim, soft_position=True)
    text = tiny_text.encode(CAPTIONS).with_positions(torch.tensor([[0, 0, 1, 0, 0, 1]] * 2, dtype=torch.float32))
    extended = model.position_text(text)
    soft = model.soft_position
    assert extended.tokens.shape == (2, 25, tiny_text.dim) and extended.mask[:, -1].all()
    assert torch.equal(extended.tokens[:, :24], text.tokens)
    with torch.no_grad():
        token = torch.sigmoid(soft.token_gate) * soft.token(text.positions)
    assert torch.allclose(extended.tokens[:, -1], token)


def test_soft_input_is_differentiable(tiny_text):
    """Segmentation gradients reach the positions (an image predictor can learn through them)."""
    model = build("mmi-unet-tiny", tiny_text.dim, soft_position=True).train()
    positions = torch.full((2, 6), 0.5, requires_grad=True)
    out = model(images(), tiny_text.encode(CAPTIONS).with_positions(positions))
    out.logits.mean().backward()
    assert positions.grad is not None and positions.grad.abs().sum() > 0


def test_model_without_soft_input_refuses_positions(tiny_text):
    model = build("mmi-unet-tiny", tiny_text.dim)
    text = tiny_text.encode(CAPTIONS).with_positions(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="no soft position input"):
        model(images(), text)
