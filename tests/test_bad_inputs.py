"""Bad inputs across every command: one clear line on stderr, a non-zero exit, no traceback, and the
ledger and the results folder (everything in the working folder) byte for byte as they were.

Every case runs in a fresh working folder that holds a recorded ledger (a split run, a finished and
a killed burn-in run) and a results folder, plus the input files the cases name. Faults that need
the file system (a read-only results folder, a full disk) use a small tmpfs when this process may
mount one, and otherwise a patched writer that fails the same way.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medref_cli.config import load_config

TINY = ("--backbone", "mmi-unet-tiny", "--set", "data.image_size=64", "--set", "model.visual_pretrained=false",
        "--set", "model.text_encoder=tiny-random-bert", "--set", "train.batch_size=4",
        "--set", "runtime.progress=false")
CAPTION = "unilateral pulmonary infection, one infected area, upper left lung."


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # "{name}" is replaced by the path of the world's file or folder `name`
    message: str  # a piece of the one stderr line
    fault: str | None = None  # "readonly" or "full": the folder "{fault}" becomes such a file system


def data(name: str = "good") -> tuple[str, ...]:
    return ("--dataset", "synthetic", "--data", "{" + name + "}")


CASES = [
    # split
    Case("split-ratio-0", ("split", *data(), "--ratio", "0"), "config key 'split.ratio' must be a share in (0, 1]"),
    Case("split-ratio-1.5", ("split", *data(), "--ratio", "1.5"), "'split.ratio' must be a share in (0, 1], got 1.5"),
    Case("split-ratio-abc", ("split", *data(), "--ratio", "abc"), "Invalid value for '--ratio'"),
    Case("split-seed-negative", ("split", *data(), "--seed", "-1"), "'split.seed' must be a seed >= 0"),
    Case("split-data-missing", ("split", "--dataset", "synthetic", "--data", "no/such/folder"),
         "data folder not found"),
    Case("split-results-under-a-file", ("split", *data(), "--set", "runtime.results_dir={blocker}/results"),
         "cannot"),
    Case("split-results-readonly", ("split", *data(), "--set", "runtime.results_dir={readonly}/results",
                                    "--ledger", "{ledger_url}"), "Read-only file system", fault="readonly"),
    Case("split-disk-full", ("split", *data(), "--ratio", "0.3", "--set", "runtime.results_dir={full}/results",
                             "--ledger", "{ledger_url}"), "No space left on device", fault="full"),
    Case("split-ledger-not-a-database", ("split", *data(), "--ratio", "0.4", "--ledger", "sqlite:///{notdb}"),
         "is not a SQLite database"),
    Case("split-import-mismatch", ("split", *data(), "--import", "{ref_labeled}"),
         "split_labeled_0.5.json does not match"),
    Case("split-import-unknown-partner", ("split", *data(), "--import", "{table_csv}"),
         "pass --unlabeled FILE"),
    # burnin
    Case("burnin-unknown-backbone", ("burnin", *data(), *TINY, "--backbone", "unet3000"), "unknown backbone 'unet3000'"),
    Case("burnin-gpu-7", ("burnin", *data(), *TINY, "--gpu", "7"), "--gpu 7: this machine has"),
    Case("burnin-negative-gpu", ("burnin", *data(), *TINY, "--gpu", "-1"), "--gpu expects a device index >= 0"),
    Case("burnin-malformed-yaml", ("burnin", *data(), "--config", "{malformed_yaml}"), "malformed YAML"),
    Case("burnin-yaml-unknown-key", ("burnin", *data(), "--config", "{unknown_key_yaml}"),
         "unknown config key 'train.lrr'"),
    Case("burnin-set-unknown-key", ("burnin", *data(), "--set", "trian.lr=0.1"), "unknown config key 'trian.lr'"),
    Case("burnin-imported-split-missing", ("burnin", *data(), *TINY, "--cpu", "--set", "split.source=imported"),
         "run `medref split --import FILE` first"),
    Case("burnin-log-every-0", ("burnin", *data(), *TINY, "--cpu", "--set", "runtime.log_every=0"),
         "'runtime.log_every' must be >= 1"),
    Case("burnin-corrupt-image", ("burnin", *data("corrupt_image"), *TINY, "--cpu"), "cannot decode"),
    Case("burnin-corrupt-mask", ("burnin", *data("corrupt_mask"), *TINY, "--cpu"), "cannot decode"),
    Case("burnin-csv-instead-of-png", ("burnin", *data("csv_as_png"), *TINY, "--cpu"), "cannot decode"),
    Case("burnin-unparsable-caption", ("burnin", *data("bad_captions"), *TINY, "--cpu"),
         "no position label in the metadata"),
    Case("burnin-ledger-not-a-database", ("burnin", *data(), *TINY, "--cpu", "--ledger", "sqlite:///{notdb}"),
         "is not a SQLite database"),
    Case("burnin-disk-full-for-checkpoints", ("burnin", *data(), *TINY, "--cpu", "--ratio", "0.5",
                                              "--set", "data.cache=false", "--set", "runtime.results_dir={full}/results",
                                              "--ledger", "{ledger_url}"),
         "space left on device", fault="full+split"),
    Case("burnin-disk-full", ("burnin", *data(), *TINY, "--cpu", "--set", "data.cache=false",
                              "--set", "runtime.results_dir={full}/results", "--ledger", "{ledger_url}"),
         "No space left on device", fault="full"),
    Case("burnin-resume-unknown-run", ("burnin", "--resume", "99"), "no run 99 in the ledger"),
    Case("burnin-resume-finished", ("burnin", "--resume", "{finished_burnin}"), "a finished run cannot be resumed"),
    Case("burnin-resume-conflict", ("burnin", "--resume", "{killed_burnin}", "--seed", "7"),
         "train.seed=7 conflicts with the recorded run (42)"),
    Case("burnin-resume-split-run", ("burnin", "--resume", "{split_run}"), "only burnin and train runs can be resumed"),
    # train
    Case("train-resume-a-burnin-run", ("train", "--resume", "{killed_burnin}"),
         "is a burnin run; resume it with `medref burnin --resume"),
    Case("train-no-unlabeled-data", ("train", *data(), *TINY, "--cpu", "--ratio", "1.0"), "leaves no unlabeled data"),
    Case("train-gpu-7", ("train", *data(), *TINY, "--gpu", "7"), "--gpu 7: this machine has"),
    Case("train-seed-negative", ("train", *data(), *TINY, "--cpu", "--seed", "-1"), "'train.seed' must be a seed >= 0"),
    Case("train-epochs-0", ("train", *data(), *TINY, "--cpu", "--epochs", "0"), "train.epochs must be >= 1"),
    # evaluate
    Case("evaluate-unknown-run", ("evaluate", "99", "--cpu"), "no run 99 in the ledger"),
    Case("evaluate-run-without-checkpoint", ("evaluate", "{split_run}", "--cpu"), "recorded no checkpoint"),
    Case("evaluate-csv-as-checkpoint", ("evaluate", "--checkpoint", "{table_csv}", "--cpu"),
         "is not a readable medref checkpoint"),
    Case("evaluate-gpu-7", ("evaluate", "{finished_burnin}", "--gpu", "7"), "--gpu 7: this machine has"),
    Case("evaluate-ledger-not-a-database", ("evaluate", "1", "--cpu", "--ledger", "sqlite:///{notdb}"),
         "is not a SQLite database"),
    # predict
    Case("predict-missing-image", ("predict", "--out", "pred", "--checkpoint", "{table_csv}", "--image", "nope.png",
                                   "--text", CAPTION, "--cpu"), "nope.png"),
    Case("predict-csv-as-image", ("predict", "--out", "pred", "--checkpoint", "{table_csv}", "--image", "{table_csv}",
                                  "--text", CAPTION, "--cpu"), "table.csv"),
    Case("predict-malformed-captions-csv", ("predict", "--out", "pred", "--checkpoint", "{table_csv}", "--images",
                                            "{good}", "--captions", "{malformed_yaml}", "--cpu"),
         "needs columns image,caption"),
    # report
    Case("report-table-7", ("report", "--table", "7"), "--table must be 1, 2, 3, all or text"),
    Case("report-format-docx", ("report", "--format", "docx"), "docx"),
    Case("report-ledger-not-a-database", ("report", "--ledger", "sqlite:///{notdb}"), "is not a SQLite database"),
    Case("report-out-disk-full", ("report", "--out", "{full}/table.md"), "No space left on device", fault="full"),
    Case("report-out-readonly", ("report", "--out", "{readonly}/table.md"), "Read-only file system",
         fault="readonly"),
    # runs
    Case("runs-show-unknown", ("runs", "show", "99"), "no run 99 in the ledger"),
    Case("runs-bad-status", ("runs", "--status", "weird"), "unknown status 'weird'"),
    Case("runs-ledger-not-a-database", ("runs", "--ledger", "sqlite:///{notdb}"), "is not a SQLite database"),
    Case("runs-no-ledger", ("runs", "--ledger", "sqlite:///{tmp}/nothing/here.db"), "no ledger at"),
    # data check
    Case("data-check-missing-folder", ("data", "check", "--data", "no/such/folder"), "not found"),
    Case("data-check-corrupt-image", ("data", "check", "--data", "{corrupt_image}"), "data check found"),
    Case("data-check-mismatched-sizes", ("data", "check", "--data", "{mismatched}"), "data check found"),
    Case("data-check-csv-as-png", ("data", "check", "--data", "{csv_as_png}"), "data check found"),
    Case("data-check-bad-format", ("data", "check", "--data", "{good}", "--format", "dicom"), "dicom"),
    # data synth
    Case("data-synth-into-non-empty", ("data", "synth", "--out", "{results}", "--n", "8"), "not empty"),
    Case("data-synth-tiny-images", ("data", "synth", "--out", "new_synth", "--n", "8", "--image-size", "8"),
         "image_size must be at least 32"),
    Case("data-synth-disk-full", ("data", "synth", "--out", "{full}/synth", "--n", "8", "--image-size", "64"),
         "No space left on device", fault="full"),
    # text parse
    Case("text-parse-missing-file", ("text", "parse", "--file", "no_such.txt"), "caption file not found"),
    Case("text-parse-malformed-captions", ("text", "parse", "--file", "{bad_captions_txt}"),
         "2 of 3 captions could not be parsed"),
    Case("text-parse-binary-file", ("text", "parse", "--file", "{binary}"), "cannot read caption file"),
    # config
    Case("config-malformed-yaml", ("config", "show", "--config", "{malformed_yaml}"), "malformed YAML in"),
    Case("config-yaml-is-a-list", ("config", "show", "--config", "{list_yaml}"), "must hold a mapping of sections"),
    Case("config-unknown-key", ("config", "hash", "--set", "ssl.mixx=none"), "did you mean ssl.mix"),
    Case("config-bad-choice", ("config", "show", "--set", "ssl.mix=mixup"), "'ssl.mix' must be one of"),
    Case("config-bad-type", ("config", "show", "--set", "train.epochs=many"), "expects int, got 'many'"),
    Case("config-missing-file", ("config", "show", "--config", "nope.yaml"), "config file not found"),
]


# ---------------------------------------------------------------- the world every case starts from


def _corrupt_copy(source: Path, target: Path, how: str) -> Path:
    shutil.copytree(source, target)
    test = target / "images" / "test"  # every run decodes the test split
    first = min((test / "images").iterdir())
    mask = test / "masks" / f"mask_{first.name}"
    if how == "corrupt_image":
        first.write_bytes(first.read_bytes()[:40] + b"\x00garbage" * 8)
    elif how == "corrupt_mask":
        mask.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    elif how == "csv_as_png":
        first.write_text("id,caption\n1,left lung\n")
    elif how == "mismatched":
        from PIL import Image

        with Image.open(mask) as m:
            m.resize((m.width // 2, m.height // 2)).save(mask)
    elif how == "bad_captions":
        path = target / "prompts" / "annotation.json"
        body = json.loads(path.read_text())
        body["test"][0]["caption"] = "the weather is nice today"
        body["test"][0].pop("pseudo_label", None)
        path.write_text(json.dumps(body))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_root) -> dict[str, Path]:
    """Data copies with one fault each (shared, read-only for the commands)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {"good": synthetic_root}
    for how in ("corrupt_image", "corrupt_mask", "csv_as_png", "mismatched", "bad_captions"):
        paths[how] = _corrupt_copy(synthetic_root, root / how, how)
    return paths


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, world) -> Path:
    """A results folder with a recorded split run, a finished and a killed burn-in run."""
    from medref_cli.ledger import open_ledger, record_run

    folder = tmp_path_factory.mktemp("recorded") / "results"
    folder.mkdir()
    ledger = open_ledger(f"sqlite:///{folder / 'ledger.db'}")
    cfg = load_config(sets=["model.backbone=mmi-unet-tiny", "split.ratio=0.5"])
    try:
        for kind, end in (("split", None), ("burnin", None), ("burnin", KeyboardInterrupt)):
            try:
                with record_run(ledger, kind, cfg, dataset="synthetic") as run:
                    run.log_metrics({"train_loss": 1.0}, 1)
                    if end is not None:
                        raise end
            except KeyboardInterrupt:
                pass
    finally:
        ledger.dispose()
    (folder / "splits").mkdir()
    (folder / "splits" / "note.txt").write_text("kept as it is\n")
    return folder


