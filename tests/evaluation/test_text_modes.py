"""`medref evaluate --text-mode`: each mode recorded as an evaluate run with its mode, rate and seed and
per-image scores; ISPG models (a soft position input) take the soft modes; bad input writes nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from medref_cli.text.modes import removal_chosen


@pytest.fixture(scope="module")
def runs(tmp_path_factory, medref_in_process, tiny_burnin_args):
    """A plain and an ISPG (soft position input, removal-aware) tiny burn-in, in one ledger."""
    home = tmp_path_factory.mktemp("textmodes")
    ledger = f"sqlite:///{home / 'ledger.db'}"
    common = [*tiny_burnin_args, "--set", f"runtime.results_dir={home / 'results'}", "--ledger", ledger, "--json"]
    code, out, err = medref_in_process(*common)
    assert code == 0, err
    plain = json.loads(out)["run_id"]
    code, out, err = medref_in_process(*common, "--set", "model.soft_position=true")
    assert code == 0, err
    return {"plain": plain, "soft": json.loads(out)["run_id"], "ledger": ledger, "db": home / "ledger.db",
            "home": home}


def evaluate(medref_in_process, runs, run, *args):
    return medref_in_process("evaluate", str(run), "--cpu", "--ledger", runs["ledger"],
                             "--results-dir", str(runs["home"] / "results"), "--json", *args)


def rows(runs, sql):
    with sqlite3.connect(runs["db"]) as conn:
        return conn.execute(sql).fetchall()


def scores(runs, run_id):
    return dict(rows(runs, f"SELECT sample_id, dice FROM image_scores WHERE run_id={run_id}"))


def test_full_is_todays_evaluation_and_modes_are_recorded(runs, medref_in_process):
    code, out, err = evaluate(medref_in_process, runs, runs["plain"])
    assert code == 0, err
    default = json.loads(out)
    code, out, err = evaluate(medref_in_process, runs, runs["plain"], "--text-mode", "full")
    assert code == 0, err
    full = json.loads(out)
    assert full["dice_global"] == default["dice_global"] and scores(runs, full["run_id"]) == scores(runs, default["run_id"])
    finals = dict(rows(runs, f"SELECT name, value FROM final_metrics WHERE run_id={runs['plain']}"))
    assert full["dice_global"] == pytest.approx(finals["test_dice_global"], abs=1e-12)

    code, out, err = evaluate(medref_in_process, runs, runs["plain"], "--text-mode", "removed", "--removal-rate", "0.5")
    assert code == 0, err
    removed = json.loads(out)
    (tags, parent), = rows(runs, f"SELECT tags, parent_id FROM runs WHERE id={removed['run_id']}")
    tags = json.loads(tags)
    assert parent == runs["plain"]
    assert (tags["text_mode"], tags["removal_rate"], tags["text_seed"]) == ("removed", 0.5, 42)
    ids = sorted(scores(runs, removed["run_id"]))
    assert len(ids) == removed["n_images"] and tags["removed_images"] == sum(removal_chosen(ids, 0.5, 42))

    for mode in ("constant", "shuffled", "swapped"):
        code, out, err = evaluate(medref_in_process, runs, runs["plain"], "--text-mode", mode)
        assert code == 0, err
        res = json.loads(out)
        tags = json.loads(rows(runs, f"SELECT tags FROM runs WHERE id={res['run_id']}")[0][0])
        assert tags["text_mode"] == mode and len(scores(runs, res["run_id"])) == res["n_images"]
        if mode == "constant":
            assert tags["constant_caption"].endswith(".") and tags["constant_from"] == "train"
        assert tags["text_seed"] == (42 if mode == "shuffled" else None)


def test_soft_modes_on_an_ispg_model(runs, medref_in_process):
    results = {}
    for mode in ("full", "removed", "oracle_soft"):
        code, out, err = evaluate(medref_in_process, runs, runs["soft"], "--text-mode", mode)
        assert code == 0, err
        results[mode] = json.loads(out)
        tags = json.loads(rows(runs, f"SELECT tags FROM runs WHERE id={results[mode]['run_id']}")[0][0])
        assert tags["soft_input"] == {"full": "labels", "removed": "zeros", "oracle_soft": "labels"}[mode]
    # oracle_soft at rate 1: no phrase left, the true label in the soft input; removed: zeros
    assert results["oracle_soft"]["dice_global"] != results["removed"]["dice_global"]
    before = rows(runs, "SELECT COUNT(*) FROM runs")[0][0]
    code, out, err = evaluate(medref_in_process, runs, runs["soft"], "--text-mode", "soft_image", "--position-run", "1")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("medref: error: run 1 is a split run, not a position predictor")
    assert rows(runs, "SELECT COUNT(*) FROM runs")[0][0] == before

    # the image-only predictor on the ISPG model's encoder gives soft_image its positions
    code, out, err = medref_in_process(
        "position", "train", "--run", str(runs["soft"]), "--cpu", "--epochs", "2", "--set", "position.freeze_epochs=1",
        "--set", "position.batch_size=8", "--set", f"runtime.results_dir={runs['home'] / 'results'}",
        "--ledger", runs["ledger"], "--json")
    assert code == 0, err
    position = json.loads(out)["run_id"]
    code, out, err = evaluate(medref_in_process, runs, runs["soft"], "--text-mode", "soft_image",
                              "--position-run", str(position))
    assert code == 0, err
    soft = json.loads(out)
    tags = json.loads(rows(runs, f"SELECT tags FROM runs WHERE id={soft['run_id']}")[0][0])
    assert tags["soft_input"] == "predicted" and tags["text_mode"] == "soft_image"
    assert len(scores(runs, soft["run_id"])) == soft["n_images"] == results["removed"]["n_images"]
    # the predicted positions are neither the zeros of `removed` nor the labels of `oracle_soft`
    assert soft["dice_global"] not in (results["removed"]["dice_global"], results["oracle_soft"]["dice_global"])
    code, out, err = medref_in_process("report", "--table", "text", "--format", "json", "--ledger", runs["ledger"])
    assert code == 0, err
    assert "soft_image" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--text-mode", "blank"], "--text-mode must be one of full, removed, constant, shuffled, swapped, oracle_soft"),
    (["--text-mode", "removed", "--removal-rate", "1.5"], "--removal-rate is a share of the images in [0, 1], got 1.5"),
    (["--text-mode", "removed", "--removal-rate", "-0.1"], "--removal-rate is a share of the images in [0, 1]"),
    (["--text-mode", "full", "--removal-rate", "0.5"], "--removal-rate applies to --text-mode removed"),
    (["--text-mode", "swapped", "--seed", "3"], "--seed applies to --text-mode shuffled"),
    (["--text-mode", "oracle_soft"], "--text-mode oracle_soft needs a model with a soft position input"),
    (["--text-mode", "soft_image"], "--text-mode soft_image needs --position-run RUN"),
])
def test_bad_text_mode_input_is_one_line_and_writes_nothing(runs, medref_in_process, args, message):
    before = rows(runs, "SELECT COUNT(*) FROM runs")[0][0]
    files = sorted(p for p in (runs["home"] / "results").rglob("*"))
    code, _out, err = evaluate(medref_in_process, runs, runs["plain"], *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert rows(runs, "SELECT COUNT(*) FROM runs")[0][0] == before
    assert sorted(p for p in (runs["home"] / "results").rglob("*")) == files


def test_predict_gives_an_ispg_model_the_positions_its_caption_names(runs):
    import numpy as np
    import torch

    from medref_cli.data.views import to_unit
    from medref_cli.evaluation.predict import predict_probabilities
    from medref_cli.runtime.batches import model_input

    from .recorded import load_recorded

    loaded, cache = load_recorded(runs["ledger"], runs["soft"])
    images = np.random.default_rng(0).integers(0, 255, size=(1, 64, 64), dtype=np.uint8)
    caption = "unilateral pulmonary infection, one infected area, lower left lung."
    probs = predict_probabilities(loaded, cache, images, [caption], torch.device("cpu"))
    x = model_input(to_unit(torch.from_numpy(images).unsqueeze(1)), False)
    with torch.no_grad():
        text = cache.encode([caption])
        named = loaded.model(x, text.with_positions(torch.tensor([[0, 0, 1, 0, 0, 0]], dtype=torch.float32)))
        zeros = loaded.model(x, text)
    assert torch.equal(probs, torch.sigmoid(named.logits.float()))
    assert not torch.equal(probs, torch.sigmoid(zeros.logits.float()))
