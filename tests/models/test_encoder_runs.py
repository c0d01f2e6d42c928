"""The encoders in whole runs: a CXR-BERT folder trains, a broken one fails at preflight before any data,
the weights' identity is recorded and shown, evaluate rebuilds offline, `medref models` needs no weights."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from medref_cli.files import sha256_file

from .conftest import write_cxr_bert_folder, write_facebook_convnext


def _tags(ledger: Path) -> dict[str, dict]:
    with sqlite3.connect(ledger) as db:
        return {kind: json.loads(tags) for kind, tags in db.execute("SELECT kind, tags FROM runs ORDER BY id")}


def _tiny_args(tiny_burnin_args: list[str], *extra: str) -> list[str]:
    """The tiny burn-in arguments without their text encoder and visual weight settings."""
    args = list(tiny_burnin_args)
    for setting in ("model.text_encoder=tiny-random-bert", "model.visual_pretrained=false"):
        i = args.index(setting)
        del args[i - 1:i + 1]
    return [*args, *extra]


@pytest.fixture(scope="module")
def trained_with_paper_layouts(tmp_path_factory, medref_in_process, tiny_burnin_args):
    """`medref train` with a CXR-BERT folder in the hub's layout and a Facebook-format ConvNeXt file."""
    home = tmp_path_factory.mktemp("encoders")
    cxr = home / "BiomedVLP-CXR-BERT-specialized"
    write_cxr_bert_folder(cxr)
    visual = home / "convnext_atto_22k_224.pth"
    write_facebook_convnext(visual)
    ledger = home / "ledger.db"
    args = _tiny_args(tiny_burnin_args, "--set", f"model.text_encoder={cxr}", "--set", "model.visual_pretrained=true",
                      "--set", f"model.visual_checkpoint={visual}", "--set", f"runtime.results_dir={home / 'results'}",
                      "--set", "train.max_steps_per_epoch=2", "--ledger", f"sqlite:///{ledger}", "--json")
    args[0] = "train"
    code, out, err = medref_in_process(*args, "--burnin-epochs", "1")
    assert code == 0, err
    return {"home": home, "cxr": cxr, "visual": visual, "ledger": ledger, "summary": json.loads(out)}


def test_train_runs_with_a_cxr_bert_folder_and_records_both_encoders(trained_with_paper_layouts, medref_in_process):
    t = trained_with_paper_layouts
    assert not (t["cxr"] / "REMOTE_CODE_RAN").exists()
    tags = _tags(t["ledger"])
    assert set(tags) == {"split", "burnin", "train"}
    for kind in ("burnin", "train"):
        weights = tags[kind]["weights"]
        assert weights["text"]["path"] == str(t["cxr"].resolve())
        assert weights["text"]["weights_sha256"] == {"pytorch_model.bin": sha256_file(t["cxr"] / "pytorch_model.bin")}
        assert weights["visual"]["name"] == "convnext_atto" and weights["visual"]["pretrained"]
        assert weights["visual"]["sha256"] == sha256_file(t["visual"])
        assert weights["preflight_s"] > 0
    run = str(t["summary"]["run_id"])
    code, out, err = medref_in_process("runs", "show", run, "--ledger", f"sqlite:///{t['ledger']}")
    assert code == 0, err
    assert "text weights:" in out and "visual weights:" in out
    assert sha256_file(t["cxr"] / "pytorch_model.bin")[:16] in out
    assert sha256_file(t["visual"])[:16] in out
    code, out, err = medref_in_process("runs", "diff", run, str(t["summary"]["burnin_run_id"]), "--ledger",
                                       f"sqlite:///{t['ledger']}", "--json")
    assert code == 0, err
    facts = json.loads(out)["facts"]
    assert facts["text weights"]["same"] and facts["visual weights"]["same"]
    assert sha256_file(t["visual"])[:16] in facts["visual weights"]["a"]


def test_evaluate_rebuilds_offline_without_the_visual_weights(trained_with_paper_layouts, medref_in_process):
    """The recorded config asked for pretrained visual weights; the checkpoint holds every weight, so
    evaluate works with that file gone (and the hub offline). The frozen text encoder is checked."""
    t = trained_with_paper_layouts
    moved = t["visual"].with_suffix(".gone")
    t["visual"].rename(moved)
    try:
        run = str(t["summary"]["run_id"])
        code, out, err = medref_in_process("evaluate", run, "--ledger", f"sqlite:///{t['ledger']}", "--cpu",
                                           "--results-dir", str(t["home"] / "results"), "--json")
        assert code == 0, err
        assert 0.0 <= json.loads(out)["dice_global"] <= 1.0
    finally:
        moved.rename(t["visual"])


