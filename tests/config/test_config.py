from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medref_cli.config import ExperimentConfig, config_hash, load_config, to_dict
from medref_cli.errors import MedrefError

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"


def test_base_yaml_restates_the_dataclass_defaults():
    tree = yaml.safe_load((EXPERIMENTS / "base.yaml").read_text())
    assert tree == to_dict(ExperimentConfig())


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.rglob("*.yaml")), ids=lambda p: p.relative_to(EXPERIMENTS).as_posix())
def test_every_experiment_file_builds(path):
    cfg = load_config(path)
    assert len(config_hash(cfg)) == 64


@pytest.mark.parametrize("path", sorted(p for p in EXPERIMENTS.rglob("*.yaml") if p.name != "base.yaml"),
                         ids=lambda p: p.name)
def test_experiment_files_hold_only_differences(path):
    """An experiment file extends another and restates no value it inherits unchanged."""
    from medref_cli.config.loader import _flatten, read_yaml

    raw = yaml.safe_load(path.read_text())
    assert "extends" in raw, f"{path.name} must extend base.yaml (or another experiment)"
    parent = read_yaml((path.parent / raw.pop("extends")).resolve())
    own = _flatten(raw, path.name)
    restated = sorted(k for k, v in own.items() if k in parent and parent[k] == v)
    assert not restated, f"{path.name} restates inherited values: {restated}"
    assert own, f"{path.name} changes nothing"


def test_overrides_are_typed_and_layered(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text("train:\n  lr: 0.001\n  epochs: 7\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config(child, overrides={"split.ratio": 0.02}, sets=["train.batch_size=4", "ssl.posaug=false"])
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 9
    assert cfg.split.ratio == 0.02 and cfg.train.batch_size == 4 and cfg.ssl.posaug is False
    assert cfg.name == "child"
    assert isinstance(cfg.train.batch_size, int)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.lrr=1"], "did you mean train.lr"),
        (["trian.lr=1"], "did you mean train.lr"),
        (["train.batch_size=2.5"], "expects int"),
        (["train.batch_size=true"], "expects int"),
        (["ssl.posaug=maybe"], "expects bool"),
        (["split.ratio=abc"], "expects float"),
        (["split.ratio=0"], "(0, 1]"),
        (["split.ratio=1.5"], "(0, 1]"),
        (["data.laterality=up"], "must be one of image, patient"),
        (["train.lr"], "expects key=value"),
        (["data.image_size=100"], "multiple of 32"),
        (["ssl.shift=0.3"], "'ssl.shift' must be in [0, 0.25], got 0.3"),
    ],
)
def test_bad_overrides_are_one_line_errors(sets, message):
    with pytest.raises(MedrefError) as err:
        load_config(sets=sets)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: [1,\n", "malformed YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("train:\n  nope: 1\n", "unknown config key 'train.nope'"),
        ("extends: missing.yaml\n", "config file not found"),
        ("extends: self.yaml\n", "deeper than"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with pytest.raises(MedrefError) as err:
        load_config(path)
    assert message in str(err.value)


def test_hash_identifies_the_experiment_not_the_runtime():
    base = load_config()
    assert config_hash(base) == config_hash(load_config(sets=["runtime.device=cpu", "name=other"]))
    assert config_hash(base) != config_hash(load_config(sets=["train.lr=0.001"]))
    # equal values written differently give the same hash
    assert config_hash(load_config(sets=["train.lr=3e-4"])) == config_hash(load_config(sets=["train.lr=0.0003"]))


def test_config_cli_reports_unknown_key(cli):
    code, out, err = cli("config", "show", "--set", "model.backbon=x")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "did you mean model.backbone" in err
