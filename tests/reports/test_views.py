"""`medref report --figure views`: one SSL step's views of a recorded run, with worked checks.

A tiny MMI-UNet burn-in run is trained once per module at 64 px on the CPU; its recorded model
plays the teacher, and the config's switches are changed per test to check the views they give.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from medref_cli.reports.qualitative import CAPTION_INCHES, DPI, TITLE_INCHES, figure_inches
from medref_cli.reports.views import row_order, step_views

SIZE = 64


@pytest.fixture(scope="module")
def run(tmp_path_factory, medref_in_process, tiny_burnin_args):
    """One recorded burn-in run: {"ledger": url, "id": run id}."""
    home = tmp_path_factory.mktemp("views")
    ledger = f"sqlite:///{home / 'ledger.db'}"
    code, out, err = medref_in_process(
        *tiny_burnin_args, "--set", f"data.image_size={SIZE}", "--set", f"runtime.results_dir={home / 'results'}",
        "--ledger", ledger, "--json")
    assert code == 0, err
    return {"ledger": ledger, "id": json.loads(out)["run_id"]}


@pytest.fixture(scope="module")
def loaded_and_batch(run):
    from medref_cli.data.cache import load_split
    from medref_cli.evaluation.predict_split import load_recorded_model, split_records
    from medref_cli.ledger import open_ledger

    ledger = open_ledger(run["ledger"], create=False)
    try:
        loaded = load_recorded_model(ledger, run["id"], torch.device("cpu"))
    finally:
        ledger.dispose()
    records = sorted(split_records(loaded, "train"), key=lambda r: r.id)[:8]
    return loaded, load_split(records, SIZE, cache_dir=None)


def _with_ssl(loaded, **changes):
    return replace(loaded, cfg=replace(loaded.cfg, ssl=replace(loaded.cfg.ssl, **changes)))


@pytest.mark.parametrize(
    ("mixed", "changed", "n", "expected"),
    [
        ([False, True, False, False], [True, False, False, True], 4, [1, 0, 3, 2]),
        ([False, True, False, False], [True, False, False, True], 2, [1, 0]),
        ([False, False, False], [False, False, False], 5, [0, 1, 2]),
        ([True, True, False], [False, True, True], 3, [0, 1, 2]),
    ],
)
def test_rows_show_mixed_then_text_changed_then_the_rest(mixed, changed, n, expected):
    assert row_order(mixed, changed, n) == expected


def test_without_strong_view_mixing_or_text_augmentation_the_student_sees_the_teacher_view(loaded_and_batch):
    loaded, batch = loaded_and_batch
    plain = _with_ssl(loaded, img_strong=False, mix="none", posaug=False, text_strong=False)
    views = step_views(plain, batch, seed=3)
    assert torch.equal(views.strong, views.weak)
    assert torch.equal(views.student_pseudo, views.teacher_pseudo)
    assert views.student_captions == views.captions == list(batch.captions)
    assert views.mixed == [False] * len(batch) and views.text_changed == [False] * len(batch)
    assert set(views.teacher_pseudo.unique().tolist()) <= {0.0, 1.0}


def test_spc_rows_are_the_mirrored_teacher_view_with_sides_swapped(loaded_and_batch):
    from medref_cli.text.augment import swap_sides

    loaded, batch = loaded_and_batch
    spc = _with_ssl(loaded, img_strong=False, mix="spc", posaug=False, text_strong=False)
    views = step_views(spc, batch, seed=3)
    assert 0 < sum(views.mixed) < len(batch)  # seed 3 flips some of the 8, not all
    for i, flipped in enumerate(views.mixed):
        if flipped:
            assert torch.equal(views.strong[i], torch.flip(views.weak[i], dims=[-1]))
            assert torch.equal(views.student_pseudo[i], torch.flip(views.teacher_pseudo[i], dims=[-1]))
            assert views.student_captions[i] == swap_sides(views.captions[i])
        else:
            assert torch.equal(views.strong[i], views.weak[i])
            assert views.student_captions[i] == views.captions[i]
    again = step_views(spc, batch, seed=3)  # one seed, one figure
    assert again.mixed == views.mixed and torch.equal(again.strong, views.strong)


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("n", [1, 3])
def test_the_figure_has_a_row_per_sample_with_two_caption_lines(n, run, cli, tmp_path):
    code, out, err = cli("report", "--figure", "views", "--runs", str(run["id"]), "--n", str(n), "--out", "v.png",
                         "--ledger", run["ledger"])
    assert (code, err) == (0, "")
    assert out.strip() == "wrote v.png"
    width, height = figure_inches(n, 4)
    height += n * CAPTION_INCHES + TITLE_INCHES  # the second caption line and the title
    assert _png_size(tmp_path / "v.png") == (round(width * DPI), round(height * DPI))
    assert [p.name for p in tmp_path.iterdir()] == ["v.png"]


@pytest.mark.parametrize(
    ("runs", "extra", "message"),
    [
        ("{a},{a}", [], "--figure views takes one run"),
        ("{a}", ["--n", "0"], "--n must be at least 1"),
        ("{a}", ["--out", "v.txt"], "must end in .png"),
        ("999", [], "no run 999"),
    ],
)
def test_bad_request_is_one_line_and_writes_nothing(runs, extra, message, run, cli, tmp_path):
    out_args = [] if "--out" in extra else ["--out", "v.png"]
    code, out, err = cli("report", "--figure", "views", "--runs", runs.format(a=run["id"]), *extra, *out_args,
                         "--ledger", run["ledger"])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []
