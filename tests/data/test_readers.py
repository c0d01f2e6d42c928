"""Readers of the four public layouts, built as tiny fixtures in tmp_path."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medref_cli.data.readers import collect_dataset, detect_format, read_dataset
from medref_cli.data.records import SPLITS, normalise_split, parse_label_text
from medref_cli.errors import MedrefError

FORMATS = ("qata", "lvit", "mmiunet", "mosmed", "mosmed-frames")
# which formats carry the position label in their metadata
HAS_LABEL = {"qata": True, "lvit": False, "mmiunet": False, "mosmed": True, "mosmed-frames": True}
# folder of the images / masks, relative to the root, per format and split
IMAGE_DIR = {
    "qata": lambda split: f"images/{split}/images",
    "lvit": lambda split: (
        {"train": "Train_Folder", "valid": "Val_Folder", "test": "Test_Folder"}[split] + "/img"
    ),
    "mmiunet": lambda split: {"train": "Train", "valid": "Val", "test": "Test"}[split] + "/Images",
    "mosmed": lambda split: {"train": "Train", "valid": "Val", "test": "Test"}[split] + "/Images",
    "mosmed-frames": lambda split: "frames",
}


@pytest.mark.parametrize("format", FORMATS)
def test_each_format_is_detected_and_read(tmp_path, mris, format):
    samples = mris.build_format(tmp_path, format)
    assert detect_format(tmp_path) == format
    records = read_dataset(tmp_path)
    assert {s: len(records[s]) for s in SPLITS} == {"train": 6, "valid": 2, "test": 3}
    by_id = {r.id: r for split in SPLITS for r in records[split]}
    assert sorted(by_id) == sorted(s.id for s in samples)
    for sample in samples:
        record = by_id[sample.id]
        assert record.split == sample.split
        assert record.caption == sample.caption
        assert record.label == (sample.label if HAS_LABEL[format] else None)
        assert record.image_path == tmp_path / IMAGE_DIR[format](sample.split) / f"{sample.id}.png"
        assert record.mask_path.is_file() and record.mask_path != record.image_path
        assert sample.id in record.mask_path.name


def test_lvit_with_shared_image_and_mask_names(tmp_path, mris):
    """MosMedData+ / MoNuSeg in the LViT layout: img/X.png and labelcol/X.png."""
    mris.build_lvit(tmp_path, same_name=True)
    records = read_dataset(tmp_path, "lvit")
    record = records["train"][0]
    assert record.image_path.parent.name == "img" and record.mask_path.parent.name == "labelcol"
    assert record.image_path.name == record.mask_path.name


def test_mmiunet_without_val_csv_uses_the_80_20_rule(tmp_path, mris):
    mris.build_tables(tmp_path, "mmiunet", counts={"train": 8, "valid": 2, "test": 1}, with_val=False)
    result = collect_dataset(tmp_path)
    # 10 rows in train.csv: first 8 train, last 2 valid, images from Train/
    assert [len(result.records[s]) for s in SPLITS] == [8, 2, 1]
    assert [r.id for r in result.records["valid"]] == ["case_8", "case_9"]
    assert all(r.image_path.parent.parent.name == "Train" for r in result.records["valid"])
    assert not result.errors
    assert any("80/20" in p.message and p.severity == "warning" for p in result.problems)


@pytest.mark.parametrize("format", FORMATS)
def test_caption_row_without_image_names_file_and_row(tmp_path, mris, format):
    samples = mris.build_format(tmp_path, format)
    victim = samples[1]  # second train row
    image = tmp_path / IMAGE_DIR[format](victim.split) / f"{victim.id}.png"
    image.unlink()
    result = collect_dataset(tmp_path)
    [error] = result.errors
    expected_file = {
        "qata": "prompts/annotation.json",
        "lvit": "Train_Folder/Train_text.xlsx",
        "mmiunet": "prompt/train.csv",
        "mosmed": "prompt/train.csv",
        "mosmed-frames": "Train_text_MosMedData+ 1(in).plabel.csv",
    }[format]
    # spreadsheet rows count the header as row 1; JSON entries count from 1 within their split
    expected_row = 2 if format == "qata" else 3
    assert (error.file, error.row, error.kind, error.split) == (
        expected_file,
        expected_row,
        "missing-file",
        "train",
    )
    assert victim.id in error.message
    assert len(result.records["train"]) == 5  # the other rows are still read
    with pytest.raises(MedrefError, match=r"medref data check --data"):
        read_dataset(tmp_path)


def test_xlsx_without_expected_columns(tmp_path, mris):
    mris.build_lvit(tmp_path)
    pd.DataFrame({"Image": ["mask_case_6.png"], "Text": ["x"]}).to_excel(
        tmp_path / "Val_Folder" / "Val_text.xlsx", index=False
    )
    result = collect_dataset(tmp_path)
    [error] = result.errors
    assert (error.file, error.row, error.kind) == ("Val_Folder/Val_text.xlsx", 1, "layout")
    assert "Description" in error.message and "found: Image, Text" in error.message
    with pytest.raises(MedrefError) as info:
        read_dataset(tmp_path)
    assert "\n" not in str(info.value) and "Val_Folder/Val_text.xlsx:1" in str(info.value)


def test_mosmed_labels_and_a_malformed_one(tmp_path, mris):
    mris.build_tables(tmp_path, "mosmed")
    csv_path = tmp_path / "prompt" / "test.csv"
    table = pd.read_csv(csv_path, dtype=str)
    table.loc[1, "pseudo_label"] = "[0, 1, 0]"
    table.to_csv(csv_path, index=False)
    result = collect_dataset(tmp_path)
    [error] = result.errors
    assert (error.file, error.row, error.kind) == ("prompt/test.csv", 3, "row")
    assert "3 entries, expected 6" in error.message
    assert result.records["test"][1].label is None  # the record stays, without a label
    # case_8 is a "lower left lung" sample (side cycle index 3, level index 2)
    assert result.records["test"][0].label == (0, 0, 1, 0, 0, 0)


def test_mosmed_frames_layout_as_the_reference_reads_it(tmp_path, mris):
    """frames/ + masks/ for every split, Train/Val/Test tables with a BOM, plain Val/Test tables without labels."""
    samples = mris.build_frames(tmp_path, labels_in_eval=False)
    raw = (tmp_path / "Train_text_MosMedData+ 1(in).plabel.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfImage,text,pseudo_label")  # the fixture is what the reference writes
    assert detect_format(tmp_path) == "mosmed-frames"
    result = collect_dataset(tmp_path, "mosmed-frames")
    assert not result.problems
    records = read_dataset(tmp_path)
    by_id = {r.id: r for split in SPLITS for r in records[split]}
    for sample in samples:
        record = by_id[sample.id]
        assert record.split == sample.split and record.caption == sample.caption
        assert record.image_path == tmp_path / "frames" / f"{sample.id}.png"
        assert record.mask_path == tmp_path / "masks" / f"{sample.id}.png"
        # labels come from the train table; the plain Val/Test tables carry none
        assert record.label == (sample.label if sample.split == "train" else None)


def test_mosmed_frames_legacy_images_folder_data_splits_and_plabel_twins(tmp_path, mris):
    mris.build_frames(tmp_path, image_dir="Images", table_dir="data_splits/MosMed")
    name = mris.FRAMES_TABLES["valid"]
    # a plain twin beside the .plabel table: the labelled one is read
    plain = pd.read_csv(tmp_path / "data_splits" / "MosMed" / f"{name}.plabel.csv", encoding="utf-8-sig")
    plain[["Image", "text"]].to_csv(tmp_path / "data_splits" / "MosMed" / f"{name}.csv", index=False)
    assert detect_format(tmp_path) == "mosmed-frames"
    records = read_dataset(tmp_path)
    assert {s: len(records[s]) for s in SPLITS} == {"train": 6, "valid": 2, "test": 3}
    assert all(r.label is not None for r in records["valid"])
    assert records["train"][0].image_path.parent.name == "Images"


def test_mosmed_frames_missing_mask_and_missing_test_table(tmp_path, mris):
    samples = mris.build_frames(tmp_path)
    victim = samples[7]  # a valid sample
    (tmp_path / "masks" / f"{victim.id}.png").unlink()
    (tmp_path / f"{mris.FRAMES_TABLES['test']}.plabel.csv").unlink()
    result = collect_dataset(tmp_path, "mosmed-frames")
    messages = [(e.kind, e.split, e.message) for e in result.errors]
    assert ("layout", "test", "no test caption table (Test*.csv)") in messages
    assert any(kind == "missing-file" and split == "valid" and f"masks/{victim.id}.png" in message
               for kind, split, message in messages)
    # the test images no table names are reported, not read
    assert any(w.kind == "unreferenced-file" for w in result.warnings)


def test_data_check_accepts_the_mosmed_frames_format(tmp_path, mris, cli):
    mris.build_frames(tmp_path / "mm")
    code, out, err = cli("data", "check", "--data", str(tmp_path / "mm"), "--format", "mosmed-frames")
    assert code == 0, err
    assert "mosmed-frames" in out


def test_mosmed_tables_with_a_byte_order_mark(tmp_path, mris):
    """The reference writes its MosMed tables as utf-8-sig; the Image column must still be found."""
    samples = mris.build_tables(tmp_path, "mosmed")
    for name in ("train.csv", "val.csv", "test.csv"):
        path = tmp_path / "prompt" / name
        pd.read_csv(path, dtype=str).to_csv(path, index=False, encoding="utf-8-sig")
    assert (tmp_path / "prompt" / "train.csv").read_bytes().startswith(b"\xef\xbb\xbfImage")
    records = read_dataset(tmp_path, "mosmed")
    assert sorted(r.id for split in SPLITS for r in records[split]) == sorted(s.id for s in samples)


def test_qata_invalid_json_reports_the_line(tmp_path, mris):
    mris.build_qata(tmp_path)
    (tmp_path / "prompts" / "annotation.json").write_text('{"train": [\n  {"image_path": "x",}\n]}')
    [error] = collect_dataset(tmp_path).errors
    assert error.file == "prompts/annotation.json" and error.row == 2 and "invalid JSON" in error.message


def test_duplicate_id_across_splits_is_an_error(tmp_path, mris):
    samples = mris.build_qata(tmp_path)
    annotation_path = tmp_path / "prompts" / "annotation.json"
    annotation = json.loads(annotation_path.read_text())
    leaked = samples[0]
    for sub in ("images", "masks"):
        prefix = "mask_" if sub == "masks" else ""
        source = tmp_path / "images" / "train" / sub / f"{prefix}{leaked.id}.png"
        (tmp_path / "images" / "test" / sub / source.name).write_bytes(source.read_bytes())
    annotation["test"].append(annotation["train"][0])
    annotation_path.write_text(json.dumps(annotation))
    [error] = collect_dataset(tmp_path).errors
    assert error.kind == "duplicate-id" and f"'{leaked.id}' in splits train and test" in error.message


def test_unreferenced_image_is_a_warning(tmp_path, mris):
    mris.build_qata(tmp_path)
    extra = tmp_path / "images" / "train" / "images" / "stray.png"
    extra.write_bytes((tmp_path / "images" / "train" / "images" / "case_0.png").read_bytes())
    result = collect_dataset(tmp_path)
    assert not result.errors
    [warning] = result.warnings
    assert (warning.file, warning.kind) == ("images/train/images/stray.png", "unreferenced-file")


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(MedrefError, match="cannot tell the layout"):
        detect_format(tmp_path)
    with pytest.raises(MedrefError, match="data folder not found"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(MedrefError, match="unknown data format"):
        read_dataset(tmp_path, "coco")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[0, 1, 0, 0, 1, 0]", (0, 1, 0, 0, 1, 0)),
        ("[1,1,1,1,1,1]", (1, 1, 1, 1, 1, 1)),
        ([0, 0, 1, 0, 0, 1], (0, 0, 1, 0, 0, 1)),
        (" [0, 0, 0, 0, 0, 0] ", (0, 0, 0, 0, 0, 0)),
    ],
)
def test_parse_label_text(text, expected):
    assert parse_label_text(text) == expected


@pytest.mark.parametrize(
    "bad", ["[0, 1, 0]", "0, 1, 0, 0, 1, 0", "[0, 2, 0, 0, 1, 0]", "[a, 1, 0, 0, 1, 0]", 5]
)
def test_parse_label_text_rejects(bad):
    with pytest.raises((ValueError, TypeError)):
        parse_label_text(bad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Train", "train"),
        ("val", "valid"),
        ("Validation", "valid"),
        ("Test_Folder", "test"),
        ("Val_Folder", "valid"),
    ],
)
def test_normalise_split(name, expected):
    assert normalise_split(name) == expected
