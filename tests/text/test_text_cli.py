"""`medref text parse`: captions in, JSON lines out."""

from __future__ import annotations

import io
import json
import sys

GOOD = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."
MOSMED = "No pulmonary infection, zero infected areas.."
BAD = "bilateral pulmonary infection, two infected areas."


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_parse_from_stdin(cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{GOOD}\n\n{MOSMED}\n"))
    code, out, err = cli("text", "parse")
    assert code == 0, err
    assert _lines(out) == [
        {"caption": GOOD, "label": [0, 0, 1, 0, 0, 1], "spans": [[51, 87]]},
        {"caption": MOSMED, "label": [0, 0, 0, 0, 0, 0], "spans": []},
    ]


def test_parse_error_line_and_nonzero_exit_after_all_lines(cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{BAD}\n{GOOD}\n"))
    code, out, err = cli("text", "parse")
    assert code != 0
    records = _lines(out)
    assert len(records) == 2
    assert records[0]["caption"] == BAD and "no location" in records[0]["error"]
    assert records[1]["label"] == [0, 0, 1, 0, 0, 1]
    assert err.strip().splitlines() == ["medref: error: 1 of 2 captions could not be parsed"]


def test_parse_from_file(cli, tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text(f"{GOOD}\nUnilateral pulmonary infection, one infected area, all right lung.\n")
    code, out, err = cli("text", "parse", "--file", str(path))
    assert code == 0, err
    assert [r["label"] for r in _lines(out)] == [[0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 1]]


def test_missing_file_is_one_line_error(cli, tmp_path):
    code, out, err = cli("text", "parse", "--file", str(tmp_path / "nope.txt"))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "not found" in err


def test_parse_all_qata_captions_through_the_cli(cli, monkeypatch, qata_root):
    annotation = json.loads((qata_root / "prompts" / "annotation_full.json").read_text())
    entries = [e for split in ("train", "valid", "test") for e in annotation[split]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(e["caption"] for e in entries) + "\n"))
    code, out, err = cli("text", "parse")
    assert code == 0, err
    records = _lines(out)
    assert [r["label"] for r in records] == [e["pseudo_label"] for e in entries]
