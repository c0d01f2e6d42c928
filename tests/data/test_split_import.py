"""`medref split --import`: the reference's fixed split files, in their exact formats, as medref splits.

The files are built here the way the reference's scripts/prepare_splits.py lays them out: QaTa-COV19
`split_{labeled,unlabeled}_<r>.json` (the annotation entries of each part of train, plus the whole
valid and test lists, indent 2) and MosMedData+ `labeled_<r>.plabel.csv` / `unlabeled_<1-r>.plabel.csv`
(Image, text, pseudo_label; UTF-8 with a byte-order mark).
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from medref_cli.data.split_import import pair_files, read_reference_split
from medref_cli.data.splits import load_manifest
from medref_cli.errors import MedrefError


def write_qata_pair(annotation: dict, out: Path, ratio: str, seed: int = 42) -> tuple[Path, Path]:
    """The reference's QaTa pair for one ratio: one seeded shuffle of the train entries' mask names
    (in annotation order), the first round(N * r) labeled; each file keeps annotation order."""
    names = list(dict.fromkeys(e["image_path"] for e in annotation["train"]))
    order = list(names)
    random.Random(seed).shuffle(order)
    chosen = set(order[: max(1, round(len(order) * float(ratio)))])
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for role, keep in (("labeled", True), ("unlabeled", False)):
        body = {"train": [e for e in annotation["train"] if (e["image_path"] in chosen) == keep],
                "valid": annotation["valid"], "test": annotation["test"]}
        path = out / f"split_{role}_{ratio}.json"
        path.write_text(json.dumps(body, indent=2), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def write_mosmed_pair(train_table: Path, out: Path, ratio: str, complement: str, seed: int = 42) -> tuple[Path, Path]:
    """The reference's MosMed pair: the sorted image names shuffled once, the first floor(N * r) labeled."""
    table = pd.read_csv(train_table, encoding="utf-8-sig", dtype=str)
    images = sorted(table["Image"].unique())
    random.Random(seed).shuffle(images)
    chosen = set(images[: max(1, math.floor(len(images) * float(ratio)))])
    out.mkdir(parents=True, exist_ok=True)
    labeled, unlabeled = out / f"labeled_{ratio}.plabel.csv", out / f"unlabeled_{complement}.plabel.csv"
    table[table["Image"].isin(chosen)].to_csv(labeled, index=False, encoding="utf-8-sig")
    table[~table["Image"].isin(chosen)].to_csv(unlabeled, index=False, encoding="utf-8-sig")
    return labeled, unlabeled


def _runs(tmp_path: Path) -> list[tuple]:
    db = tmp_path / "results" / "ledger.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" not in tables:
            return []
        return conn.execute("SELECT id, kind, status, label_ratio, split_hash, config FROM runs ORDER BY id").fetchall()


def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _assert_refused(cli, tmp_path, args, *fragments):
    code, out, err = cli("split", *args)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert _files_under(tmp_path / "results" / "splits") == []
    assert _runs(tmp_path) == []
    return err


