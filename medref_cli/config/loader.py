"""Build an ExperimentConfig from YAML files and typed `--set a.b=value` overrides.

An experiment file may name the file it builds on with `extends: base.yaml` (a path relative
to itself) and then holds only its differences. Unknown keys are rejected, naming the nearest
valid keys; values are checked against the dataclass field types.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from medref_cli.config.schema import (
    CHOICES,
    HASHED_RUNTIME_KEYS,
    UNHASHED_KEYS,
    UNHASHED_SECTIONS,
    ExperimentConfig,
)
from medref_cli.errors import MedrefError

EXTENDS_KEY = "extends"
MAX_EXTENDS_DEPTH = 16


def all_keys(cls: type = ExperimentConfig, prefix: str = "") -> dict[str, type]:
    """Every dotted key of the config tree with its declared type."""
    keys: dict[str, type] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(typ):
            keys.update(all_keys(typ, name + "."))
        else:
            keys[name] = typ
    return keys


def _unknown_key_error(key: str, source: str) -> MedrefError:
    near = difflib.get_close_matches(key, list(all_keys()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else "; run `medref config show` for all keys"
    return MedrefError(f"unknown config key '{key}' in {source}{hint}")


def _coerce(key: str, value: Any, typ: type, source: str) -> Any:
    """Check (and for strings from the command line, convert) one value to its field type."""
    bad = MedrefError(f"config key '{key}' in {source} expects {typ.__name__}, got {value!r}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise bad
    if typ is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if typ is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise bad


def _flatten(tree: dict, source: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, source, name + "."))
        else:
            flat[name] = v
    return flat


def read_yaml(path: Path, _depth: int = 0) -> dict[str, Any]:
    """Read an experiment file and the chain it extends into one flat {dotted key: value}."""
    if _depth > MAX_EXTENDS_DEPTH:
        raise MedrefError(f"config {path}: 'extends' chain deeper than {MAX_EXTENDS_DEPTH} (a cycle?)")
    if not path.is_file():
        raise MedrefError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise MedrefError(f"malformed YAML in {path}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise MedrefError(f"config file {path} is not UTF-8 text") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise MedrefError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    flat: dict[str, Any] = {}
    parent = tree.pop(EXTENDS_KEY, None)
    if parent is not None:
        if not isinstance(parent, str):
            raise MedrefError(f"config {path}: 'extends' must be a file path")
        flat.update(read_yaml((path.parent / parent).resolve(), _depth + 1))
    flat.update(_flatten(tree, str(path)))
    return flat


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Turn repeated `--set a.b=value` strings into {dotted key: raw string}."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise MedrefError(f"--set expects key=value (e.g. train.lr=1e-3), got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _apply(cfg: ExperimentConfig, flat: dict[str, Any], source: str) -> ExperimentConfig:
    types = all_keys()
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in types:
            raise _unknown_key_error(key, source)
        typed = _coerce(key, value, types[key], source)
        if "." in key:
            section, leaf = key.split(".", 1)
            sections.setdefault(section, {})[leaf] = typed
        else:
            top[key] = typed
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Reject values that are well-typed but meaningless."""
    flat = to_flat(cfg)
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise MedrefError(f"config key '{key}' must be one of {', '.join(choices)}, got '{flat[key]}'")
    checks = [
        ("split.ratio", 0.0 < cfg.split.ratio <= 1.0, "a share in (0, 1]"),
        ("split.seed", cfg.split.seed >= 0, "a seed >= 0"),
        ("train.seed", cfg.train.seed >= 0, "a seed >= 0"),
        ("train.batch_size", cfg.train.batch_size >= 1, ">= 1"),
        ("train.unlabeled_batch_size", cfg.train.unlabeled_batch_size >= 0, ">= 0"),
        ("train.lr", cfg.train.lr > 0, "> 0"),
        ("train.epochs", cfg.train.epochs >= 0, ">= 0"),
        ("train.burnin_epochs", cfg.train.burnin_epochs >= 0, ">= 0"),
        ("train.min_delta", cfg.train.min_delta >= 0, ">= 0"),
        ("train.min_epochs", cfg.train.min_epochs >= 0, ">= 0"),
        ("train.lr_period_epochs", cfg.train.lr_period_epochs >= 0, ">= 0 (0 = the whole training length)"),
        ("data.image_size", cfg.data.image_size >= 32 and cfg.data.image_size % 32 == 0, "a multiple of 32"),
        ("ssl.ema_momentum", 0.0 <= cfg.ssl.ema_momentum < 1.0, "in [0, 1)"),
        ("ssl.ema_momentum_start", 0.0 <= cfg.ssl.ema_momentum_start < 1.0, "in [0, 1)"),
        ("ssl.threshold", 0.0 < cfg.ssl.threshold < 1.0, "in (0, 1)"),
        ("ssl.posaug_rho", 0.0 <= cfg.ssl.posaug_rho <= 1.0, "in [0, 1]"),
        ("ssl.posaug_edit_prob", 0.0 <= cfg.ssl.posaug_edit_prob <= 1.0, "in [0, 1]"),
        ("ssl.zoom_prob", 0.0 <= cfg.ssl.zoom_prob <= 1.0, "in [0, 1]"),
        ("ssl.shift", 0.0 <= cfg.ssl.shift <= 0.25, "in [0, 0.25]"),
        ("ssl.tpatchmix_block", cfg.ssl.tpatchmix_block >= 1, ">= 1"),
        ("ssl.tpatchmix_block_prob", 0.0 <= cfg.ssl.tpatchmix_block_prob <= 1.0, "in [0, 1]"),
        ("ssl.itcl_tau", cfg.ssl.itcl_tau > 0, "> 0"),
        ("eval.threshold", 0.0 < cfg.eval.threshold < 1.0, "in (0, 1)"),
        ("model.text_max_length", cfg.model.text_max_length >= 4, ">= 4"),
        ("model.soft_position_hidden", cfg.model.soft_position_hidden >= 1, ">= 1"),
        ("train.ispg_removal_rate", 0.0 <= cfg.train.ispg_removal_rate <= 1.0, "in [0, 1]"),
        ("runtime.checkpoint_every", cfg.runtime.checkpoint_every >= 0, ">= 0"),
        ("runtime.log_every", cfg.runtime.log_every >= 1, ">= 1"),
        ("position.epochs", cfg.position.epochs >= 1, ">= 1"),
        ("position.batch_size", cfg.position.batch_size >= 1, ">= 1"),
        ("position.hidden_dim", cfg.position.hidden_dim >= 1, ">= 1"),
        ("position.dropout", 0.0 <= cfg.position.dropout < 1.0, "in [0, 1)"),
        ("position.query_layers", cfg.position.query_layers >= 1, ">= 1"),
        ("position.query_heads", cfg.position.query_heads >= 1, ">= 1"),
        ("position.lr_head", cfg.position.lr_head > 0, "> 0"),
        ("position.lr_backbone", cfg.position.lr_backbone >= 0, ">= 0"),
        ("position.weight_decay", cfg.position.weight_decay >= 0, ">= 0"),
        ("position.freeze_epochs", cfg.position.freeze_epochs >= 0, ">= 0"),
        ("position.unfreeze_stages", 0 <= cfg.position.unfreeze_stages <= 4, "in 0..4"),
        ("position.threshold", 0.0 < cfg.position.threshold < 1.0, "in (0, 1)"),
        ("position.bce_mix", 0.0 <= cfg.position.bce_mix <= 1.0, "in [0, 1]"),
        ("position.gamma_negative", cfg.position.gamma_negative >= 0, ">= 0"),
        ("position.gamma_positive", cfg.position.gamma_positive >= 0, ">= 0"),
        ("position.cardinality_weight", cfg.position.cardinality_weight >= 0, ">= 0"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise MedrefError(f"config key '{key}' must be {what}, got {flat[key]!r}")
    return cfg


def load_config(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> ExperimentConfig:
    """Defaults <- config file chain <- `overrides` (typed CLI options) <- `--set` strings."""
    cfg = ExperimentConfig()
    if config_file:
        path = Path(config_file)
        cfg = _apply(cfg, read_yaml(path), str(path))
        if "name" not in read_yaml(path):
            cfg = dataclasses.replace(cfg, name=path.stem)
    if overrides:
        cfg = _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, "command-line options")
    if sets:
        cfg = _apply(cfg, parse_set(sets), "--set")
    return validate(cfg)


def to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_flat(cfg: ExperimentConfig) -> dict[str, Any]:
    return _flatten(to_dict(cfg), "config")


def hashed_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The part of the config that defines what a run computes."""
    tree = to_dict(cfg)
    kept = {key: tree["runtime"][key] for key in HASHED_RUNTIME_KEYS}
    for key in UNHASHED_SECTIONS + UNHASHED_KEYS:
        tree.pop(key, None)
    tree["runtime"] = kept
    return tree


def canonical_json(tree: Any) -> str:
    """Key-sorted, whitespace-free JSON with floats in their shortest round-trip form."""
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def config_hash(cfg: ExperimentConfig) -> str:
    """sha256 of the canonical JSON of the hashed part: equal hash = the same experiment."""
    return hashlib.sha256(canonical_json(hashed_dict(cfg)).encode("ascii")).hexdigest()


def schema_hash() -> str:
    """sha256 of the config's key set and types: changes when the config schema changes."""
    keys = {key: typ.__name__ for key, typ in all_keys().items()}
    return hashlib.sha256(canonical_json(keys).encode("ascii")).hexdigest()


def from_dict(tree: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config from a recorded resolved config (e.g. from the ledger)."""
    return validate(_apply(ExperimentConfig(), _flatten(tree, "recorded config"), "recorded config"))


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
