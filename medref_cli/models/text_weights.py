"""BERT-family text encoders (CXR-BERT included) loaded as a plain `transformers.BertModel`.

No model code from the hub is ever imported (no `trust_remote_code`): CXR-BERT's own classes do
not run on current transformers (its output class is not a dataclass, so the first forward
raises `TypeError`). A folder in the hub's layout (`config.json`, `vocab.txt`, and
`model.safetensors` or `pytorch_model.bin`) is read like this:

- config: `config.json` less `auto_map`, `architectures`, `model_type` and `projection_size`
  becomes a `BertConfig` (only `model_type` bert or cxr-bert is accepted);
- weights: `bert.*` keys lose the prefix; `embeddings.position_ids`, `cls.predictions.*`,
  `cls.seq_relationship.*` and `cls_projection_head.*` are dropped; the rest must fill the
  `BertModel` exactly (`strict=True`): a renamed key fails here, not at the first caption;
- tokenizer: `BertTokenizer` from the same folder.

A hub name is fetched file by file at the pinned revision (`model.text_revision`) into the
Hugging Face cache (offline: only from that cache). The identity of what was loaded (name,
revision, resolved commit, sha256 of every weight and vocabulary file) goes with the encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medref_cli.errors import MedrefError
from medref_cli.files import sha256_file

BERT_MODEL_TYPES = ("bert", "cxr-bert")
CONFIG_KEYS_DROPPED = ("auto_map", "architectures", "model_type", "projection_size")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
KEYS_DROPPED = ("embeddings.position_ids",)
PREFIXES_DROPPED = ("cls.predictions.", "cls.seq_relationship.", "cls_projection_head.")


@dataclass
class TextSource:
    """Where a text encoder's files lie, and what they are."""

    name: str  # as the user gave it
    folder: Path
    weights: Path
    kind: str  # hub | folder | package
    revision: str | None = None  # asked for (hub)
    commit: str | None = None  # what the revision resolved to (hub cache snapshot)
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        files = {self.weights.name: sha256_file(self.weights)}
        vocab = self.folder / "vocab.txt"
        return {
            "name": self.name,
            "kind": self.kind,
            "revision": self.revision,
            "commit": self.commit,
            "path": str(self.folder),
            "weights_sha256": files,
            "vocab_sha256": sha256_file(vocab) if vocab.is_file() else None,
            **self.extra,
        }


def local_source(name: str, folder: Path, kind: str = "folder", **extra: Any) -> TextSource:
    """A folder in the hub's layout on disk."""
    if not (folder / "config.json").is_file():
        raise MedrefError(f"text encoder folder {folder} could not be loaded: no config.json (model.text_encoder)")
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise MedrefError(
            f"text encoder folder {folder} could not be loaded: no {' or '.join(WEIGHT_FILES)} (model.text_encoder)"
        )
    return TextSource(name, folder, weights, kind, extra=extra)


def hub_source(name: str, revision: str, offline: bool, how: str) -> TextSource:
    """Fetch (or, offline, find in the cache) config, vocabulary and one weight file at `revision`.
    Downloads show the hub's own progress bar."""
    from huggingface_hub import hf_hub_download

    try:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # huggingface_hub < 0.24
        from huggingface_hub.utils import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

    def get(filename: str, required: bool) -> Path | None:
        try:
            return Path(hf_hub_download(name, filename, revision=revision or None, local_files_only=offline,
                                        cache_dir=hub_cache()))
        except RevisionNotFoundError:
            raise MedrefError(f"revision '{revision}' of text encoder '{name}' not found on the hub "
                              "(model.text_revision)") from None
        except RepositoryNotFoundError:
            raise MedrefError(f"text encoder '{name}' not found: no local folder of that name and no such "
                              f"hub repository; {how}") from None
        except LocalEntryNotFoundError:
            if not required:
                return None
            where = "hub offline" if offline else "the hub could not be reached"
            raise MedrefError(f"text encoder '{name}' not found: no local folder of that name and {filename} "
                              f"(revision {revision or 'main'}) is not in the Hugging Face cache ({where}); "
                              f"{how}") from None
        except EntryNotFoundError:
            if required:
                raise MedrefError(f"text encoder '{name}' (revision {revision or 'main'}) has no {filename}; "
                                  f"{how}") from None
            return None
        except (OSError, ValueError) as exc:  # network and cache errors
            raise MedrefError(f"text encoder '{name}' could not be fetched ({_first_line(exc)}); {how}") from None

    config = get("config.json", required=True)
    get("vocab.txt", required=True)
    for optional in TOKENIZER_FILES[1:]:
        get(optional, required=False)
    weights = None
    for filename in WEIGHT_FILES:
        weights = get(filename, required=False)
        if weights is not None:
            break
    if weights is None:
        where = "in the Hugging Face cache (hub offline)" if offline else "on the hub"
        raise MedrefError(f"text encoder '{name}' (revision {revision or 'main'}): no {' or '.join(WEIGHT_FILES)} "
                          f"{where}; {how}")
    folder = config.parent
    commit = folder.name if folder.parent.name == "snapshots" else None
    return TextSource(name, folder, weights, "hub", revision=revision or None, commit=commit)


