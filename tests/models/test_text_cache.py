"""TextFeatureCache: same features as a fresh encoder run, and the encoder runs once per string."""

from __future__ import annotations

import pytest
import torch

from medref_cli.models.text_cache import TextFeatureCache

CAPTIONS = [
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, middle left lung.",
    "Unilateral pulmonary infection, one infected area, [UNK_POS].",
    "Unilateral pulmonary infection, one infected area, a region of the lung.",
]


class CountingEncoder:
    """Passes calls through to a real encoder and records which strings it was asked for."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.calls: list[list[str]] = []

    @property
    def device(self):
        return self.encoder.device

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.encoder.encode(texts)


def test_cached_features_equal_fresh_ones(minilm_text):
    cache = TextFeatureCache(minilm_text)
    batch = [CAPTIONS[2], CAPTIONS[0], CAPTIONS[2], CAPTIONS[1]]
    cache.encode(CAPTIONS[:2])  # rows stored in a different order than asked for below
    cached = cache.encode(batch)
    fresh = minilm_text.encode(batch)
    torch.testing.assert_close(cached.tokens, fresh.tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached.pooled, fresh.pooled, rtol=1e-5, atol=1e-5)
    assert torch.equal(cached.mask, fresh.mask)


def test_the_encoder_runs_only_for_unseen_strings(tiny_text):
    counting = CountingEncoder(tiny_text)
    cache = TextFeatureCache(counting, batch_size=2)

    cache.encode([CAPTIONS[0], CAPTIONS[1], CAPTIONS[0], CAPTIONS[2]])
    assert counting.calls == [[CAPTIONS[0], CAPTIONS[1]], [CAPTIONS[2]]]  # distinct strings, in batches of 2
    assert (len(cache), cache.misses, cache.hits, cache.encoder_calls) == (3, 3, 1, 2)

    cache.encode([CAPTIONS[2], CAPTIONS[1], CAPTIONS[0]])
    assert len(counting.calls) == 2  # all seen: no encoder run
    assert (cache.misses, cache.hits) == (3, 4)

    cache.encode([CAPTIONS[3], CAPTIONS[0]])
    assert counting.calls[-1] == [CAPTIONS[3]]
    assert (len(cache), cache.encoder_calls) == (4, 3)
    assert CAPTIONS[3] in cache and "never seen" not in cache


def test_returned_features_are_copies(tiny_text):
    cache = TextFeatureCache(tiny_text)
    first = cache.encode(CAPTIONS[:1])
    first.tokens.zero_()
    again = cache.encode(CAPTIONS[:1])
    assert again.tokens.abs().sum() > 0


def test_order_follows_the_request(tiny_text):
    cache = TextFeatureCache(tiny_text)
    forward = cache.encode(CAPTIONS[:3])
    backward = cache.encode(CAPTIONS[:3][::-1])
    torch.testing.assert_close(backward.pooled, forward.pooled.flip(0))


def test_bad_requests(tiny_text):
    cache = TextFeatureCache(tiny_text)
    with pytest.raises(TypeError):
        cache.encode("one string")
    with pytest.raises(ValueError):
        cache.encode([])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cache_on_the_gpu(tiny_text):
    cache = TextFeatureCache(tiny_text, device="cuda")
    features = cache.encode(CAPTIONS[:2])
    assert features.tokens.is_cuda and features.mask.is_cuda and features.pooled.is_cuda
    torch.testing.assert_close(features.pooled.cpu(), tiny_text.encode(CAPTIONS[:2]).pooled)


@pytest.mark.parametrize("pool", ["all_positions", "tokens"])
def test_cached_pooled_features_follow_model_text_pool(pool):
    from medref_cli.config.schema import ModelConfig
    from medref_cli.models.registry import build_text_encoder

    encoder = build_text_encoder(ModelConfig(text_encoder="tiny-random-bert", text_pool=pool))
    cache = TextFeatureCache(encoder)
    cached = cache.encode(CAPTIONS[:3])
    torch.testing.assert_close(cached.pooled, encoder.encode(CAPTIONS[:3], pool=pool).pooled)


def test_student_passes_use_the_cache_unless_model_text_dropout():
    from medref_cli.config.schema import ModelConfig
    from medref_cli.models.registry import build_text_encoder

    encoder = build_text_encoder(ModelConfig(text_encoder="tiny-random-bert"))
    assert encoder.student_dropout is False
    cache = TextFeatureCache(encoder)
    first = cache.encode_student(CAPTIONS[:3])
    again = cache.encode_student(CAPTIONS[:3])
    assert cache.encoder_calls == 1 and cache.hits == 3
    torch.testing.assert_close(again.pooled, first.pooled, rtol=0, atol=0)
    torch.testing.assert_close(first.tokens, encoder.encode(CAPTIONS[:3]).tokens)


def test_model_text_dropout_encodes_student_text_afresh_with_dropout_active():
    """The reference's quirk: its student holds the frozen text encoder in train mode, so every
    student pass sees new dropout masks; the teacher (and evaluation) see the eval-mode features."""
    from medref_cli.config.schema import ModelConfig
    from medref_cli.models.registry import build_text_encoder

    encoder = build_text_encoder(ModelConfig(text_encoder="tiny-random-bert", text_dropout=True))
    cache = TextFeatureCache(encoder)
    eval_mode = cache.encode(CAPTIONS[:3])
    torch.manual_seed(0)
    first = cache.encode_student(CAPTIONS[:3])
    second = cache.encode_student(CAPTIONS[:3])
    assert not encoder.model.training  # back in eval mode after each student pass
    assert cache.encoder_calls == 3 and len(cache) == 3  # fresh passes, not stored
    for features in (first, second):
        assert not torch.allclose(features.tokens, eval_mode.tokens, atol=1e-4)
        assert not torch.allclose(features.pooled, eval_mode.pooled, atol=1e-4)
        assert torch.equal(features.mask, eval_mode.mask)
    assert not torch.allclose(first.tokens, second.tokens, atol=1e-4)
    torch.testing.assert_close(cache.encode(CAPTIONS[:3]).tokens, eval_mode.tokens, rtol=0, atol=0)
    torch.manual_seed(0)
    torch.testing.assert_close(cache.encode_student(CAPTIONS[:3]).tokens, first.tokens, rtol=0, atol=0)