def test_qata_import_of_the_shared_subset_is_a_normal_reproducible_split(cli, tmp_path, qata_root):
    annotation = json.loads((qata_root / "prompts" / "annotation.json").read_text())
    labeled_file, unlabeled_file = write_qata_pair(annotation, tmp_path / "data_splits" / "QaTa", "0.05")
    args = ["--import", str(labeled_file), "--dataset", "qata", "--data", str(qata_root), "--json"]
    code, out, err = cli("split", *args)
    assert code == 0, err
    first = json.loads(out)
    assert (first["ratio"], first["source"], first["n_train"]) == (0.05, "imported", len(annotation["train"]))
    assert first["n_labeled"] == round(0.05 * len(annotation["train"]))
    manifest = load_manifest(Path(first["manifest"]))
    assert Path(first["manifest"]).resolve().parent.parent == (tmp_path / "results" / "splits").resolve()
    # the lists of the files, in their order, as sample ids (mask_<name>.png -> <name>)
    ref_labeled = json.loads(labeled_file.read_text())["train"]
    assert list(manifest.labeled) == [e["image_path"].removeprefix("mask_").removesuffix(".png") for e in ref_labeled]
    assert set(manifest.labeled) | set(manifest.unlabeled) == {
        e["image_path"].removeprefix("mask_").removesuffix(".png") for e in annotation["train"]}
    assert manifest.imported_sha256 and manifest.sha256 == first["split_hash"]
    # the same files give the same manifest and hash; each import is a recorded split run
    code, out, err = cli("split", *args)
    assert code == 0, err
    second = json.loads(out)
    assert second["split_hash"] == first["split_hash"] and second["run_id"] != first["run_id"]
    runs = _runs(tmp_path)
    assert [(r[1], r[2], r[3], r[4]) for r in runs] == [("split", "finished", 0.05, first["split_hash"])] * 2
    assert json.loads(runs[0][5])["split"]["source"] == "imported"
    with sqlite3.connect(tmp_path / "results" / "ledger.db") as conn:
        roles = sorted(r[0] for r in conn.execute(f"SELECT role FROM artifacts WHERE run_id={runs[0][0]}"))
        finals = dict(conn.execute(f"SELECT name, value FROM final_metrics WHERE run_id={runs[0][0]}").fetchall())
    assert roles == ["split_manifest", "split_source", "split_source"]
    assert (finals["n_valid_checked"], finals["n_test_checked"]) == (len(annotation["valid"]), len(annotation["test"]))
    # naming the unlabeled file finds the labeled one beside it: the same split
    code, out, err = cli("split", "--import", str(unlabeled_file), "--dataset", "qata", "--data", str(qata_root),
                         "--json")
    assert code == 0, err
    assert json.loads(out)["split_hash"] == first["split_hash"]


def test_the_reference_files_of_the_full_release_are_refused_on_the_subset(cli, tmp_path, qata_root):
    """The shipped files describe the full QaTa-COV19 train split (5716 images), not the 1000 of the subset."""
    full = qata_root / "prompts" / "annotation_full.json"
    if not full.is_file():
        pytest.skip("the subset carries no annotation_full.json")
    annotation = json.loads(full.read_text())
    subset = {e["image_path"] for e in json.loads((qata_root / "prompts" / "annotation.json").read_text())["train"]}
    labeled_file, _ = write_qata_pair(annotation, tmp_path / "ds", "0.01")
    labeled = json.loads(labeled_file.read_text())["train"]
    missing = [e["image_path"].removeprefix("mask_").removesuffix(".png") for e in labeled if e["image_path"] not in subset]
    assert len(labeled) == 57 and missing  # the reference's 1% of 5716
    _assert_refused(cli, tmp_path, ["--import", str(labeled_file), "--dataset", "qata", "--data", str(qata_root)],
                    "split_labeled_0.01.json does not match",
                    f"{len(missing)} of its 57 train ids are not in the data's train split",
                    f"(first: {', '.join(missing[:3])}")


@pytest.mark.parametrize("damage, fragments", [
    ("drop_unlabeled", ("1 train ids of the data are in neither split_labeled_0.25.json nor split_unlabeled_0.25.json",)),
    ("drop_valid", ("1 valid ids of the data are missing from its valid list",)),
    ("foreign_test", ("1 of its", "test ids are not in the data's test split (first: not_in_data)")),
    ("overlap", ("are in both split_labeled_0.25.json and split_unlabeled_0.25.json",)),
    ("caption", ("split_labeled_0.25.json does not match", "differs from the data's (1 train captions differ")),
])
def test_a_manifest_that_does_not_match_the_data_is_refused(cli, tmp_path, synthetic_root, damage, fragments):
    annotation = json.loads((synthetic_root / "prompts" / "annotation.json").read_text())
    labeled_file, unlabeled_file = write_qata_pair(annotation, tmp_path / "ds", "0.25")
    lab, unl = json.loads(labeled_file.read_text()), json.loads(unlabeled_file.read_text())
    victim = None
    if damage == "drop_unlabeled":
        victim = unl["train"].pop(0)["image_path"].removeprefix("mask_").removesuffix(".png")
    elif damage == "drop_valid":
        victim = lab["valid"].pop(1)["image_path"].removeprefix("mask_").removesuffix(".png")
        unl["valid"] = lab["valid"]
    elif damage == "foreign_test":
        for body in (lab, unl):
            body["test"] = [*body["test"], {"image_path": "mask_not_in_data.png", "caption": "x"}]
    elif damage == "caption":
        lab["train"][0]["caption"] = lab["train"][0]["caption"] + " edited"
        caption_of = lab["train"][0]["image_path"].removeprefix("mask_").removesuffix(".png")
    else:
        lab["train"].append(unl["train"][0])
    labeled_file.write_text(json.dumps(lab, indent=2))
    unlabeled_file.write_text(json.dumps(unl, indent=2))
    err = _assert_refused(cli, tmp_path, ["--import", str(labeled_file), "--dataset", "synthetic",
                                          "--data", str(synthetic_root)], *fragments)
    if victim is not None:
        assert f"(first: {victim})" in err
    if damage == "caption":
        assert f"the caption of {caption_of} differs" in err