def _write_inputs(cwd: Path) -> dict[str, Path]:
    files = {
        "malformed_yaml": ("bad.yaml", "split: {ratio: [\n"),
        "unknown_key_yaml": ("unknown.yaml", "train:\n  lrr: 0.1\n"),
        "list_yaml": ("list.yaml", "- a\n- b\n"),
        "bad_captions_txt": ("captions.txt", f"{CAPTION}\nhello world\n\nthe lungs are\n"),
        "table_csv": ("table.csv", "image,caption\nmissing.png,left lung\n"),
        "notdb": ("notdb.db", "this is not a database\n" * 20),
        "blocker": ("blocker", "a file where a folder should be\n"),
        "ref_labeled": ("split_labeled_0.5.json", '{"train": [{"image_path": "mask_nope.png"}], "valid": [], "test": []}'),
        "ref_unlabeled": ("split_unlabeled_0.5.json",
                          '{"train": [{"image_path": "mask_nix.png"}], "valid": [], "test": []}'),
    }
    paths = {}
    for key, (name, text) in files.items():
        (cwd / name).write_text(text)
        paths[key] = cwd / name
    (cwd / "binary.png").write_bytes(bytes(range(256)) * 4)
    paths["binary"] = cwd / "binary.png"
    return paths


# ---------------------------------------------------------------- faults of the file system


