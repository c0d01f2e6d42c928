"""`medref position train|eval` end to end on tiny settings, `predict_position_probs`, and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from .tiny import TINY, _data, _rows

POSITION = ["--cpu", "--epochs", "2", "--set", "position.freeze_epochs=1", "--set", "position.batch_size=8",
            "--set", "position.head=region_pool"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, synthetic_root, medref_in_process):
    """A folder holding a ledger with a tiny burn-in (run 2, its split is run 1), a position run on it and
    a test evaluation of that."""
    folder = tmp_path_factory.mktemp("position")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MEDREF_LEDGER", raising=False)
        code, out, err = medref_in_process("burnin", *_data(synthetic_root), *TINY, "--ratio", "0.5", "--epochs", "1",
                                           "--json")
        assert code == 0, err
        burnin = json.loads(out)["run_id"]
        code, out, err = medref_in_process("position", "train", "--run", str(burnin), *POSITION, "--json")
        assert code == 0, err
        trained = json.loads(out)
        code, out, err = medref_in_process("position", "eval", str(trained["run_id"]), "--cpu", "--json")
        assert code == 0, err
        evaluated = json.loads(out)
    return folder, burnin, trained, evaluated


def test_position_train_is_recorded_as_a_child_run_with_config_history_and_checkpoint(recorded, synthetic_root):
    folder, burnin, trained, _ = recorded
    run = trained["run_id"]
    kind, status, parent, config, tags = _rows(folder, f"SELECT kind, status, parent_id, config, tags FROM runs "
                                                       f"WHERE id={run}")[0]
    assert (kind, status, parent) == ("position", "finished", burnin)
    config, tags = json.loads(config), json.loads(tags)
    assert config["position"]["head"] == "region_pool" and config["position"]["epochs"] == 2
    assert config["position"]["bce_mix"] == 0.5 and config["position"]["lr_backbone"] == 3e-5
    assert config["model"]["backbone"] == "mmi-unet-tiny" and config["data"]["image_size"] == 64  # the parent's
    assert tags["laterality"] == "image" and len(tags["pos_weight"]) == 6
    # two epochs: frozen (head only), then the last two stages too
    assert tags["trainable_by_epoch"][0] < tags["trainable_by_epoch"][1]
    (path, sha, size), = _rows(folder, f"SELECT path, sha256, bytes FROM artifacts WHERE run_id={run} "
                                       "AND role='checkpoint'")
    blob = Path(path).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == sha and len(blob) == size
    history = _rows(folder, f"SELECT name, step, value FROM metric_history WHERE run_id={run} AND name='val_mAP' "
                            "ORDER BY step")
    assert len(history) == 2 and all(0.0 <= v <= 1.0 for _, _, v in history)
    finals = dict(_rows(folder, f"SELECT name, value FROM final_metrics WHERE run_id={run}"))
    assert finals["val_mAP"] == pytest.approx(max(v for _, _, v in history))
    assert finals["best_epoch"] == [v for _, _, v in history].index(finals["val_mAP"]) + 1
    assert finals["val_mAP"] == pytest.approx(trained["val_mAP"])
    n_train = len(json.loads((synthetic_root / "prompts" / "annotation.json").read_text())["train"]) // 2
    assert tags["n_train"] == n_train  # the labeled half (position.train_split: labeled)


def test_position_eval_records_scores_that_the_per_image_rows_reproduce(recorded, synthetic_root):
    from medref_cli.runtime.position_metrics import multilabel_metrics

    folder, _, trained, evaluated = recorded
    run = evaluated["run_id"]
    kind, parent = _rows(folder, f"SELECT kind, parent_id FROM runs WHERE id={run}")[0]
    assert (kind, parent) == ("position_eval", trained["run_id"])
    rows = _rows(folder, f"SELECT sample_id, label, probs, jaccard, exact FROM position_scores WHERE run_id={run} "
                         "ORDER BY id")
    n_test = len(json.loads((synthetic_root / "prompts" / "annotation.json").read_text())["test"])
    assert len(rows) == n_test
    labels = np.array([[int(b) for b in r[1]] for r in rows])
    probs = np.array([json.loads(r[2]) for r in rows])
    again = multilabel_metrics(labels, probs, 0.5)
    finals = dict(_rows(folder, f"SELECT name, value FROM final_metrics WHERE run_id={run}"))
    for key in ("mAP", "macro_f1", "exact_match", "micro_f1", "sample_jaccard"):
        assert finals[f"test_{key}"] == pytest.approx(again[key]) == pytest.approx(evaluated[key])
    assert np.mean([r[4] for r in rows]) == pytest.approx(finals["test_exact_match"])
    # the labels are the records' 6-bit labels
    from medref_cli.data.cache import record_label
    from medref_cli.data.readers import read_dataset

    records = read_dataset(synthetic_root, "auto")["test"]
    assert [r[0] for r in rows] == [r.id for r in records]
    assert labels.tolist() == [list(record_label(r)) for r in records]


def test_runs_show_counts_the_position_scores(recorded, medref_in_process):
    folder, _, _, evaluated = recorded
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MEDREF_LEDGER", raising=False)
        code, out, err = medref_in_process("runs", "show", str(evaluated["run_id"]), "--json")
        assert code == 0, err
        assert json.loads(out)["position_scores"] == evaluated["n_images"]
        code, out, err = medref_in_process("runs", "show", str(evaluated["run_id"]))
    assert code == 0 and f"per-image position scores: {int(evaluated['n_images'])}" in out, err


def test_predict_position_probs_gives_the_evaluated_probabilities_in_record_order(recorded, synthetic_root):
    from medref_cli.data.readers import read_dataset
    from medref_cli.evaluation.position_probs import predict_position_probs

    folder, _, trained, evaluated = recorded
    records = read_dataset(synthetic_root, "auto")["test"]
    url = f"sqlite:///{folder / 'results' / 'ledger.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        probs = predict_position_probs(str(trained["run_id"]), records, ledger_url=url, device="cpu")
        reversed_probs = predict_position_probs(str(trained["run_id"]), records[::-1], ledger_url=url, device="cpu")
    stored = [json.loads(p) for (p,) in _rows(folder, f"SELECT probs FROM position_scores WHERE "
                                                       f"run_id={evaluated['run_id']} ORDER BY id")]
    assert probs.shape == (len(records), 6) and probs.dtype.is_floating_point
    assert np.allclose(probs.numpy(), np.array(stored), atol=1e-6)
    assert np.allclose(reversed_probs.numpy(), probs.numpy()[::-1], atol=1e-6)
    assert ((probs >= 0) & (probs <= 1)).all()


def _refused(folder: Path, medref, args: list[str], message: str) -> None:
    before = _rows(folder, "SELECT COUNT(*) FROM runs")[0][0]
    runs_dirs = sorted(p.name for p in (folder / "results" / "runs").iterdir())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("MEDREF_LEDGER", raising=False)
        code, _out, err = medref(*args)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert _rows(folder, "SELECT COUNT(*) FROM runs")[0][0] == before
    assert sorted(p.name for p in (folder / "results" / "runs").iterdir()) == runs_dirs


def test_bad_input_is_one_line_exit_2_and_nothing_written(recorded, medref_in_process):
    folder, burnin, trained, evaluated = recorded
    split_run = _rows(folder, "SELECT id FROM runs WHERE kind='split'")[0][0]
    _refused(folder, medref_in_process, ["position", "train", "--run", str(split_run), "--cpu"],
             f"run {split_run} is a split run, which holds no visual encoder")
    _refused(folder, medref_in_process, ["position", "train", "--run", str(evaluated["run_id"]), "--cpu"],
             "holds no visual encoder")
    _refused(folder, medref_in_process, ["position", "train", "--run", "999", "--cpu"], "no run 999 in the ledger")
    _refused(folder, medref_in_process, ["position", "train", "--run", str(burnin), "--cpu", "--set", "train.lr=1"],
             "--set train.lr: `position train` takes everything but position.* and runtime.*")
    _refused(folder, medref_in_process, ["position", "train", "--run", str(burnin), "--cpu", "--head", "mlp"],
             "config key 'position.head' must be one of gap_mlp, region_pool, six_query")
    _refused(folder, medref_in_process, ["position", "eval", str(burnin), "--cpu"],
             f"run {burnin} is a burnin run, not a position predictor")
    _refused(folder, medref_in_process, ["position", "eval", "999", "--cpu"], "no run 999 in the ledger")
    _refused(folder, medref_in_process, ["position", "eval", str(trained["run_id"]), "--cpu", "--split", "dev"],
             "--split must be train, valid or test")


def test_a_checkpoint_without_encoder_tensors_is_refused(tmp_path):
    from medref_cli.config import load_config
    from medref_cli.errors import MedrefError
    from medref_cli.runtime.position import predictor_from_segmentation

    cfg = load_config(sets=["model.backbone=mmi-unet-tiny"])
    with pytest.raises(MedrefError, match="holds no visual encoder weights"):
        predictor_from_segmentation(cfg, {"model": {"decoder.weight": 0}, "text_dim": 8}, tmp_path / "x.pt")
    with pytest.raises(MedrefError, match="is not a segmentation checkpoint"):
        predictor_from_segmentation(cfg, {"kind": "position"}, tmp_path / "x.pt")


def test_train_split_train_adds_the_unlabeled_images(recorded, synthetic_root):
    import dataclasses

    from medref_cli.config import load_config
    from medref_cli.data.split_run import identify_data
    from medref_cli.ledger import get_run, open_ledger
    from medref_cli.runs.position_run import position_config, training_splits

    folder, burnin, _, _ = recorded
    ledger = open_ledger(f"sqlite:///{folder / 'results' / 'ledger.db'}", create=False)
    try:
        parent = get_run(ledger, burnin)
    finally:
        ledger.dispose()
    n_train = len(json.loads((synthetic_root / "prompts" / "annotation.json").read_text())["train"])
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for split, expected in (("labeled", n_train // 2), ("train", n_train)):
            given = load_config(sets=[f"position.train_split={split}", "runtime.device=cpu"])
            cfg = position_config(parent, given)
            assert dataclasses.replace(cfg.position, train_split="labeled") == load_config().position
            train, valid = training_splits(cfg, parent, identify_data(cfg))
            assert len(train) == expected and len(valid) > 0
            assert train.labels.shape == (expected, 6)
