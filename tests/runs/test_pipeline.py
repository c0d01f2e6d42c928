"""End to end on tiny settings: burn-in, SSL train with burn-in reuse, evaluate, recorded faithfully."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .tiny import TINY, _data, _rows


def test_burnin_records_checkpoint_metrics_and_per_image_scores(cli, tmp_path, synthetic_root):
    code, out, err = cli("burnin", *_data(synthetic_root), *TINY, "--ratio", "0.5", "--epochs", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    run = res["run_id"]
    status, kind, split_hash, data_hash = _rows(
        tmp_path, f"SELECT status, kind, split_hash, data_hash FROM runs WHERE id={run}")[0]
    assert (status, kind) == ("finished", "burnin") and len(split_hash) == 64 and len(data_hash) == 64
    (path, sha, size), = _rows(tmp_path, f"SELECT path, sha256, bytes FROM artifacts WHERE run_id={run} "
                                         "AND role='checkpoint'")
    blob = Path(path).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == sha and len(blob) == size
    finals = dict(_rows(tmp_path, f"SELECT name, value FROM final_metrics WHERE run_id={run}"))
    for key in ("test_dice_global", "test_iou_global", "test_dice_per_image_mean", "test_dice_per_image_std",
                "test_iou_per_image_mean", "test_iou_per_image_std", "test_pixel_acc_global",
                "test_pixel_acc_per_image_mean", "test_pixel_acc_per_image_std", "val_dice_best"):
        assert 0.0 <= finals[key] <= 1.0, key
    n_test = len(json.loads((synthetic_root / "prompts" / "annotation.json").read_text())["test"])
    assert finals["test_n_images"] == n_test
    (n_scores, mean_dice), = _rows(tmp_path, f"SELECT COUNT(*), AVG(dice) FROM image_scores WHERE run_id={run}")
    assert n_scores == n_test
    assert mean_dice == pytest.approx(finals["test_dice_per_image_mean"])
    names = {r[0] for r in _rows(tmp_path, f"SELECT DISTINCT name FROM metric_history WHERE run_id={run}")}
    assert {"train_loss", "lr", "val_dice_global"} <= names

    # evaluate the recorded model again: the same numbers, recorded as a child run
    code, out, err = cli("evaluate", str(run), "--cpu", "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["dice_global"] == pytest.approx(finals["test_dice_global"], abs=1e-12)
    assert again["iou_per_image_mean"] == pytest.approx(finals["test_iou_per_image_mean"], abs=1e-12)
    assert again["pixel_acc_global"] == pytest.approx(finals["test_pixel_acc_global"], abs=1e-12)
    parent, = _rows(tmp_path, f"SELECT parent_id FROM runs WHERE id={again['run_id']}")[0]
    assert parent == run

    # a checkpoint that no longer matches its recorded sha256 is refused, nothing recorded
    before = _rows(tmp_path, "SELECT COUNT(*) FROM runs")[0][0]
    Path(path).write_bytes(blob + b"tampered")
    code, out, err = cli("evaluate", str(run), "--cpu")
    assert code == 2 and "does not match its recorded sha256" in err and err.count("\n") == 1
    assert _rows(tmp_path, "SELECT COUNT(*) FROM runs")[0][0] == before


def test_evaluate_on_another_data_folder(cli, tmp_path, synthetic_root):
    from medref_cli.data.synthetic import write_synthetic_dataset

    other = write_synthetic_dataset(tmp_path / "other", n=40, seed=5)
    code, out, err = cli("burnin", *_data(synthetic_root), *TINY, "--ratio", "0.5", "--epochs", "1", "--json")
    assert code == 0, err
    code, out, err = cli("evaluate", str(json.loads(out)["run_id"]), "--cpu", "--data", str(other), "--split",
                         "valid", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["n_images"] == len(json.loads((other / "prompts" / "annotation.json").read_text())["valid"])
    root, = _rows(tmp_path, f"SELECT data_root FROM runs WHERE id={res['run_id']}")[0]
    assert Path(root) == other.resolve()


def test_train_reuses_a_recorded_burnin_and_is_its_child(cli, tmp_path, synthetic_root):
    args = [*_data(synthetic_root), *TINY, "--ratio", "0.25", "--burnin-epochs", "1", "--epochs", "1", "--json"]
    code, out, err = cli("train", *args)
    assert code == 0, err
    first = json.loads(out)
    assert first["burnin_reused"] is False
    # a different SSL setting: the burn-in depends only on the supervised part, so it is reused
    code, out, err = cli("train", *args, "--set", "ssl.mix=none", "--set", "ssl.contrastive=clip")
    assert code == 0, err
    second = json.loads(out)
    assert second["burnin_reused"] is True and second["burnin_run_id"] == first["burnin_run_id"]
    kinds = _rows(tmp_path, "SELECT id, kind, parent_id, status FROM runs ORDER BY id")
    assert [k for _, k, _, _ in kinds] == ["split", "burnin", "train", "train"]
    assert all(s == "finished" for *_, s in kinds)
    assert [p for i, k, p, _ in kinds if k == "train"] == [first["burnin_run_id"]] * 2
    ssl_names = {r[0] for r in _rows(tmp_path, f"SELECT DISTINCT name FROM metric_history WHERE run_id={first['run_id']}")}
    assert {"loss_sup", "loss_unsup", "loss_itc_sup", "loss_itc_unsup", "mixed_share", "text_changed_share",
            "pseudo_fg", "lambda_u", "ema_momentum"} <= ssl_names
    code, out, err = cli("runs", "show", str(first["run_id"]))
    assert code == 0, err
    shown = out[out.index("last logged values:"):]
    assert all(name in shown for name in ("mixed_share", "text_changed_share", "pseudo_fg"))


@pytest.mark.parametrize(
    "variant",
    [
        ["--set", "ssl.mix=cutmix", "--set", "ssl.text_strong=true", "--set", "ssl.posaug=false"],
        ["--set", "ssl.mix=spc", "--set", "ssl.img_strong=false"],
        ["--set", "ssl.tpatchmix_mode=probability", "--set", "ssl.tpatchmix_gate=block"],
        ["--set", "ssl.ema=false", "--set", "ssl.contrastive=none", "--set", "ssl.select=student"],
        ["--set", "ssl.student_passes=joint", "--set", "ssl.tpatchmix_draw=grid", "--set", "ssl.strong_clip=true",
         "--set", "ssl.tpatchmix_paste_before_gate=true", "--set", "ssl.itc_unsup_view=strong"],
    ],
    ids=["cutmix-textstrong", "spc", "probability-block", "no-ema", "joint-grid-quirks"],
)
def test_every_component_switch_trains(cli, synthetic_root, variant):
    code, out, err = cli("train", *_data(synthetic_root), *TINY, "--ratio", "0.25", "--burnin-epochs", "1",
                         "--epochs", "1", *variant, "--json")
    assert code == 0, err
    assert 0.0 <= json.loads(out)["test_dice_global"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "unet3000"], "unknown backbone"),
        (["--gpu", "3"], "--gpu 3"),
        (["--set", "model.text_encoder=/no/such/folder"], "text encoder"),
        (["--ratio", "1.0", "--epochs", "1"], "leaves no unlabeled data"),
    ],
)
def test_train_bad_input_is_one_line_and_records_nothing(cli, tmp_path, synthetic_root, args, message):
    tiny = [a for a in TINY if a != "--cpu"] if "--gpu" in args else TINY
    code, _out, err = cli("train", *_data(synthetic_root), *tiny, "--ratio", "0.25", *args)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    db = tmp_path / "results" / "ledger.db"
    if db.exists():
        assert _rows(tmp_path, "SELECT COUNT(*) FROM runs WHERE kind != 'split'")[0][0] == 0


@pytest.mark.slow
def test_burnin_learns_on_the_synthetic_data(cli, synthetic_root):
    """Dice rises well above the untrained model's: the loop optimises something real."""
    base = [*_data(synthetic_root), *TINY, "--ratio", "1.0", "--set", "train.max_steps_per_epoch=0",
            "--set", "train.lr=0.002", "--set", "model.text_encoder=builtin-minilm"]
    code, out, err = cli("burnin", *base, "--epochs", "12", "--json")
    assert code == 0, err
    trained = json.loads(out)["test_dice_global"]
    assert trained > 0.45, trained
