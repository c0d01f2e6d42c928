"""Every registered model: shapes, finite values, gradients everywhere, text matters."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medref_cli.config.schema import ModelConfig
from medref_cli.errors import MedrefError
from medref_cli.models import ModelOutput, create_model, list_models
from medref_cli.models.encoders import TextFeatures

CAPTIONS_A = [
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, middle left lung.",
]
CAPTIONS_B = [
    "Unilateral pulmonary infection, one infected area, lower right lung.",
    "Bilateral pulmonary infection, three infected areas, all left lung and upper right lung.",
]
SMALL = 64  # px, the smallest input ConvNeXt handles (stride 32 -> 2x2)


def build(name: str, text_dim: int, **overrides) -> torch.nn.Module:
    cfg = ModelConfig(backbone=name, visual_pretrained=False, proj_dim=16)
    torch.manual_seed(0)
    return create_model(replace(cfg, **overrides), text_dim)


def test_registry_holds_both_backbones_and_their_tiny_variants():
    assert list_models() == ["guidedecoder", "guidedecoder-tiny", "mmi-unet", "mmi-unet-tiny"]


VARIANTS = [(name, {}) for name in list_models()] + [
    ("guidedecoder-tiny", {"guidedecoder_itc_image": "visual"}),
    ("mmi-unet-tiny", {"text_padding_mask": True}),
]


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_forward_backward_shapes_and_gradients(name, overrides, tiny_text):
    model = build(name, tiny_text.dim, **overrides).train()
    text = tiny_text.encode(CAPTIONS_A)
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(1))

    out = model(images, text)
    v, u = model.embed(out.fused, text)

    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 1, SMALL, SMALL)
    assert out.fused.shape == (2, model.encoder.channels[-1], SMALL // 32, SMALL // 32)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.fused).all()
    assert v.shape == u.shape == (2, 16)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(2))

    # random weights on every output so no output's gradient cancels by symmetry (LayerNorm + sum = const)
    g = torch.Generator().manual_seed(2)
    loss = (out.logits * torch.randn(out.logits.shape, generator=g)).mean()
    loss = (
        loss + (v * torch.randn(v.shape, generator=g)).sum() + (u * torch.randn(u.shape, generator=g)).sum()
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    zero_grad = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    assert not zero_grad, f"parameters with an all-zero gradient: {zero_grad}"
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_the_caption_changes_the_prediction(name, tiny_text):
    model = build(name, tiny_text.dim).eval()
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first = model(images, tiny_text.encode(CAPTIONS_A)).logits
        again = model(images, tiny_text.encode(CAPTIONS_A)).logits
        other = model(images, tiny_text.encode(CAPTIONS_B)).logits
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    per_image_change = (first - other).abs().flatten(1).amax(dim=1)
    assert (per_image_change > 1e-6).all(), per_image_change


@pytest.mark.parametrize("name", ["mmi-unet", "guidedecoder"])
def test_full_size_models_at_224(name, minilm_text):
    """The paper's setting: 224 px, ConvNeXt-Tiny; deepest map 7x7, logits at full size."""
    model = build(name, minilm_text.dim, proj_dim=768).eval()
    assert model.encoder.channels == (96, 192, 384, 768)
    text = minilm_text.encode(CAPTIONS_A[:1])
    with torch.no_grad():
        out = model(torch.randn(1, 1, 224, 224), text)
    assert out.logits.shape == (1, 1, 224, 224)
    assert out.fused.shape == (1, 768, 7, 7)
    assert torch.isfinite(out.logits).all()


def _noisy_padding(text: TextFeatures) -> TextFeatures:
    """The same features with random vectors at the padding positions."""
    noisy = TextFeatures(text.tokens.clone(), text.mask, text.pooled)
    g = torch.Generator().manual_seed(5)
    noisy.tokens[~text.mask] = torch.randn(int((~text.mask).sum()), text.tokens.shape[-1], generator=g)
    return noisy


def test_mmi_unet_padding_mask_hides_padding_tokens(tiny_text):
    """With the mask, what sits at padding positions cannot reach the output; without it, it can."""
    text = tiny_text.encode(CAPTIONS_A)
    noisy = _noisy_padding(text)
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(4))
    for masked, should_match in ((True, True), (False, False)):
        model = build("mmi-unet-tiny", tiny_text.dim, text_padding_mask=masked).eval()
        with torch.no_grad():
            clean_logits = model(images, text).logits
            noisy_logits = model(images, noisy).logits
        assert torch.allclose(clean_logits, noisy_logits, atol=1e-5) is should_match


def test_mmi_unet_fusion_attends_to_padding_tokens_by_default(tiny_text):
    """The default (the reference's): the fusion blocks see all 24 token positions, padding included,
    so changing only the padding positions changes the prediction and the fused map."""
    text = tiny_text.encode(CAPTIONS_A)
    assert (~text.mask).any(dim=1).all()  # both captions are padded to 24
    model = build("mmi-unet-tiny", tiny_text.dim).eval()
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        clean, noisy = model(images, text), model(images, _noisy_padding(text))
    assert (clean.logits - noisy.logits).abs().flatten(1).amax(dim=1).min() > 1e-5
    assert (clean.fused - noisy.fused).abs().flatten(1).amax(dim=1).min() > 1e-5
    assert ModelConfig().text_padding_mask is False


