"""What a recorded run *is*, read from its resolved config, never from its free-text name.

- `Components`: the SSL components of a `train` run (`config["ssl"]`), which decide its table row.
- `identity_hash`: the config hash without the seeds (training seed and split seed: `medref
  ablate --seeds` and the QaTa script vary both). Runs with the same identity are seeds of one
  experiment and may be averaged; runs with different identities never are.
- `ConfigCondition`: a `--where key=value` filter on recorded config values.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from medref_cli.config import canonical_json, from_dict, hashed_dict, to_dict
from medref_cli.config.schema import UNHASHED_KEYS, UNHASHED_SECTIONS
from medref_cli.errors import MedrefError

SEED_KEYS = (("train", "seed"), ("split", "seed"))


@dataclass(frozen=True)
class Components:
    """The Semi-MedRef components a semi-supervised run used."""

    ema: bool
    img_strong: bool
    text_strong: bool
    posaug: bool
    mix: str  # none | tpatchmix | cutmix | spc
    contrastive: str  # none | itcl | clip


def resolved_config(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded config with today's defaults filled in; as recorded if it no longer loads."""
    try:
        return to_dict(from_dict(recorded))
    except MedrefError:
        return copy.deepcopy(recorded)


def components(recorded: dict[str, Any]) -> Components:
    ssl = resolved_config(recorded).get("ssl", {})
    return Components(
        ema=bool(ssl.get("ema", False)),
        img_strong=bool(ssl.get("img_strong", False)),
        text_strong=bool(ssl.get("text_strong", False)),
        posaug=bool(ssl.get("posaug", False)),
        mix=str(ssl.get("mix", "none")),
        contrastive=str(ssl.get("contrastive", "none")),
    )


def _hashed_tree(recorded: dict[str, Any]) -> dict[str, Any]:
    try:
        return hashed_dict(from_dict(recorded))
    except MedrefError:  # a config from an older schema: hash what was recorded
        tree = copy.deepcopy(recorded)
        for key in UNHASHED_SECTIONS + UNHASHED_KEYS:
            tree.pop(key, None)
        return tree


def identity_tree(recorded: dict[str, Any]) -> dict[str, Any]:
    """The hashed part of a config without the training and split seeds.

    Burn-in runs need no special case: the training code records a burn-in with its SSL-only
    settings reset to their defaults, so burn-ins of different SSL experiments already agree."""
    tree = _hashed_tree(recorded)
    for section, key in SEED_KEYS:
        tree.get(section, {}).pop(key, None)
    return tree


def identity_hash(recorded: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `identity_tree`: equal = seeds of the same experiment."""
    return hashlib.sha256(canonical_json(identity_tree(recorded)).encode("ascii")).hexdigest()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value in a, value in b) for every key whose values differ."""
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def _same_value(recorded: Any, wanted: str) -> bool:
    if isinstance(recorded, bool):
        return wanted.strip().lower() in (("true", "yes", "1", "on") if recorded else ("false", "no", "0", "off"))
    if isinstance(recorded, (int, float)):
        try:
            return float(wanted) == float(recorded)
        except ValueError:
            return False
    return str(recorded) == wanted


@dataclass(frozen=True)
class ConfigCondition:
    """`key=value` on the resolved recorded config (e.g. `train.epochs=20`)."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> ConfigCondition:
        if "=" not in text:
            raise MedrefError(f"--where expects KEY=VALUE (e.g. train.epochs=20), got '{text}'")
        key, value = (part.strip() for part in text.split("=", 1))
        from medref_cli.config import all_keys

        if key not in all_keys():
            raise MedrefError(f"--where: unknown config key '{key}'; run `medref config show` for all keys")
        return cls(key, value)

    def holds(self, recorded: dict[str, Any]) -> bool:
        flat = flatten(resolved_config(recorded))
        return self.key in flat and _same_value(flat[self.key], self.value)
