"""Loader benchmark: both loaders produce the same kind of batch, and the command reports figures."""

from __future__ import annotations

import json

import pytest
import torch

from medref_cli.bench.loader_bench import NaiveDataset, cached_step, run_bench
from medref_cli.data.cache import load_split
from medref_cli.data.readers import read_dataset
from medref_cli.errors import MedrefError


def test_naive_item_and_cached_batch_have_the_same_form(qata_fixture):
    root, _ = qata_fixture
    records = read_dataset(root)["train"]
    image, mask = NaiveDataset(records, 16, seed=0)[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert mask.shape == (1, 16, 16) and mask.dtype == torch.uint8
    images, masks = cached_step(load_split(records, 16), 4, torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 16, 16) and masks.shape == (4, 1, 16, 16)
    # the strong view of the per-image standardised weak view: jitter scales it, blur barely moves the mean
    assert abs(images.flatten(1).mean(1)).max() < 0.1
    assert set(masks.unique().tolist()) <= {0, 1}


def test_run_bench_measures_both_loaders(qata_fixture):
    root, _ = qata_fixture
    result = run_bench(read_dataset(root)["train"], "train", image_size=16, batch=2, steps=2)
    assert result.naive_samples_per_s > 0 and result.cached_samples_per_s > 0
    assert result.speedup == pytest.approx(result.cached_samples_per_s / result.naive_samples_per_s)
    assert (result.samples, result.batch, result.steps, result.device) == (6, 2, 2, "cpu")


def test_run_bench_rejects_a_split_smaller_than_a_batch(qata_fixture):
    root, _ = qata_fixture
    with pytest.raises(MedrefError, match="fewer than one batch"):
        run_bench(read_dataset(root)["valid"], "valid", image_size=16, batch=4, steps=1)


def test_bench_command(qata_fixture, cli):
    root, _ = qata_fixture
    args = ("data", "bench", "--data", str(root), "--batch", "2", "--steps", "2", "--image-size", "16")
    code, out, err = cli(*args)
    assert code == 0, err
    assert "naive loader" in out and "cached loader" in out and "speed-up: x" in out
    threads_before = torch.get_num_threads()
    code, out, err = cli(*args, "--json", "--split", "val", "--threads", "1")
    payload = json.loads(out)
    assert code == 0 and payload["split"] == "valid" and payload["samples"] == 2 and payload["threads"] == 1
    assert torch.get_num_threads() == threads_before  # restored after the run
    assert payload["speedup"] == pytest.approx(
        payload["cached_samples_per_s"] / payload["naive_samples_per_s"]
    )
    code, _, err = cli("data", "bench", "--data", str(root), "--split", "holdout")
    assert code == 2 and "unknown split name" in err