def test_bad_import_arguments_are_one_line(cli, tmp_path, synthetic_root):
    data = ["--dataset", "synthetic", "--data", str(synthetic_root)]
    annotation = json.loads((synthetic_root / "prompts" / "annotation.json").read_text())
    labeled_file, unlabeled_file = write_qata_pair(annotation, tmp_path / "ds", "0.25")
    _assert_refused(cli, tmp_path, ["--import", str(tmp_path / "ds" / "split_labeled_0.5.json"), *data],
                    "split file not found", "split_labeled_0.5.json")
    _assert_refused(cli, tmp_path, ["--import", str(labeled_file), "--ratio", "0.5", *data],
                    "names ratio 0.25 but --ratio is 0.5")
    _assert_refused(cli, tmp_path, ["--import", str(labeled_file), "--seed", "3", *data], "--seed has no meaning")
    odd = tmp_path / "ds" / "mine.json"
    odd.write_text(labeled_file.read_text())
    _assert_refused(cli, tmp_path, ["--import", str(odd), *data], "pass --unlabeled FILE")
    _assert_refused(cli, tmp_path, ["--import", str(odd), "--unlabeled", str(unlabeled_file), *data], "pass --ratio R")
    (tmp_path / "ds" / "split_labeled_0.3.json").write_text('{"train": [\n  {"image_path": 1,}\n]}')
    (tmp_path / "ds" / "split_unlabeled_0.3.json").write_text("{}")
    _assert_refused(cli, tmp_path, ["--import", str(tmp_path / "ds" / "split_labeled_0.3.json"), *data],
                    "is not valid JSON", "line 2")
    # a file named otherwise, with its ratio given: accepted
    code, out, err = cli("split", "--import", str(odd), "--unlabeled", str(unlabeled_file), "--ratio", "0.25",
                         *data, "--json")
    assert code == 0, err
    assert json.loads(out)["ratio"] == 0.25


def test_burnin_uses_the_imported_split(cli, tmp_path, synthetic_root, tiny_burnin_args):
    imported = [*tiny_burnin_args, "--set", "split.source=imported", "--json"]
    # nothing imported yet: refused before anything is written
    code, out, err = cli(*imported)
    assert code == 2 and "no imported split of synthetic at ratio 0.5" in err and err.count("\n") == 1, err
    assert _runs(tmp_path) == []
    annotation = json.loads((synthetic_root / "prompts" / "annotation.json").read_text())
    # 0.5 is not how medref's seeded rule would draw it: the labeled set is the files' own
    labeled_file, _ = write_qata_pair(annotation, tmp_path / "ds", "0.5", seed=7)
    code, out, err = cli("split", "--import", str(labeled_file), "--dataset", "synthetic", "--data",
                         str(synthetic_root), "--json")
    assert code == 0, err
    split = json.loads(out)
    code, seeded_out, err = cli("split", "--dataset", "synthetic", "--data", str(synthetic_root), "--ratio", "0.5",
                                "--json")
    assert code == 0, err
    seeded = load_manifest(Path(json.loads(seeded_out)["manifest"]))
    assert set(seeded.labeled) != set(load_manifest(Path(split["manifest"])).labeled)
    code, out, err = cli(*imported)
    assert code == 0, err
    runs = _runs(tmp_path)
    burnin = [r for r in runs if r[1] == "burnin"]
    assert len(burnin) == 1 and burnin[0][4] == split["split_hash"] and burnin[0][3] == 0.5


