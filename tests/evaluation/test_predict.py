"""`medref predict`: masks equal the thresholded model probabilities, overlays, folder mode, no partial output.

One tiny MMI-UNet is trained once per module (`medref burnin`, 1 epoch at 64 px on the CPU);
expected probabilities are computed here through `load_model` and the evaluation preprocessing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medref_cli.data.decode import decode_gray, resize_image
from medref_cli.data.views import normalise, to_unit
from medref_cli.errors import MedrefError
from medref_cli.evaluation import predict as predict_mod
from medref_cli.evaluation.overlay import OUTLINE_RGB, mask_outline, wrap_caption
from medref_cli.evaluation.predict import read_caption_table

from .recorded import load_recorded

SIZE = 64
LEFT = "unilateral pulmonary infection, one infected area, lower left lung."
RIGHT = "unilateral pulmonary infection, two infected areas, upper middle right lung."
BOTH = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root, medref_in_process, tiny_burnin_args):
    """A recorded burn-in run of a tiny model; its ledger, checkpoint and a few test images."""
    home = tmp_path_factory.mktemp("predict")
    ledger = f"sqlite:///{home / 'ledger.db'}"
    code, out, err = medref_in_process(
        *tiny_burnin_args, "--set", f"data.image_size={SIZE}",
        "--set", f"runtime.results_dir={home / 'results'}", "--ledger", ledger, "--json")
    assert code == 0, err
    summary = json.loads(out)
    images = home / "images"
    images.mkdir()
    sources = sorted((synthetic_root / "images" / "test" / "images").glob("*.png"))[:3]
    for source in sources:  # model-size copies: their masks compare with the model's output pixel for pixel
        Image.fromarray(resize_image(decode_gray(source), SIZE)).save(images / source.name)
    return {"run": summary["run_id"], "ledger": ledger, "checkpoint": Path(summary["checkpoint"]),
            "images": images, "names": [s.name for s in sources], "home": home}


@pytest.fixture(scope="module")
def model(trained):
    return load_recorded(trained["ledger"], trained["run"])


def expected_probs(model, paths: list[Path], captions: list[str]) -> np.ndarray:
    """(B, S, S) probabilities computed here: resize, [0, 1], per-image standardisation, sigmoid."""
    loaded, cache = model
    images = [resize_image(decode_gray(p), SIZE) for p in paths]
    batch = to_unit(torch.from_numpy(np.stack(images)).unsqueeze(1))
    with torch.inference_mode():
        logits = loaded.model(normalise(batch), cache.encode(captions)).logits
    return torch.sigmoid(logits.float())[:, 0].numpy()


def read_png(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == mode
        return np.array(image)


def run_count(ledger_url: str) -> int:
    from medref_cli.ledger import list_runs, open_ledger

    ledger = open_ledger(ledger_url, create=False)
    try:
        return len(list_runs(ledger))
    finally:
        ledger.dispose()


def test_single_image_mask_is_the_thresholded_probability_map(trained, model, cli, tmp_path):
    image = trained["images"] / trained["names"][0]
    probs = expected_probs(model, [image], [BOTH])[0]
    cut = float(np.median(probs))  # about half the pixels on each side: a strong comparison
    runs_before = run_count(trained["ledger"])
    code, out, err = cli("predict", "--run", str(trained["run"]), "--ledger", trained["ledger"], "--image",
                         str(image), "--text", BOTH, "--out", "pred", "--cpu", "--threshold", repr(cut), "--json")
    assert code == 0, err
    pair = json.loads(out)["pairs"][0]
    mask = read_png(Path(pair["mask"]), "L")
    assert mask.shape == (SIZE, SIZE)
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask, np.where(probs > cut, 255, 0).astype(np.uint8))
    assert pair["foreground"] == pytest.approx((probs > cut).mean())
    assert run_count(trained["ledger"]) == runs_before  # a prediction records nothing

    overlay = read_png(Path(pair["overlay"]), "RGB")
    gray = decode_gray(image)
    assert overlay.shape[1] == SIZE and overlay.shape[0] > SIZE  # the caption band lies below the image
    outline = mask_outline(mask, 1)
    assert outline.any()
    assert (overlay[:SIZE, :SIZE][outline] == OUTLINE_RGB).all()
    background = mask == 0
    for channel in range(3):  # outside the mask the image is untouched
        np.testing.assert_array_equal(overlay[:SIZE, :, channel][background], gray[background])
    inside = (mask > 0) & ~outline
    assert (overlay[:SIZE][inside][:, 0] >= overlay[:SIZE][inside][:, 2]).all()  # tinted towards red
    assert (overlay[SIZE:] > 128).any()  # caption text in the band
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        f"{image.stem}_mask.png", f"{image.stem}_overlay.png"]


def test_folder_mode_batches_resizes_back_and_captions_matter(trained, model, cli, tmp_path):
    names = trained["names"]
    big = tmp_path / "imgs" / "large.png"
    big.parent.mkdir()
    Image.open(trained["images"] / names[1]).resize((96, 80), Image.Resampling.BILINEAR).save(big)
    rows = [(f"mask_{names[0]}", LEFT), (f"mask_{names[0]}", RIGHT), (names[2], BOTH), ("mask_large.png", BOTH)]
    for name in (names[0], names[2]):
        (tmp_path / "imgs" / name).write_bytes((trained["images"] / name).read_bytes())
    with (tmp_path / "imgs.csv").open("w", newline="") as fh:  # the MMI-UNet layout: Image names the mask file
        csv.writer(fh).writerows([("Image", "Description"), *rows])
    code, out, err = cli("predict", "--checkpoint", str(trained["checkpoint"]), "--images", str(tmp_path / "imgs"),
                         "--captions", str(tmp_path / "imgs.csv"), "--out", "folder", "--cpu", "--batch-size", "4")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4
    folder = tmp_path / "folder"
    stem0 = Path(names[0]).stem
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{stem}_{kind}.png" for stem in (f"{stem0}_row2", f"{stem0}_row3", Path(names[2]).stem, "large")
        for kind in ("mask", "overlay"))
    paths = [tmp_path / "imgs" / n for n in (names[0], names[0], names[2])] + [big]
    probs = expected_probs(model, paths, [LEFT, RIGHT, BOTH, BOTH])  # the same batch of four
    for stem, p in zip((f"{stem0}_row2", f"{stem0}_row3", Path(names[2]).stem), probs, strict=False):
        np.testing.assert_array_equal(read_png(folder / f"{stem}_mask.png", "L"), np.where(p > 0.5, 255, 0))
    assert not np.array_equal(probs[0], probs[1])  # the caption reaches the prediction

    # the large image: probabilities resized back bilinearly (PIL here, torch in medref), then cut
    large = read_png(folder / "large_mask.png", "L")
    assert large.shape == (80, 96)
    back = np.asarray(Image.fromarray(probs[3], "F").resize((96, 80), Image.Resampling.BILINEAR))
    agree = (large > 0) == (back > 0.5)
    assert agree[np.abs(back - 0.5) > 1e-4].all()
    assert read_png(folder / "large_overlay.png", "RGB").shape[1] == 96


def test_a_different_caption_changes_the_mask(trained, model, cli):
    image = trained["images"] / trained["names"][1]
    probs = [expected_probs(model, [image], [caption])[0] for caption in (LEFT, RIGHT)]  # as predict: batch of 1
    gap = np.abs(probs[0] - probs[1])
    assert gap.max() > 1e-5  # the caption reaches the prediction
    pixel = np.unravel_index(np.argmax(gap), gap.shape)
    cut = float((probs[0][pixel] + probs[1][pixel]) / 2)  # a threshold the two captions fall on either side of
    expected = [np.where(p > cut, 255, 0) for p in probs]
    assert expected[0][pixel] != expected[1][pixel]
    for caption, want, out in ((LEFT, expected[0], "a"), (RIGHT, expected[1], "b")):
        code, _, err = cli("predict", "--run", str(trained["run"]), "--ledger", trained["ledger"], "--image",
                           str(image), "--text", caption, "--out", out, "--cpu", "--threshold", repr(cut))
        assert code == 0, err
        np.testing.assert_array_equal(read_png(Path(out) / f"{image.stem}_mask.png", "L"), want)


def _bad_inputs(root: Path, trained: dict) -> dict[str, list[str]]:
    """Named argument lists that must fail; writes the input files they need under `root`."""
    image = str(trained["images"] / trained["names"][0])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "a_file").write_text("not a folder")
    tables = {
        "missing.csv": [("image", "caption"), (trained["names"][0], LEFT), ("nope.png", LEFT)],
        "empty_caption.csv": [("image", "caption"), (trained["names"][0], "  ")],
        "wrong_columns.csv": [("file", "text"), (trained["names"][0], LEFT)],
        "corrupt.csv": [("image", "caption"), (trained["names"][0], LEFT), (str(root / "corrupt.png"), LEFT)],
    }
    for name, rows in tables.items():
        with (root / name).open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    run = ["--run", str(trained["run"]), "--ledger", trained["ledger"], "--cpu"]
    folder = ["--images", str(trained["images"])]
    return {
        "missing image row": [*run, *folder, "--captions", str(root / "missing.csv"), "--out", "o"],
        "empty caption row": [*run, *folder, "--captions", str(root / "empty_caption.csv"), "--out", "o"],
        "wrong columns": [*run, *folder, "--captions", str(root / "wrong_columns.csv"), "--out", "o"],
        "corrupt image row": [*run, *folder, "--captions", str(root / "corrupt.csv"), "--out", "o"],
        "corrupt image": [*run, "--image", str(root / "corrupt.png"), "--text", LEFT, "--out", "o"],
        "empty text": [*run, "--image", image, "--text", " ", "--out", "o"],
        "no such run": ["--run", "999", "--ledger", trained["ledger"], "--image", image, "--text", LEFT, "--out", "o"],
        "run without checkpoint": ["--run", "1", "--ledger", trained["ledger"], "--image", image, "--text", LEFT,
                                   "--out", "o"],
        "not a checkpoint": ["--checkpoint", str(root / "a_file"), "--image", image, "--text", LEFT, "--out", "o"],
        "out is a file": [*run, "--image", image, "--text", LEFT, "--out", str(root / "a_file")],
        "out under a file": [*run, "--image", image, "--text", LEFT, "--out", str(root / "a_file" / "o")],
        "both modes": [*run, "--image", image, "--text", LEFT, *folder, "--out", "o"],
        "threshold": [*run, "--image", image, "--text", LEFT, "--threshold", "1.5", "--out", "o"],
    }


BAD_INPUT_MESSAGES = {
    "missing image row": "missing.csv row 3: image 'nope.png' not found",
    "empty caption row": "empty_caption.csv row 2: empty caption",
    "wrong columns": "needs columns image,caption or Image,Description",
    "corrupt image row": "corrupt.csv row 3: cannot decode",
    "corrupt image": "cannot decode",
    "empty text": "--text is empty",
    "no such run": "no run 999",
    "run without checkpoint": "run 1 (split, finished) recorded no checkpoint",
    "not a checkpoint": "not a readable medref checkpoint",
    "out is a file": "exists and is not a folder",
    "out under a file": "not writable",
    "both modes": "not both",
    "threshold": "--threshold must lie in (0, 1)",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT_MESSAGES))
def test_bad_input_is_one_line_and_writes_nothing(case, trained, cli, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = _bad_inputs(inputs, trained)[case]
    before = sorted(tmp_path.rglob("*"))
    code, _, err = cli("predict", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("medref: error: ")
    assert BAD_INPUT_MESSAGES[case] in err
    assert sorted(tmp_path.rglob("*")) == before  # no output folder, no temporary file


def test_a_failure_while_rendering_leaves_no_file(trained, tmp_path, monkeypatch):
    items = [predict_mod.single_item(trained["images"] / n, LEFT) for n in trained["names"]]
    rendered = []

    def render_then_fail(image, mask, caption):
        if rendered:
            raise MedrefError("disk full (injected)")
        rendered.append(caption)
        return Image.new("RGB", (4, 4))

    monkeypatch.setattr(predict_mod, "render_overlay", render_then_fail)
    out = tmp_path / "out" / "deeper"
    with pytest.raises(MedrefError, match="injected"):
        predict_mod.predict_recorded("sqlite:///unused.db", None, trained["checkpoint"], items, out, "cpu")
    assert rendered and list(tmp_path.iterdir()) == []  # pairs already rendered are gone, folders too


@pytest.mark.parametrize(
    ("header", "name", "image"),
    [
        (("image", "caption"), "sub/x.png", "sub/x.png"),  # relative path under --images
        (("Image", "Description"), "mask_x.png", "x.png"),  # MMI-UNet: the table names the mask
        (("Image", "Description"), "y.png", "y.png"),  # image and mask share a name (MosMed-like)
    ],
)
def test_caption_table_layouts(header, name, image, tmp_path):
    (tmp_path / "sub").mkdir()
    for path in ("sub/x.png", "x.png", "y.png"):
        (tmp_path / path).write_bytes(b"")
    table = tmp_path / "t.csv"
    with table.open("w", newline="", encoding="utf-8-sig") as fh:  # with a byte-order mark, as Excel writes
        csv.writer(fh).writerows([header, (name, f" {LEFT} ")])
    [item] = read_caption_table(table, tmp_path)
    assert item.image == tmp_path / image and item.caption == LEFT and item.where == "t.csv row 2"


def test_mask_outline_worked_example():
    mask = np.zeros((5, 6), np.uint8)
    mask[1:4, 1:5] = 255  # a 3 x 4 block: its ring is the outline, the 1 x 2 middle is inside
    expected = mask > 0
    expected[2, 2:4] = False
    np.testing.assert_array_equal(mask_outline(mask, 1), expected)
    np.testing.assert_array_equal(mask_outline(mask, 2), mask > 0)
    full = np.full((3, 3), 255, np.uint8)  # the image border counts as background
    assert mask_outline(full, 1).sum() == 8


class FixedWidthFont:
    """Every character 10 px wide: line widths are worked out by hand."""

    def getlength(self, text: str) -> float:
        return 10.0 * len(text)


@pytest.mark.parametrize(
    ("caption", "width", "lines"),
    [
        ("left lower lung", 100, ["left lower", "lung"]),
        ("left lower lung", 150, ["left lower lung"]),
        ("a bb ccc", 30, ["a", "bb", "ccc"]),
        ("abcdefgh ij", 30, ["abc", "def", "gh", "ij"]),  # a word wider than the line is broken
        ("  spaced   out  ", 100, ["spaced out"]),
    ],
)
def test_wrap_caption(caption, width, lines):
    assert wrap_caption(caption, FixedWidthFont(), width) == lines
