"""The paper's encoders load as plain modules: CXR-BERT without remote code, ConvNeXt from a Facebook file,
strictly, with the identity of the files loaded."""

from __future__ import annotations

import pytest
import torch

from medref_cli.errors import MedrefError
from medref_cli.files import sha256_file
from medref_cli.models.encoders import create_visual_encoder, load_text_encoder

from .conftest import write_cxr_bert_folder, write_facebook_convnext

CAPTION = "bilateral pulmonary infection, two infected areas, lower left lung and lower right lung."


@pytest.mark.parametrize("safetensors", [False, True])
def test_cxr_bert_folder_loads_strictly_into_a_bert_model(tmp_path, safetensors):
    folder = tmp_path / "BiomedVLP-CXR-BERT-specialized"
    reference = write_cxr_bert_folder(folder, safetensors=safetensors)
    encoder = load_text_encoder(str(folder), max_length=24)

    assert type(encoder.model).__name__ == "BertModel" and not encoder.model.training
    loaded = encoder.model.state_dict()
    assert set(loaded) == set(reference.state_dict())  # heads and position ids dropped, nothing missing
    batch = encoder.tokenizer([CAPTION], padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    assert int(batch["input_ids"][0, 1]) == encoder.tokenizer.convert_tokens_to_ids("bilateral")
    with torch.no_grad():
        want = reference(**batch, output_hidden_states=True).hidden_states
        got = encoder.model(**batch, output_hidden_states=True).hidden_states
    assert len(got) == len(want) == 3
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert encoder.encode([CAPTION]).tokens.shape == (1, 24, 32)
    # the hub's own code was never imported
    assert not (folder / "REMOTE_CODE_RAN").exists()
    weights = folder / ("model.safetensors" if safetensors else "pytorch_model.bin")
    assert encoder.identity["weights_sha256"] == {weights.name: sha256_file(weights)}
    assert encoder.identity["vocab_sha256"] == sha256_file(folder / "vocab.txt")


def test_the_remote_code_marker_works(tmp_path):
    """What the test above relies on: loading the folder through transformers' remote code runs the
    repository's python files, and they leave the marker."""
    from transformers import AutoConfig

    folder = tmp_path / "cxr"
    write_cxr_bert_folder(folder)
    with pytest.raises(Exception, match="remote code imported"):
        AutoConfig.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
    assert (folder / "REMOTE_CODE_RAN").exists()


def test_a_renamed_key_fails_in_one_line(tmp_path):
    folder = tmp_path / "cxr"
    write_cxr_bert_folder(folder, rename=("bert.encoder.layer.1.output.dense.weight",
                                          "bert.encoder.layer.1.output.dense_renamed.weight"))
    with pytest.raises(MedrefError) as info:
        load_text_encoder(str(folder))
    message = str(info.value)
    assert "\n" not in message
    assert "do not fit a BertModel" in message
    assert "unexpected key encoder.layer.1.output.dense_renamed.weight" in message
    assert "missing key encoder.layer.1.output.dense.weight" in message


def test_a_model_that_is_not_bert_is_refused(tmp_path):
    import json

    folder = tmp_path / "roberta"
    write_cxr_bert_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(MedrefError, match="is a 'roberta' model; medref loads BERT-family encoders"):
        load_text_encoder(str(folder))


def test_the_packaged_minilm_loads_through_the_same_path(minilm_text):
    from transformers import AutoModel

    from medref_cli.models.encoders import builtin_minilm_path

    assert minilm_text.identity["kind"] == "package"
    assert minilm_text.identity["weights_sha256"] == {
        "model.safetensors": sha256_file(builtin_minilm_path() / "model.safetensors")}
    reference = AutoModel.from_pretrained(str(builtin_minilm_path()), local_files_only=True).eval()
    batch = minilm_text.tokenizer([CAPTION], padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(minilm_text.model(**batch).last_hidden_state, reference(**batch).last_hidden_state)


def test_offline_hub_name_not_in_the_cache_names_the_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MedrefError) as info:
        load_text_encoder("microsoft/BiomedVLP-CXR-BERT-specialized", revision="v1.1")
    message = str(info.value)
    assert "\n" not in message and "revision v1.1" in message and "hub offline" in message


def test_a_hub_snapshot_in_the_cache_is_used_and_its_commit_recorded(tmp_path, monkeypatch):
    """The hub's cache layout (refs/<tag> -> snapshots/<commit>/): the pinned tag resolves offline."""
    import huggingface_hub.constants

    repo = tmp_path / "hf" / "models--microsoft--BiomedVLP-CXR-BERT-specialized"
    commit = "0123456789abcdef0123456789abcdef01234567"
    write_cxr_bert_folder(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1.1").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_text_encoder("microsoft/BiomedVLP-CXR-BERT-specialized", revision="v1.1")
    assert encoder.identity["kind"] == "hub"
    assert (encoder.identity["revision"], encoder.identity["commit"]) == ("v1.1", commit)
    with pytest.raises(MedrefError, match="revision v2.0"):
        load_text_encoder("microsoft/BiomedVLP-CXR-BERT-specialized", revision="v2.0")


# ----------------------------------------------------------------------------- visual


def test_a_facebook_format_convnext_checkpoint_loads_strictly(tmp_path):
    path = tmp_path / "convnext_atto_22k_224.pth"
    rgb = write_facebook_convnext(path)
    encoder = create_visual_encoder("convnext_atto", checkpoint_path=str(path))
    reference = rgb.state_dict()
    # the RGB stem folded into one gray channel; every other tensor as in the file
    torch.testing.assert_close(encoder.stages[0][0].weight[:, 0], reference["stem.0.weight"].sum(dim=1))
    last_block = encoder.stages[3][-1].blocks[-1]
    torch.testing.assert_close(last_block.mlp.fc2.weight, reference["stages.3.blocks.1.mlp.fc2.weight"])
    torch.testing.assert_close(last_block.gamma, reference["stages.3.blocks.1.gamma"])
    assert encoder.weights["source"] == "file" and encoder.weights["sha256"] == sha256_file(path)
    assert encoder.weights["tensors"] == len(encoder.state_dict())


def test_a_checkpoint_missing_a_tensor_is_refused_not_left_random(tmp_path):
    """timm alone would load this non-strictly (the feature model drops the classifier) and leave the
    block random; medref refuses it."""
    import timm

    torch.manual_seed(0)
    state = timm.create_model("convnext_atto").state_dict()
    del state["stages.2.blocks.3.conv_dw.weight"]
    path = tmp_path / "atto.pth"
    torch.save(state, path)
    with pytest.raises(MedrefError) as info:
        create_visual_encoder("convnext_atto", checkpoint_path=str(path))
    assert "missing key stages.2.blocks.3.conv_dw.weight" in str(info.value) and "\n" not in str(info.value)


def test_pretrained_never_ends_up_random(tmp_path, monkeypatch):
    """Requested pretrained -> every tensor is the cached file's; the encoder says which file."""
    import huggingface_hub.constants
    import timm
    from timm.models import get_pretrained_cfg

    repo = get_pretrained_cfg("convnext_atto").hf_hub_id
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    torch.manual_seed(1)
    rgb = timm.create_model("convnext_atto")
    torch.save(rgb.state_dict(), snapshot / "pytorch_model.bin")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    pretrained = create_visual_encoder("convnext_atto", pretrained=True)
    random = create_visual_encoder("convnext_atto", pretrained=False)
    file_state = rgb.state_dict()
    for key, tensor in pretrained.stages[3].state_dict().items():
        if key.endswith("weight") and tensor.ndim > 1:
            assert not torch.equal(tensor, random.stages[3].state_dict()[key])
    torch.testing.assert_close(pretrained.stages[3][-1].blocks[0].conv_dw.weight,
                               file_state["stages.3.blocks.0.conv_dw.weight"])
    assert pretrained.weights["pretrained"] and pretrained.weights["source"] == "timm"
    assert pretrained.weights["sha256"] == sha256_file(snapshot / "pytorch_model.bin")
    assert random.weights["source"] == "random"