def test_mosmed_import_in_the_reference_layout(cli, tmp_path, mris):
    root = tmp_path / "MosMed"
    mris.build_frames(root, counts={"train": 10, "valid": 2, "test": 2}, labels_in_eval=False)
    train_table = root / f"{mris.FRAMES_TABLES['train']}.plabel.csv"
    labeled_file, unlabeled_file = write_mosmed_pair(train_table, tmp_path / "data_splits" / "MosMed", "0.2", "0.8")
    assert labeled_file.read_bytes().startswith(b"\xef\xbb\xbfImage,text,pseudo_label")
    # naming the unlabeled file: labeled_0.2 is found beside unlabeled_0.8, the ratio is 0.2
    code, out, err = cli("split", "--import", str(unlabeled_file), "--dataset", "mosmed", "--data", str(root), "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert (facts["ratio"], facts["n_labeled"], facts["n_unlabeled"], facts["dataset"]) == (0.2, 2, 8, "mosmed")
    manifest = load_manifest(Path(facts["manifest"]))
    labeled_rows = pd.read_csv(labeled_file, encoding="utf-8-sig")["Image"].tolist()
    assert list(manifest.labeled) == [name.removesuffix(".png") for name in labeled_rows]
    # a labeled file whose rows the data does not hold is refused
    table = pd.read_csv(labeled_file, encoding="utf-8-sig", dtype=str)
    table.loc[0, "Image"] = "Morozov_study_0255_11.png"
    table.to_csv(labeled_file, index=False, encoding="utf-8-sig")
    code, _, err = cli("split", "--import", str(labeled_file), "--dataset", "mosmed", "--data", str(root))
    assert code == 2 and "labeled_0.2.plabel.csv does not match" in err
    assert "1 of its 2 train ids are not in the data's train split (first: Morozov_study_0255_11)" in err


@pytest.mark.parametrize("name, partner, ratio", [
    ("split_labeled_0.01.json", "split_unlabeled_0.01.json", 0.01),
    ("split_unlabeled_0.15.json", "split_labeled_0.15.json", 0.15),
    ("labeled_0.05.plabel.csv", "unlabeled_0.95.plabel.csv", 0.05),
    ("unlabeled_0.85.plabel.csv", "labeled_0.15.plabel.csv", 0.15),
])
def test_the_partner_file_and_ratio_come_from_the_reference_names(tmp_path, name, partner, ratio):
    for file in (name, partner):
        (tmp_path / file).write_text("x")
    kind, labeled, unlabeled, got = pair_files(tmp_path / name, None, None)
    assert got == ratio and kind == ("qata" if name.endswith(".json") else "mosmed")
    assert {labeled.name, unlabeled.name} == {name, partner} and labeled.name.startswith(("split_labeled", "labeled"))


def test_reading_refuses_duplicates_and_unequal_eval_lists(tmp_path):
    entry = {"image_path": "mask_a.png", "caption": "c"}
    (tmp_path / "split_labeled_0.5.json").write_text(json.dumps({"train": [entry, entry], "valid": [], "test": []}))
    (tmp_path / "split_unlabeled_0.5.json").write_text(json.dumps({"train": [], "valid": [], "test": []}))
    with pytest.raises(MedrefError, match="names sample 'a' twice"):
        read_reference_split(tmp_path / "split_labeled_0.5.json")
    (tmp_path / "split_labeled_0.5.json").write_text(json.dumps({"train": [entry], "valid": [entry], "test": []}))
    (tmp_path / "split_unlabeled_0.5.json").write_text(json.dumps({"train": [{"image_path": "mask_b.png"}],
                                                                   "valid": [], "test": []}))
    with pytest.raises(MedrefError, match="the valid lists of split_labeled_0.5.json and split_unlabeled_0.5.json differ"):
        read_reference_split(tmp_path / "split_labeled_0.5.json")
