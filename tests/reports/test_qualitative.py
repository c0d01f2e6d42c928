"""`medref report --figure qualitative`: sample choice, predictions from recorded checkpoints, the PNG grid.

Two tiny MMI-UNet burn-in runs (different seeds) are trained once per module at 64 px on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medref_cli.reports.qualitative import DPI, choose_samples, figure_inches

SIZE = 64


@pytest.fixture(scope="module")
def runs(tmp_path_factory, medref_in_process, tiny_burnin_args):
    """Two recorded burn-in runs in one ledger: {"ledger": url, "ids": [a, b]}."""
    home = tmp_path_factory.mktemp("qualitative")
    ledger = f"sqlite:///{home / 'ledger.db'}"
    ids = []
    for seed in (0, 1):
        code, out, err = medref_in_process(
            *tiny_burnin_args, "--set", f"data.image_size={SIZE}", "--set", f"train.seed={seed}",
            "--set", f"runtime.results_dir={home / 'results'}", "--ledger", ledger, "--json")
        assert code == 0, err
        ids.append(json.loads(out)["run_id"])
    return {"ledger": ledger, "ids": ids}


SCORES_A = {"s1": (0.9, 0.8), "s2": (0.5, 0.3), "s3": (0.2, 0.1), "s4": (0.7, 0.6)}
SCORES_B = {"s1": (0.8, 0.7), "s2": (0.9, 0.8), "s3": (0.2, 0.1), "s4": (0.1, 0.0)}


@pytest.mark.parametrize(
    ("available", "scores", "n", "expected"),
    [
        # spreads: s1 0.1, s2 0.4, s3 0.0, s4 0.6
        (["s1", "s2", "s3", "s4"], {1: SCORES_A, 2: SCORES_B}, 2, ["s4", "s2"]),
        (["s1", "s2", "s3", "s4"], {1: SCORES_A, 2: SCORES_B}, 9, ["s4", "s2", "s1", "s3"]),
        # one run: every spread is 0, so ties go by id
        (["s3", "s1", "s2"], {1: SCORES_A}, 2, ["s1", "s2"]),
        # only samples scored by every run (and present in the split) count
        (["s1", "s2", "s3", "s4"], {1: SCORES_A, 2: {"s3": (0.0, 0.0), "s1": (0.2, 0.1)}}, 4, ["s1", "s3"]),
        (["s1", "s3"], {1: SCORES_A, 2: SCORES_B}, 4, ["s1", "s3"]),
        # nothing recorded: the first n ids in sorted order
        (["s9", "s2", "s5"], {1: {}, 2: {}}, 2, ["s2", "s5"]),
        (["s9", "s2", "s5"], {}, 5, ["s2", "s5", "s9"]),
    ],
)
def test_choose_samples(available, scores, n, expected):
    assert choose_samples(available, scores, n) == expected


def test_predictions_reproduce_the_recorded_per_image_dice(runs):
    """Thresholded predictions of each run score exactly what its burn-in recorded on those test images."""
    from medref_cli.evaluation.predict_split import predict_split
    from medref_cli.ledger import open_ledger
    from medref_cli.ledger.report_queries import image_scores

    ledger = open_ledger(runs["ledger"], create=False)
    try:
        recorded = image_scores(ledger, runs["ids"])
        result = predict_split(ledger, runs["ids"], lambda ids: ids[:3], device=torch.device("cpu"))
    finally:
        ledger.dispose()
    assert len(result.ids) == 3 and result.ids == sorted(result.ids)
    assert result.images.shape == (3, SIZE, SIZE) and result.masks.shape == (3, SIZE, SIZE)
    assert [r.run_id for r in result.runs] == runs["ids"]
    assert not np.array_equal(result.runs[0].probs, result.runs[1].probs)  # two different models
    for run in result.runs:
        assert run.threshold == 0.5
        pred, truth = run.masks(), result.masks
        for k, sample in enumerate(result.ids):
            tp = float((pred[k] & truth[k]).sum())
            total = float(pred[k].sum() + truth[k].sum())
            dice = 2 * tp / total if total else 1.0
            assert dice == pytest.approx(recorded[run.run_id][sample][0], abs=1e-6)


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_figure_grows_with_runs_and_rows(runs, cli, tmp_path):
    a, b = map(str, runs["ids"])
    cases = {"a_n1.png": (a, "1"), "ab_n1.png": (f"{a},{b}", "1"), "ab_n2.png": (f"{a},{b}", "2")}
    sizes = {}
    for name, (ids, n) in cases.items():
        code, out, err = cli("report", "--figure", "qualitative", "--runs", ids, "--n", n, "--out", name,
                             "--ledger", runs["ledger"])
        assert code == 0, err
        assert out.strip() == f"wrote {name}"
        sizes[name] = _png_size(tmp_path / name)
    for name, (ids, n) in cases.items():  # the canvas is panels x inches x dpi
        width, height = figure_inches(int(n), 2 + len(ids.split(",")))
        assert sizes[name] == (round(width * DPI), round(height * DPI))
    assert sizes["ab_n1.png"][0] > sizes["a_n1.png"][0]  # one more column
    assert sizes["ab_n2.png"][1] > sizes["ab_n1.png"][1]  # one more row
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cases)  # no temporary files left


def test_default_output_path_and_four_rows(runs, cli, tmp_path):
    a, b = runs["ids"]
    code, out, err = cli("report", "--figure", "qualitative", "--runs", f"{a},{b}", "--ledger", runs["ledger"])
    assert code == 0, err
    assert out.strip() == f"wrote {Path('results') / 'figures' / f'qualitative_runs_{a}-{b}.png'}"
    target = tmp_path / "results" / "figures" / f"qualitative_runs_{a}-{b}.png"
    width, height = figure_inches(4, 4)
    assert _png_size(target) == (round(width * DPI), round(height * DPI))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "999"], "no run 999"),
        (["--runs", "{a},998"], "no run 998"),
        (["--runs", "1"], "run 1 (split, finished) recorded no checkpoint"),
        ([], "--figure qualitative needs --runs"),
        (["--runs", "{a}", "--n", "0"], "--n must be at least 1"),
        (["--runs", "{a}", "--out", "f.txt"], "must end in .png"),
    ],
)
def test_bad_request_is_one_line_and_writes_nothing(args, message, runs, cli, tmp_path):
    args = [arg.format(a=runs["ids"][0]) for arg in args]
    out_args = [] if "--out" in args else ["--out", "f.png"]
    code, _, err = cli("report", "--figure", "qualitative", *args, *out_args, "--ledger", runs["ledger"])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("medref: error: ")
    assert message in err
    assert list(tmp_path.iterdir()) == []
