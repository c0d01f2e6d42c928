"""`medref data check`: finds every problem in one run, names file and row, measures laterality."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medref_cli.data.check import check_dataset


def _big_counts():
    # 20 samples; every fifth (numbers 2, 7, 12, 17) names both sides: 16 single-side samples
    return {"train": 10, "valid": 4, "test": 6}


@pytest.mark.parametrize(("laterality", "verdict"), [("image", "image"), ("patient", "patient")])
def test_clean_data_passes_and_laterality_is_measured(tmp_path, mris, laterality, verdict):
    mris.build_qata(tmp_path, _big_counts(), laterality=laterality)
    report = check_dataset(tmp_path)
    assert report.ok and report.problems == []
    assert report.laterality.verdict == verdict
    assert report.laterality.count == 16
    assert report.laterality.share == (1.0 if laterality == "image" else 0.0)
    assert {name: s.samples for name, s in report.splits.items()} == {"train": 10, "valid": 4, "test": 6}
    assert all(s.decoded == s.samples for s in report.splits.values())


def test_every_bad_input_is_listed_in_one_run(tmp_path, mris, cli):
    """A corrupt PNG, a mask of another size, a caption row without an image, an xlsx without
    the expected columns: all four named with their file (and row), then a non-zero exit."""
    mris.build_lvit(tmp_path)
    train = tmp_path / "Train_Folder"
    (train / "img" / "case_0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    mris.write_png(train / "labelcol" / "mask_case_1.png", np.zeros((8, 8), dtype=np.uint8))
    (train / "img" / "case_2.png").unlink()
    pd.DataFrame({"Image": ["mask_case_6.png"], "Caption": ["x"]}).to_excel(
        tmp_path / "Val_Folder" / "Val_text.xlsx", index=False
    )
    code, out, err = cli("data", "check", "--data", str(tmp_path))
    assert code != 0
    assert "data check found 4 error(s)" in err
    flat = " ".join(out.split())
    assert "[train] Train_Folder/img/case_0.png: cannot decode the image: cannot identify image file" in flat
    mask_line = "[train] Train_Folder/labelcol/mask_case_1.png: mask size differs from its image"
    assert f"{mask_line}: image 16x16, mask 8x8" in flat
    assert (
        "[train] Train_Folder/Train_text.xlsx:4: caption row without file: image for mask_case_2.png" in flat
    )
    assert "[valid] Val_Folder/Val_text.xlsx:1: missing column(s) Description; found: Image, Caption" in flat
    assert "has no caption row" not in flat  # the rejected row still names its mask

    code, out, _ = cli("data", "check", "--data", str(tmp_path), "--json")
    payload = json.loads(out)
    assert code != 0 and payload["errors"] == 4 and payload["ok"] is False
    kinds = sorted(p["kind"] for p in payload["problems"] if p["severity"] == "error")
    assert kinds == ["layout", "missing-file", "size-mismatch", "unreadable"]


def test_mask_and_caption_findings(tmp_path, mris):
    samples = mris.build_qata(tmp_path)
    annotation_path = tmp_path / "prompts" / "annotation.json"
    annotation = json.loads(annotation_path.read_text())
    masks = tmp_path / "images" / "train" / "masks"
    # case_0: non-binary mask; case_1: empty mask; case_2: label disagrees with the caption
    mask0 = np.zeros((16, 16), dtype=np.uint8)
    mask0[2:6, 2:6] = 200
    mask0[2, 2] = 90
    mris.write_png(masks / "mask_case_0.png", mask0)
    mris.write_png(masks / "mask_case_1.png", np.zeros((16, 16), dtype=np.uint8))
    annotation["train"][2]["pseudo_label"] = [1, 0, 0, 0, 0, 0]
    # case_3: caption without the template, label kept -> warning; case_4: neither -> error
    annotation["train"][3]["caption"] = "some opacity somewhere."
    annotation["train"][4]["caption"] = "another free text."
    del annotation["train"][4]["pseudo_label"]
    annotation_path.write_text(json.dumps(annotation))

    report = check_dataset(tmp_path)
    found = {(p.severity, p.kind, p.file.split("/")[-1]) for p in report.problems}
    assert found == {
        ("warning", "non-binary-mask", "mask_case_0.png"),
        ("warning", "empty-mask", "mask_case_1.png"),
        ("warning", "label-mismatch", "case_2.png"),
        ("warning", "caption", "case_3.png"),
        ("error", "caption", "case_4.png"),
    }
    assert samples[2].label == (0, 0, 1, 0, 0, 1)
    mismatch = next(p for p in report.problems if p.kind == "label-mismatch")
    assert "[1, 0, 0, 0, 0, 0] differs from the caption's [0, 0, 1, 0, 0, 1]" in mismatch.message
    assert report.splits["train"].errors == 1 and report.splits["train"].warnings == 4


def test_real_qata_subset_passes_with_image_laterality(qata_root, cli):
    code, out, err = cli("data", "check", "--data", str(qata_root))
    assert code == 0, err
    flat = " ".join(out.split())
    assert "laterality: image (" in flat and "OK: 0 error(s)" in flat
    report = check_dataset(qata_root)
    assert report.laterality.verdict == "image" and report.laterality.share > 0.9
    assert [s.samples for s in report.splits.values()] == [1000, 200, 400]


def test_synthetic_data_set_passes_the_check(tmp_path):
    from medref_cli.data.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "synthetic", n=40, seed=0, image_size=32)
    report = check_dataset(root)
    assert report.format == "qata" and report.ok, [str(p) for p in report.problems]
    assert sum(s.samples for s in report.splits.values()) == 40