def test_evaluate_refuses_other_text_weights(trained_with_paper_layouts, medref_in_process, tmp_path):
    t = trained_with_paper_layouts
    original = t["cxr"] / "pytorch_model.bin"
    kept = tmp_path / "pytorch_model.bin"
    kept.write_bytes(original.read_bytes())
    try:
        write_cxr_bert_folder(t["cxr"], seed=1)  # same layout, other weights
        code, _out, err = medref_in_process("evaluate", str(t["summary"]["run_id"]), "--ledger",
                                            f"sqlite:///{t['ledger']}", "--cpu", "--results-dir",
                                            str(t["home"] / "results"))
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert "are not the ones the checkpoint was trained with" in err
    finally:
        original.write_bytes(kept.read_bytes())


def test_a_broken_text_folder_fails_at_preflight_before_any_data(cli, tmp_path, tiny_burnin_args):
    cxr = tmp_path / "cxr"
    write_cxr_bert_folder(cxr, rename=("bert.encoder.layer.0.attention.self.query.weight",
                                       "bert.encoder.layer.0.attention.self.q.weight"))
    args = _tiny_args(tiny_burnin_args, "--set", f"model.text_encoder={cxr}", "--set", "model.visual_pretrained=false")
    code, _out, err = cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "unexpected key encoder.layer.0.attention.self.q.weight" in err
    results = tmp_path / "results"
    assert not (results / "cache").exists()  # no image decoded into the tensor cache
    assert not (results / "ledger.db").exists()  # no ledger row (not even the file)
    assert not (results / "splits").exists()


def test_a_pretrained_request_without_weights_fails_at_preflight(cli, tmp_path, tiny_burnin_args, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = _tiny_args(tiny_burnin_args, "--set", "model.text_encoder=tiny-random-bert",
                      "--set", "model.visual_pretrained=true")
    code, _out, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "pretrained weights for visual encoder 'convnext_atto' not found" in err
    assert not (tmp_path / "results" / "cache").exists() and not (tmp_path / "results" / "ledger.db").exists()


def test_models_lists_both_backbones_offline_with_no_weights(cli, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, out, err = cli("models", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"mmi-unet", "guidedecoder"} <= set(rows)
    assert rows["mmi-unet"]["visual_weights"] == "timm convnext_tiny.fb_in22k (ImageNet-22k)"
    assert rows["mmi-unet"]["parameters"] > 40_000_000 and rows["mmi-unet"]["text_parameters"] is None
    assert "microsoft/BiomedVLP-CXR-BERT-specialized@v1.1" in rows["mmi-unet"]["text_weights"]
    assert not list((tmp_path / "hf").glob("**/*.safetensors")) and not (tmp_path / "torch").exists()


def test_ablate_preflights_before_recording_anything(cli, tmp_path, synthetic_root):
    cxr = tmp_path / "cxr"
    write_cxr_bert_folder(cxr, rename=("bert.embeddings.word_embeddings.weight", "bert.embeddings.words.weight"))
    code, _out, err = cli("ablate", "--table", "2", "--seeds", "0", "--dataset", "synthetic", "--data",
                          str(synthetic_root), "--backbone", "mmi-unet-tiny", "--set", "data.image_size=64",
                          "--set", "model.visual_pretrained=false", "--set", f"model.text_encoder={cxr}",
                          "--set", "runtime.device=cpu", "--set", "runtime.progress=false")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unexpected key embeddings.words.weight" in err
    assert not (tmp_path / "results" / "ledger.db").exists() and not (tmp_path / "results" / "cache").exists()


def test_bench_preflights_before_making_any_image(cli, tmp_path):
    cxr = tmp_path / "cxr"
    write_cxr_bert_folder(cxr, rename=("bert.encoder.layer.1.output.LayerNorm.bias", "bert.encoder.layer.1.ln.bias"))
    code, _out, err = cli("bench", "--backbone", "mmi-unet-tiny", "--size", "64", "--batch", "2", "--cpu",
                          "--set", "model.visual_pretrained=false", "--set", f"model.text_encoder={cxr}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unexpected key encoder.layer.1.ln.bias" in err
