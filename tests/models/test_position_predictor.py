"""The image-only position predictor: its heads, its zones under each laterality convention, and which
parameters train when (frozen encoder, then its last stages)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medref_cli.config import ExperimentConfig, load_config
from medref_cli.data.cache import SplitTensors
from medref_cli.models.encoders import create_visual_encoder
from medref_cli.models.position_predictor import PositionPredictor, zone_boxes
from medref_cli.training.position_fit import begin_epoch, fit_position


def predictor(head: str = "gap_mlp", laterality: str = "image") -> PositionPredictor:
    torch.manual_seed(0)
    return PositionPredictor(create_visual_encoder("convnext_atto"), head, hidden_dim=16, dropout=0.0,
                             query_layers=1, query_heads=4, laterality=laterality)


@pytest.mark.parametrize("head", ["gap_mlp", "region_pool", "six_query"])
def test_every_head_gives_six_finite_logits_per_image(head):
    model = predictor(head).eval()
    logits = model(torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()


def test_zone_boxes_follow_the_data_sets_laterality():
    # a 3 x 4 map: rows in thirds, columns in halves; bit order left upper .. right lower
    image = zone_boxes(3, 4, "image")
    assert image[0] == (0, 1, 0, 2) and image[2] == (2, 3, 0, 2) and image[3] == (0, 1, 2, 4)
    patient = zone_boxes(3, 4, "patient")
    assert patient[0] == (0, 1, 2, 4) and patient[5] == (2, 3, 0, 2)


def test_region_head_pools_the_caption_left_from_the_image_left_under_image_laterality():
    for laterality, left_cols in (("image", slice(0, 1)), ("patient", slice(1, 2))):
        head = predictor("region_pool", laterality).head.eval()
        feature = torch.zeros(1, head.norm.normalized_shape[0], 3, 2)
        feature[:, :, 0, left_cols] = torch.randn(feature.shape[1], 1)  # something only in the caption's left upper
        logits = head(feature)
        by_hand = head.classifiers[0](head.norm(feature[:, :, 0:1, left_cols].mean(dim=(2, 3))))
        assert torch.allclose(logits[:, 0:1], by_hand)
        flat = head.classifiers[3](head.norm(torch.zeros(1, feature.shape[1])))
        assert torch.allclose(logits[:, 3:4], flat)  # right upper sees nothing


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {n.split(".")[0] + ("." + n.split(".")[2] if n.startswith("encoder.stages") else "")
            for n, p in model.named_parameters() if p.requires_grad}


def test_schedule_freezes_the_encoder_then_unfreezes_its_last_two_stages():
    cfg = load_config()  # position.freeze_epochs 5, unfreeze_stages 2 (the reference's)
    model = predictor()
    begin_epoch(model, 0, cfg)
    assert trainable_names(model) == {"head"}
    for epoch in range(1, 5):
        begin_epoch(model, epoch, cfg)
        assert trainable_names(model) == {"head"}
    begin_epoch(model, 5, cfg)
    assert trainable_names(model) == {"head", "encoder.2", "encoder.3"}
    begin_epoch(model, 6, cfg)
    assert trainable_names(model) == {"head", "encoder.2", "encoder.3"}


def tiny_split(n: int, seed: int) -> SplitTensors:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 6, generator=g) < 0.5).to(torch.uint8)
    labels[0] = 1  # every zone named at least once
    return SplitTensors([f"s{i}" for i in range(n)], torch.randint(0, 256, (n, 1, 64, 64), generator=g, dtype=torch.uint8),
                        torch.zeros(n, 1, 64, 64, dtype=torch.uint8), ["c"] * n, labels)


def settings(**position) -> ExperimentConfig:
    cfg = load_config(sets=["runtime.log_every=1"])
    return dataclasses.replace(cfg, position=dataclasses.replace(cfg.position, batch_size=4, **position))


def stage_tensors(model: PositionPredictor) -> list[list[torch.Tensor]]:
    return [[p.detach().clone() for p in stage.parameters()] for stage in model.encoder.stages]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_fit_trains_only_the_head_while_frozen():
    model = predictor()
    before = stage_tensors(model)
    head_before = [p.detach().clone() for p in model.head.parameters()]
    fit = fit_position(model, tiny_split(8, 0), tiny_split(6, 1), settings(epochs=2, freeze_epochs=2),
                       lambda values, step: None)
    assert all(same(b, a) for b, a in zip(before, stage_tensors(model), strict=True))
    assert not same(head_before, list(model.head.parameters()))
    n_head = sum(p.numel() for p in model.head.parameters())
    assert fit.trainable_by_epoch == [n_head, n_head]


def test_fit_after_unfreezing_moves_the_last_two_stages_and_not_the_first_two():
    model = predictor()
    before = stage_tensors(model)
    logged: list[dict] = []
    fit = fit_position(model, tiny_split(8, 0), tiny_split(6, 1), settings(epochs=1, freeze_epochs=0),
                       lambda values, step: logged.append(values))
    after = stage_tensors(model)
    assert same(before[0], after[0]) and same(before[1], after[1])
    assert not same(before[2], after[2]) and not same(before[3], after[3])
    n_head = sum(p.numel() for p in model.head.parameters())
    n_deep = sum(p.numel() for s in list(model.encoder.stages)[2:] for p in s.parameters())
    assert fit.trainable_by_epoch == [n_head + n_deep]
    epoch_row = next(v for v in logged if "val_mAP" in v)
    assert epoch_row["lr_head"] == pytest.approx(3e-4) and epoch_row["lr_backbone"] == pytest.approx(3e-5)
    assert {"train_loss", "loss_bce", "loss_asymmetric", "loss_cardinality"} <= set(logged[0])


def test_fit_keeps_the_epoch_of_the_best_validation_map():
    logged: list[dict] = []
    fit = fit_position(predictor(), tiny_split(8, 0), tiny_split(6, 1), settings(epochs=3, freeze_epochs=1),
                       lambda values, step: logged.append(values))
    maps = [v["val_mAP"] for v in logged if "val_mAP" in v]
    assert len(maps) == 3 and fit.best_epoch == maps.index(max(maps)) + 1  # counted from 1
    assert fit.best_val["mAP"] == pytest.approx(max(maps))
    # the cosine over 3 epochs: lr x (1 + cos(pi e / 3)) / 2
    lrs = [v["lr_head"] for v in logged if "val_mAP" in v]
    assert lrs == pytest.approx([3e-4, 3e-4 * 0.75, 3e-4 * 0.25])
