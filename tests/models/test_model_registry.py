"""The registry and `medref models`."""

from __future__ import annotations

import json

import pytest
import torch

from medref_cli.config.schema import ModelConfig
from medref_cli.errors import MedrefError
from medref_cli.models import registry
from medref_cli.models.base import count_parameters
from medref_cli.models.registry import build_text_encoder, create_model, list_models, register_model


def test_unknown_backbone_lists_the_known_names():
    with pytest.raises(MedrefError) as info:
        create_model(ModelConfig(backbone="unet-9000", visual_pretrained=False), 32)
    message = str(info.value)
    assert "unknown model 'unet-9000'" in message
    for name in list_models():
        assert name in message


def test_register_model_adds_a_builder_and_refuses_a_second_one():
    class Constant(torch.nn.Module):
        def __init__(self, text_dim):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(text_dim))

    def build(cfg, text_dim):
        return Constant(text_dim)

    try:
        register_model("test-constant")(build)
        assert "test-constant" in list_models()
        model = create_model(ModelConfig(backbone="test-constant"), 5)
        assert model.bias.shape == (5,)
        with pytest.raises(ValueError, match="already registered"):
            register_model("test-constant")(lambda cfg, text_dim: Constant(text_dim))
    finally:
        registry._BUILDERS.pop("test-constant", None)
    assert "test-constant" not in list_models()


def test_text_encoder_must_stay_frozen():
    with pytest.raises(MedrefError, match="freeze_text"):
        build_text_encoder(ModelConfig(text_encoder="tiny-random-bert", freeze_text=False))


def test_build_text_encoder_uses_the_config(tiny_text):
    encoder = build_text_encoder(ModelConfig(text_encoder="tiny-random-bert", text_max_length=12))
    assert encoder.max_length == 12 and encoder.dim == 32
    assert encoder.encode(["left lung"]).tokens.shape == (1, 12, 32)


@pytest.mark.parametrize("pool", ["all_positions", "tokens"])
def test_build_text_encoder_pools_as_model_text_pool_says(pool):
    encoder = build_text_encoder(ModelConfig(text_encoder="tiny-random-bert", text_pool=pool))
    assert encoder.pool == pool
    captions = ["left lung", "lower right lung and upper left lung"]
    torch.testing.assert_close(encoder.encode(captions).pooled, encoder.encode(captions, pool=pool).pooled)


def test_default_text_pool_is_all_positions():
    assert build_text_encoder(ModelConfig(text_encoder="tiny-random-bert")).pool == "all_positions"


def test_models_command_json(cli, tiny_text):
    code, out, err = cli("models", "--json", "--set", "model.text_encoder=tiny-random-bert")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list_models()
    for row in rows:
        model = create_model(ModelConfig(backbone=row["name"], visual_pretrained=False), tiny_text.dim)
        total, trainable = count_parameters(model)
        assert (row["parameters"], row["trainable"]) == (total, trainable)
        assert row["trainable"] == row["parameters"]
        assert row["text_parameters"] == sum(p.numel() for p in tiny_text.model.parameters())
        assert row["visual_encoder"] == (
            "convnext_atto" if row["name"].endswith("-tiny") else ModelConfig().visual_encoder
        )


def test_models_command_table(cli):
    code, out, err = cli("models", "--set", "model.text_encoder=tiny-random-bert")
    assert code == 0, err
    for name in list_models():
        assert name in out


def test_models_command_needs_no_text_encoder_weights(cli):
    """`medref models` counts from configs: a text encoder that is not on this machine leaves its own
    column unknown instead of failing (or downloading it)."""
    code, out, err = cli("models", "--json", "--set", "model.text_encoder=medref-tests/no-such-text-encoder")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list_models()
    assert all(r["text_parameters"] is None and "not downloaded" in r["text_weights"] for r in rows)
