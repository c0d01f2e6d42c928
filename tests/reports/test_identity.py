"""Method identity from the recorded config, the seed-free config identity, --where, the stale rule."""

from __future__ import annotations

import dataclasses

import pytest

from medref_cli.config import load_config, to_dict
from medref_cli.errors import MedrefError
from medref_cli.ledger.report_queries import RunRecord
from medref_cli.reports.identity import Components, ConfigCondition, components, identity_hash
from medref_cli.reports.layouts import FULL_METHOD, table2_rows, table3_rows
from medref_cli.reports.staleness import CurrentVersions, stale_reasons


def recorded(*sets: str) -> dict:
    return to_dict(load_config(sets=list(sets)))


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ((), FULL_METHOD),
        (("ssl.posaug=false", "ssl.mix=none", "ssl.contrastive=none"),
         Components(True, True, False, False, "none", "none")),
        (("ssl.text_strong=true", "ssl.mix=cutmix", "ssl.contrastive=clip"),
         Components(True, True, True, True, "cutmix", "clip")),
        (("ssl.ema=false", "ssl.img_strong=false"), Components(False, False, False, True, "tpatchmix", "itcl")),
    ],
)
def test_components_come_from_the_recorded_ssl_section(sets, expected):
    assert components(recorded(*sets)) == expected


def test_components_fill_keys_an_older_config_did_not_record():
    tree = recorded("ssl.mix=none")
    del tree["ssl"]["text_strong"]  # as if recorded before the key existed: today's default applies
    assert components(tree).text_strong is False and components(tree).mix == "none"


def test_every_ablation_row_is_a_distinct_component_set():
    for rows in (table2_rows("mmi-unet"), table3_rows("mmi-unet")):
        train = [r.components for r in rows if r.kind == "train"]
        assert len(set(train)) == len(train)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("train.seed=1",), ("train.seed=2",), True),  # seeds of one experiment
        (("name=first",), ("name=second", "runtime.device=cpu"), True),  # unhashed keys
        (("train.epochs=20",), ("train.epochs=40",), False),
        (("data.image_size=224",), ("data.image_size=128",), False),
        (("model.visual_encoder=convnext_tiny",), ("model.visual_encoder=resnet18",), False),
        (("ssl.posaug=true",), ("ssl.posaug=false",), False),
        (("ssl.zoom_max=1.2", "train.seed=1"), ("ssl.zoom_max=1.5", "train.seed=1"), False),
        (("split.ratio=0.01",), ("split.ratio=0.02",), False),
        (("split.seed=42",), ("split.seed=7",), True),  # the split seed is a seed too (ablate --seeds)
    ],
)
def test_identity_ignores_only_the_seeds(a, b, same):
    assert (identity_hash(recorded(*a)) == identity_hash(recorded(*b))) is same


def test_identity_of_a_config_that_no_longer_loads_is_still_defined():
    old = recorded()
    old["ssl"]["retired_key"] = 3
    assert identity_hash(old) != identity_hash(recorded())


@pytest.mark.parametrize(
    ("condition", "sets", "holds"),
    [
        ("train.epochs=20", ("train.epochs=20",), True),
        ("train.epochs=20", ("train.epochs=40",), False),
        ("ssl.posaug=false", ("ssl.posaug=false",), True),
        ("ssl.posaug=no", ("ssl.posaug=true",), False),
        ("split.ratio=0.01", ("split.ratio=0.01",), True),
        ("model.backbone=guidedecoder", ("model.backbone=mmi-unet",), False),
    ],
)
def test_where_conditions(condition, sets, holds):
    assert ConfigCondition.parse(condition).holds(recorded(*sets)) is holds


@pytest.mark.parametrize("text", ["train.epochs", "train.epoch=3"])
def test_bad_where_conditions_are_user_errors(text):
    with pytest.raises(MedrefError):
        ConfigCondition.parse(text)


CURRENT = CurrentVersions("code-now", "schema-now", {"qata": "data-new"})


def run_record(**changes) -> RunRecord:
    base = RunRecord(id=1, kind="train", parent_id=None, status="finished", dataset="qata", backbone="mmi-unet",
                     label_ratio=0.01, seed=1, config={}, config_hash="h", config_schema="schema-now",
                     code_version="code-now", data_hash="data-new", split_hash="s", error=None)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "reasons"),
    [
        ({}, []),
        ({"code_version": "code-then"}, ["other code version"]),
        ({"config_schema": "schema-then"}, ["other config schema"]),
        ({"data_hash": "data-old"}, ["older data hash"]),
        ({"data_hash": None}, ["no data hash recorded"]),
        ({"dataset": "mosmed", "data_hash": None}, []),  # no data hash known for that data set
        ({"code_version": "x", "config_schema": "y", "data_hash": "z"},
         ["other code version", "other config schema", "older data hash"]),
    ],
)
def test_stale_rule(changes, reasons):
    assert stale_reasons(run_record(**changes), CURRENT) == reasons
