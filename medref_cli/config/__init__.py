"""Configuration: frozen dataclasses, YAML experiment files, typed overrides, hashing.

May import: the base modules (errors.py, files.py, transfer.py) only.
"""

from medref_cli.config.loader import (
    all_keys,
    canonical_json,
    config_hash,
    dump_yaml,
    from_dict,
    hashed_dict,
    load_config,
    schema_hash,
    to_dict,
    to_flat,
)
from medref_cli.config.schema import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    PositionConfig,
    RuntimeConfig,
    SplitConfig,
    SSLConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "PositionConfig",
    "RuntimeConfig",
    "SSLConfig",
    "SplitConfig",
    "TrainConfig",
    "all_keys",
    "canonical_json",
    "config_hash",
    "dump_yaml",
    "from_dict",
    "hashed_dict",
    "load_config",
    "schema_hash",
    "to_dict",
    "to_flat",
]