def test_guidedecoder_itc_image_input_is_the_first_guide_layer_output_by_default(tiny_text):
    """The paper's v = Proj_I(GAP(F)) of the fused map: the first guide layer's output at stride 32
    (it depends on the caption), projected by Linear + LayerNorm."""
    assert ModelConfig().guidedecoder_itc_image == "fused"
    model = build("guidedecoder-tiny", tiny_text.dim).eval()
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(6))
    text = tiny_text.encode(CAPTIONS_A)
    with torch.no_grad():
        out = model(images, text)
        deepest = model.encoder(images)[3]
        guided = model.blocks[0].guide(deepest.flatten(2).transpose(1, 2), text.tokens)
        expected_fused = guided.transpose(1, 2).reshape(deepest.shape)
        v, _ = model.embed(out.fused, text)
        other_v, _ = model.embed(model(images, tiny_text.encode(CAPTIONS_B)).fused, text)
    torch.testing.assert_close(out.fused, expected_fused)
    head = model.itcl.image_proj
    assert [type(m) for m in head] == [torch.nn.Linear, torch.nn.LayerNorm]
    expected_v = torch.nn.functional.normalize(head[1](head[0](expected_fused.mean(dim=(2, 3)))), dim=-1)
    torch.testing.assert_close(v, expected_v)
    assert not torch.allclose(v, other_v, atol=1e-6)  # the caption reaches the image embedding


def test_guidedecoder_itc_image_visual_is_the_pure_visual_deepest_map(tiny_text):
    """The reference's reading: a Linear on the layer-normalised GAP of the deepest ConvNeXt map,
    which no caption reaches."""
    model = build("guidedecoder-tiny", tiny_text.dim, guidedecoder_itc_image="visual").eval()
    images = torch.randn(2, 1, SMALL, SMALL, generator=torch.Generator().manual_seed(6))
    text = tiny_text.encode(CAPTIONS_A)
    with torch.no_grad():
        out = model(images, text)
        deepest = model.encoder(images)[3]
        v, _ = model.embed(out.fused, text)
        other_v, _ = model.embed(model(images, tiny_text.encode(CAPTIONS_B)).fused, text)
    torch.testing.assert_close(out.fused, deepest, rtol=0, atol=0)
    head = model.itcl.image_proj
    assert [type(m) for m in head] == [torch.nn.LayerNorm, torch.nn.Linear]
    expected_v = torch.nn.functional.normalize(head[1](head[0](deepest.mean(dim=(2, 3)))), dim=-1)
    torch.testing.assert_close(v, expected_v)
    torch.testing.assert_close(v, other_v, rtol=0, atol=0)  # no caption reaches it


def test_guidedecoder_unknown_itc_image_is_a_user_error(tiny_text):
    with pytest.raises(MedrefError, match="model.guidedecoder_itc_image must be one of fused, visual, got 'x'"):
        build("guidedecoder-tiny", tiny_text.dim, guidedecoder_itc_image="x")


@pytest.mark.parametrize("name", ["mmi-unet-tiny", "guidedecoder-tiny"])
def test_image_size_not_a_multiple_of_32_is_a_user_error(name, tiny_text):
    model = build(name, tiny_text.dim).eval()
    with pytest.raises(MedrefError, match="multiple of 32"):
        model(torch.randn(1, 1, 72, 64), tiny_text.encode(CAPTIONS_A[:1]))


def test_text_width_mismatch_is_a_user_error(tiny_text):
    model = build("mmi-unet-tiny", tiny_text.dim + 1).eval()
    with pytest.raises(MedrefError, match="32-wide"):
        model(torch.randn(1, 1, SMALL, SMALL), tiny_text.encode(CAPTIONS_A[:1]))


def test_non_square_inputs(tiny_text):
    model = build("mmi-unet-tiny", tiny_text.dim).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 96, 64), tiny_text.encode(CAPTIONS_A[:1]))
    assert out.logits.shape == (1, 1, 96, 64)
    assert out.fused.shape[-2:] == (3, 2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_subpixel_head_box_blur_equals_monai_pad_pool(channels_last):
    """The head runs MONAI's pad + average pool as a depthwise convolution: same values and gradients
    as MONAI's own SubpixelUpsample, in either memory format."""
    from medref_cli.models.base import SubpixelLogitHead

    torch.manual_seed(0)
    head = SubpixelLogitHead(16, 8)
    x = torch.randn(3, 16, 10, 12)
    if channels_last:
        head = head.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x_ref = x.detach().clone().requires_grad_(True)
    x = x.detach().clone().requires_grad_(True)
    ours = head(x)
    reference = head.logit(head.upsample(x_ref))  # MONAI's forward, pad_pool included
    assert ours.shape == (3, 1, 40, 48)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    ours.square().sum().backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    reference.square().sum().backward()
    for mine, theirs in zip(grads, [p.grad for p in head.parameters()], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)
