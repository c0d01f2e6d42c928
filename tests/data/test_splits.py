from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from medref_cli.data.splits import labeled_count, load_manifest, make_manifest, split_ids
from medref_cli.errors import MedrefError

RATIOS = (0.01, 0.02, 0.05, 0.15, 1.0)


@pytest.mark.parametrize(
    "n, ratio, expected",
    [(1000, 0.01, 10), (1000, 0.05, 50), (5716, 0.01, 57), (5716, 0.02, 114), (5716, 0.15, 857),
     (30, 0.01, 1), (10, 0.05, 1), (10, 0.25, 3), (10, 0.35, 4), (7, 1.0, 7), (1, 0.01, 1)],
)
def test_labeled_count_rule(n, ratio, expected):
    assert labeled_count(n, ratio) == expected


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_labeled_count_rejects_bad_ratios(ratio):
    with pytest.raises(MedrefError):
        labeled_count(100, ratio)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_splits_are_nested_for_one_seed(seed):
    ids = [f"img{i:04d}" for i in range(1000)]
    labeled = [set(split_ids(ids, r, seed)[0]) for r in RATIOS]
    for small, large in itertools.pairwise(labeled):
        assert small < large
    assert labeled[-1] == set(ids)
    lab, unlab = split_ids(ids, 0.05, seed)
    assert set(lab).isdisjoint(unlab) and len(lab) + len(unlab) == 1000


def test_split_does_not_depend_on_input_order_and_does_on_seed():
    ids = [f"s{i}" for i in range(200)]
    a = make_manifest("x", "h" * 64, ids, 0.05, 42)
    b = make_manifest("x", "h" * 64, list(reversed(ids)), 0.05, 42)
    c = make_manifest("x", "h" * 64, ids, 0.05, 43)
    assert a.sha256 == b.sha256
    assert a.labeled != c.labeled and a.sha256 != c.sha256


def test_duplicate_ids_are_refused():
    with pytest.raises(MedrefError, match="duplicate"):
        split_ids(["a", "b", "a"], 0.5, 0)


def test_a_hand_edited_manifest_is_refused(tmp_path):
    m = make_manifest("x", "h" * 64, ["a", "b", "c"], 0.5, 0)
    path = tmp_path / "m.json"
    body = json.loads(m.to_json())
    body["labeled"] = body["labeled"] + ["extra"]
    path.write_text(json.dumps(body, indent=4))
    with pytest.raises(MedrefError, match="edited by hand"):
        load_manifest(path)


def test_cli_split_records_a_reproducible_manifest(cli, tmp_path):
    code, out, err = cli("split", "--dataset", "synthetic", "--ratio", "0.05", "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = cli("split", "--dataset", "synthetic", "--ratio", "0.05", "--json")
    second = json.loads(out)
    assert first["split_hash"] == second["split_hash"] and first["run_id"] != second["run_id"]
    manifest = load_manifest(Path(first["manifest"]))
    assert manifest.sha256 == first["split_hash"]
    assert len(manifest.labeled) == first["n_labeled"] == labeled_count(first["n_train"], 0.05)
    # nested on the real generated data too
    code, out, _ = cli("split", "--dataset", "synthetic", "--ratio", "0.15", "--json")
    assert set(manifest.labeled) < set(load_manifest(Path(json.loads(out)["manifest"])).labeled)
    with sqlite3.connect(tmp_path / "results" / "ledger.db") as conn:
        rows = conn.execute("SELECT kind, status, split_hash, data_hash, dataset FROM runs ORDER BY id").fetchall()
        artifacts = conn.execute("SELECT role, sha256 FROM artifacts").fetchall()
    assert [r[:2] for r in rows] == [("split", "finished")] * 3
    assert rows[0][2] == first["split_hash"] and rows[0][3] == first["data_hash"] and rows[0][4] == "synthetic"
    assert artifacts[0] == ("split_manifest", first["split_hash"])


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratio", "0"], "split.ratio"),
        (["--ratio", "1.5"], "split.ratio"),
        (["--ratio", "abc"], "--ratio"),
        (["--seed", "-1"], "split.seed"),
        (["--dataset", "imagenet"], "data.dataset"),
        (["--data", "does/not/exist"], "data folder not found"),
        (["--data", "empty"], "empty"),
        (["--set", "split.ratoi=0.1"], "did you mean split.ratio"),
        (["--config", "bad.yaml"], "malformed YAML"),
        (["--set", "runtime.results_dir=blocker/results"], "cannot"),
        (["--dataset", "synthetic", "--set", "runtime.results_dir=blocker/results"], "cannot write the synthetic"),
        (["--dataset", "qata"], "qata data not found"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(cli, tmp_path, monkeypatch, synthetic_root, args, message):
    monkeypatch.delenv("MEDREF_QATA_ROOT", raising=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text("split: {ratio: [\n")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    # a ledger with one recorded run must come out unchanged
    code, _, err = cli("split", "--dataset", "synthetic", "--data", str(synthetic_root), "--ratio", "0.5")
    assert code == 0, err
    before = _snapshot(tmp_path / "results")
    if "--data" not in args and "--dataset" not in args:
        args = [*args, "--dataset", "synthetic", "--data", str(synthetic_root)]
    code, _out, err = cli("split", *args)
    assert code != 0
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(tmp_path / "results") == before