def hub_cache() -> str:
    """The Hugging Face cache folder, read when called (older huggingface_hub versions bind it at import)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def bert_config(source: TextSource) -> Any:
    """The folder's config.json as a BertConfig, the hub's own-code fields removed."""
    from transformers import BertConfig

    try:
        raw = json.loads((source.folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MedrefError(f"text encoder {source.name}: config.json unreadable ({_first_line(exc)})") from None
    if not isinstance(raw, dict):
        raise MedrefError(f"text encoder {source.name}: config.json is not a JSON object")
    model_type = raw.get("model_type")
    if model_type not in BERT_MODEL_TYPES:
        raise MedrefError(f"text encoder {source.name} is a '{model_type}' model; medref loads BERT-family "
                          f"encoders only (model_type {' or '.join(BERT_MODEL_TYPES)})")
    kept = {k: v for k, v in raw.items() if k not in CONFIG_KEYS_DROPPED}
    try:
        return BertConfig(**kept)
    except (TypeError, ValueError) as exc:
        raise MedrefError(f"text encoder {source.name}: config.json is not a BERT config ({_first_line(exc)})") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a bad weight file raises many types (pickle, header, IO)
        raise MedrefError(f"text encoder weights {path} could not be read ({_first_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedrefError(f"text encoder weights {path} are not a state dict of tensors")
    return state


def bert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys a BertModel holds: `bert.` stripped (when the file has it), the pretraining heads and the
    position-id buffer dropped, old LayerNorm gamma/beta names renamed. Every other key is kept as is,
    so the strict load reports it."""
    prefixed = any(k.startswith("bert.") for k in state)
    out = {}
    for key, value in state.items():
        if key.startswith(PREFIXES_DROPPED):
            continue
        if prefixed and key.startswith("bert."):
            key = key[len("bert."):]
        if key in KEYS_DROPPED:
            continue
        if key.endswith("LayerNorm.gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[: -len("beta")] + "bias"
        out[key] = value
    return out


def load_bert(source: TextSource) -> tuple[Any, nn.Module]:
    """(BertTokenizer, BertModel) from a folder, the weights loaded with strict=True."""
    from transformers import BertModel, BertTokenizer

    config = bert_config(source)
    state = bert_state_dict(read_state_dict(source.weights))
    with torch.random.fork_rng(devices=[]):  # random init before the load: leave the caller's RNG alone
        model = BertModel(config, add_pooling_layer=any(k.startswith("pooler.") for k in state))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if unexpected:
            parts.append(f"unexpected key {unexpected[0]}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        if missing:
            parts.append(f"missing key {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        raise MedrefError(f"text encoder weights {source.weights} do not fit a BertModel: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shapes
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), _first_line(exc))
        raise MedrefError(f"text encoder weights {source.weights} do not fit its config.json: {detail}") from None
    try:
        tokenizer = BertTokenizer.from_pretrained(str(source.folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise MedrefError(f"text encoder {source.name}: tokenizer could not be loaded from {source.folder} "
                          f"({_first_line(exc)})") from None
    return tokenizer, model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