def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          check=False, capture_output=True).returncode == 0


def _fill(folder: Path) -> None:
    """Write until the file system says ENOSPC: nothing more fits."""
    fd = os.open(folder / "filler.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def fault(tmp_path, monkeypatch) -> Iterator:
    """`fault(kind)` makes tmp_path/kind a read-only or full file system (a tmpfs, else a patched writer)."""
    mounted: list[Path] = []

    def make(kind: str, before_fill: Callable[[Path], None] | None = None) -> str:
        target = tmp_path / kind
        if kind == "full" and _mount_tmpfs(target, "size=256k"):
            mounted.append(target)
            if before_fill is not None:
                before_fill(target)
            _fill(target)
            return "tmpfs"
        if kind == "readonly" and _mount_tmpfs(target, "ro,size=64k"):
            mounted.append(target)
            return "tmpfs"
        if before_fill is not None:
            before_fill(target)
        _patch_writes(monkeypatch, target, errno.ENOSPC if kind == "full" else errno.EROFS)
        return "patched"

    yield make
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


def _patch_writes(monkeypatch, folder: Path, code: int) -> None:
    """Fail every open-for-writing and mkdir under `folder` with `code` (where no tmpfs can be had)."""
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        return str(Path(os.path.abspath(path))).startswith(str(folder))

    def fake_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


# ---------------------------------------------------------------- the matrix


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under root."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _fill_in(args: tuple[str, ...], names: dict[str, str]) -> list[str]:
    return [a.format(**names) if "{" in a else a for a in args]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_line_and_leaves_no_trace(cli, tmp_path, monkeypatch, world, recorded, fault, case):
    monkeypatch.delenv("MEDREF_QATA_ROOT", raising=False)
    shutil.copytree(recorded, tmp_path / "results")
    inputs = _write_inputs(tmp_path)
    names = {k: str(v) for k, v in {**world, **inputs}.items()}
    names.update(tmp=str(tmp_path), results=str(tmp_path / "results"), blocker=str(inputs["blocker"]),
                 ledger_url=f"sqlite:///{tmp_path / 'results' / 'ledger.db'}", readonly=str(tmp_path / "readonly"),
                 full=str(tmp_path / "full"), split_run="1", finished_burnin="2", killed_burnin="3")
    if case.fault == "full+split":  # the split is on the disk already; then the disk fills up
        def split_there(target: Path) -> None:
            code, _, err = cli("split", *_fill_in((*data(), "--ratio", "0.5"), names), "--set",
                               f"runtime.results_dir={target}/results", "--ledger", names["ledger_url"])
            assert code == 0, err

        fault("full", split_there)
    elif case.fault:
        fault(case.fault)
    before = _snapshot(tmp_path)
    code, _out, err = cli(*_fill_in(case.args, names))
    assert code != 0, err
    assert case.message in err, err
    assert err.count("\n") == 1 and err.startswith("medref: error: ") and "Traceback" not in err, err
    after = _snapshot(tmp_path)
    assert after.keys() == before.keys(), f"added {sorted(after.keys() - before.keys())}, " \
                                          f"removed {sorted(before.keys() - after.keys())}"
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"changed: {changed}"


def test_the_matrix_is_broad():
    commands = {c.args[0] if c.args[0] not in ("data", "text", "config", "runs") else " ".join(c.args[:2])
                for c in CASES}
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {"split", "burnin", "train", "evaluate", "predict", "report", "data check", "data synth", "text parse",
            "config show"} <= commands
    assert any(c.args[0] == "runs" for c in CASES)
    assert {c.fault for c in CASES} >= {"readonly", "full", "full+split"}
