"""Weights for the timm visual encoder, loaded so that "pretrained" can never end up random.

timm's own `pretrained=True` path loads a `features_only` model non-strictly (its classifier is
dropped, so every other missing key passes too) and falls back to random weights, with a log
line, when a model tag has no weights. medref instead finds the weight file itself (a local
`model.visual_checkpoint`, or timm's default file from the Hugging Face cache or a download with
the hub's progress bar), passes it through the model's own checkpoint filter (which maps
Facebook's ConvNeXt names `downsample_layers.*`, `stages.*`, `norm`, `head` onto timm's),
folds the RGB stem into `in_chans` channels, and loads every tensor of the feature model with
`strict=True`. The identity of the file (path, sha256) goes with the encoder.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medref_cli.errors import MedrefError
from medref_cli.files import sha256_file
from medref_cli.models.text_weights import hub_cache


def pretrained_file(name: str, offline: bool) -> tuple[Path, dict[str, Any]]:
    """(timm's default weight file for `name`, where it came from); from the cache, else downloaded."""
    cached, looked_for, origin = cached_timm_weights(name)
    if cached is not None:
        return cached, origin
    how = (
        f"provide a local file with model.visual_checkpoint=/path/to/{name.split('.')[0]}.pth "
        "or train from scratch with model.visual_pretrained=false"
    )
    if offline:
        raise MedrefError(
            f"pretrained weights for visual encoder '{name}' not found ({looked_for}, hub offline); {how}"
        )
    try:
        return _download(name, origin), origin
    except MedrefError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, hub and file errors all mean "no weights"
        raise MedrefError(
            f"pretrained weights for visual encoder '{name}' could not be fetched "
            f"({looked_for}; {_first_line(exc)}); {how}"
        ) from None


def cached_timm_weights(name: str) -> tuple[Path | None, str, dict[str, Any]]:
    """(file of timm's default weights for `name` if already on disk, where we looked, its origin)."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise MedrefError(f"visual encoder '{name}': {_first_line(exc)}") from None
    if cfg is None:
        raise MedrefError(f"timm has no pretrained weights registered for '{name}'; "
                          "set model.visual_checkpoint=FILE or model.visual_pretrained=false")
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        origin = {"hub": cfg.hf_hub_id, "files": files}
        for filename in files:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=hub_cache())
            if isinstance(found, str):
                return Path(found), "", origin
        return None, f"looked for '{cfg.hf_hub_id}' in the Hugging Face cache", origin
    if cfg.url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        origin = {"url": cfg.url, "local": str(local)}
        if local.is_file():
            return local, "", origin
        return None, f"looked for {local}", origin
    raise MedrefError(f"timm lists no download location for the weights of '{name}'; "
                      "set model.visual_checkpoint=FILE or model.visual_pretrained=false")


def _download(name: str, origin: dict[str, Any]) -> Path:
    if "hub" in origin:
        from huggingface_hub import hf_hub_download

        last: Exception | None = None
        for filename in origin["files"]:
            try:
                return Path(hf_hub_download(origin["hub"], filename, cache_dir=hub_cache()))
            except Exception as exc:  # noqa: BLE001 - try the next file name, report the last error
                last = exc
        raise last if last is not None else MedrefError(f"no weight file for '{name}'")
    local = Path(origin["local"])
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".partial")
    torch.hub.download_url_to_file(origin["url"], str(partial), progress=True)
    partial.replace(local)
    return local


def _filter_fn(model: nn.Module):
    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def _feature_key(key: str, full_keys: set[str]) -> str | None:
    """The full model's name for a key of timm's feature wrapper (which joins a flattened Sequential's
    name and its child's with '_', e.g. `stem_0.weight` for `stem.0.weight`)."""
    if key in full_keys:
        return key
    head, dot, rest = key.partition(".")
    for i, char in enumerate(head):
        if char == "_":
            candidate = head[:i] + "." + head[i + 1:] + dot + rest
            if candidate in full_keys:
                return candidate
    return None


def load_into_features(name: str, features: nn.Module, path: Path, in_chans: int) -> dict[str, Any]:
    """Load `path` into timm's feature model `features` (strict) and return the file's identity."""
    import timm
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))  # unwraps {"model": ...} / {"state_dict": ...}; safetensors too
    except Exception as exc:  # noqa: BLE001 - a bad weight file raises many types (pickle, header, IO)
        raise MedrefError(f"{_cannot(name, path)}: {_first_line(exc)}") from None
    try:
        with torch.device("meta"):  # only its key names and shapes are needed
            full = timm.create_model(name, pretrained=False)
    except NotImplementedError:  # older timm initialises some weights by copying, which meta tensors refuse
        with torch.random.fork_rng(devices=[]):
            full = timm.create_model(name, pretrained=False)
    filter_fn = _filter_fn(full)
    try:
        if filter_fn is not None:
            state = filter_fn(state, full)
    except Exception as exc:  # noqa: BLE001 - a foreign layout breaks the filter in many ways
        raise MedrefError(f"{_cannot(name, path)}: not timm's layout ({_first_line(exc)})") from None
    full_shapes = {k: v.shape for k, v in full.state_dict().items()}
    unexpected = [k for k in state if k not in full_shapes]
    if unexpected:
        raise MedrefError(f"{_cannot(name, path)}: unexpected key "
                          f"{unexpected[0]}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    first_conv = (full.pretrained_cfg or {}).get("first_conv")
    if isinstance(first_conv, str) and f"{first_conv}.weight" in state:
        from timm.models import adapt_input_conv

        weight = state[f"{first_conv}.weight"]
        if weight.ndim == 4 and weight.shape[1] == 3 and in_chans != 3:  # timm folds an RGB stem
            state[f"{first_conv}.weight"] = adapt_input_conv(in_chans, weight)
    loaded: dict[str, torch.Tensor] = {}
    missing = []
    for key, tensor in features.state_dict().items():
        source = _feature_key(key, set(full_shapes))
        if source is None or source not in state:
            missing.append(source or key)
            continue
        if state[source].shape != tensor.shape:
            raise MedrefError(f"{_cannot(name, path)}: {source} is "
                              f"{tuple(state[source].shape)}, the model has {tuple(tensor.shape)}")
        loaded[key] = state[source]
    if missing:
        raise MedrefError(f"{_cannot(name, path)}: missing key {missing[0]}"
                          + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    features.load_state_dict(loaded, strict=True)
    return {"path": str(path.resolve()), "sha256": sha256_file(path), "tensors": len(loaded)}


def _cannot(name: str, path: Path) -> str:
    return f"could not load visual encoder weights for '{name}' from {path}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
