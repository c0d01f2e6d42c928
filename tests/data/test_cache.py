"""In-memory split cache: values, resizing, labels, errors and the optional on-disk copy."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from medref_cli.data.cache import load_split
from medref_cli.data.decode import binarize_mask, decode_gray, is_binary_mask
from medref_cli.data.readers import read_dataset
from medref_cli.errors import MedrefError


def test_split_tensors_hold_the_decoded_pixels(qata_fixture):
    root, samples = qata_fixture
    records = read_dataset(root)["train"]
    split = load_split(records, 16)
    assert split.images.shape == (6, 1, 16, 16) and split.images.dtype == torch.uint8
    assert split.masks.shape == (6, 1, 16, 16) and split.masks.dtype == torch.uint8
    assert split.labels.shape == (6, 6) and split.labels.dtype == torch.uint8
    assert split.ids == [r.id for r in records] and split.captions == [r.caption for r in records]
    for i, record in enumerate(records):
        assert np.array_equal(split.images[i, 0].numpy(), np.asarray(Image.open(record.image_path)))
        assert np.array_equal(
            split.masks[i, 0].numpy(), (np.asarray(Image.open(record.mask_path)) > 0).astype(np.uint8)
        )
    assert [tuple(row) for row in split.labels.tolist()] == [s.label for s in samples if s.split == "train"]


def test_resizing_is_bilinear_for_images_and_nearest_for_masks(qata_fixture):
    root, _ = qata_fixture
    records = read_dataset(root)["train"][:1]
    split = load_split(records, 8)
    mask = (np.asarray(Image.open(records[0].mask_path)) > 0).astype(np.uint8)
    # nearest 16 -> 8 keeps pixel (2i + 1, 2j + 1) in PIL's convention (centre of each 2x2 block)
    assert np.array_equal(split.masks[0, 0].numpy(), mask[1::2, 1::2])
    image = np.asarray(Image.open(records[0].image_path))
    expected = np.asarray(Image.fromarray(image).resize((8, 8), Image.Resampling.BILINEAR))
    assert np.array_equal(split.images[0, 0].numpy(), expected)
    assert set(split.masks.unique().tolist()) <= {0, 1}


def test_labels_fall_back_to_the_caption(tmp_path, mris):
    samples = mris.build_lvit(tmp_path)  # LViT carries no label column
    records = read_dataset(tmp_path)["test"]
    assert all(r.label is None for r in records)
    split = load_split(records, 16)
    assert [tuple(row) for row in split.labels.tolist()] == [s.label for s in samples if s.split == "test"]


def test_unparseable_caption_without_label_and_corrupt_file_raise(qata_fixture):
    root, _ = qata_fixture
    annotation_path = root / "prompts" / "annotation.json"
    annotation = json.loads(annotation_path.read_text())
    annotation["valid"][0]["caption"] = "free text."
    del annotation["valid"][0]["pseudo_label"]
    annotation_path.write_text(json.dumps(annotation))
    with pytest.raises(MedrefError, match="case_6: no position label"):
        load_split(read_dataset(root)["valid"], 16)
    (root / "images" / "test" / "images" / "case_8.png").write_bytes(b"broken")
    with pytest.raises(MedrefError, match=r"cannot decode .*case_8\.png"):
        load_split(read_dataset(root)["test"], 16)


def test_disk_cache_is_reused_and_invalidated_by_a_changed_file(qata_fixture, tmp_path):
    root, _ = qata_fixture
    records = read_dataset(root)["train"]
    cache_dir = tmp_path / "cache"
    first = load_split(records, 16, cache_dir=cache_dir)
    [cached_file] = cache_dir.glob("*.pt")
    again = load_split(records, 16, cache_dir=cache_dir)
    assert torch.equal(first.images, again.images) and again.ids == first.ids
    assert list(cache_dir.glob("*.pt")) == [cached_file]
    # a changed image gives a new key and new pixels
    path = records[0].image_path
    Image.fromarray(np.full((16, 16), 7, dtype=np.uint8)).save(path)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    changed = load_split(records, 16, cache_dir=cache_dir)
    assert (changed.images[0] == 7).all() and len(list(cache_dir.glob("*.pt"))) == 2
    assert not list(cache_dir.glob("*.tmp"))


def test_to_and_subset(qata_fixture):
    root, _ = qata_fixture
    split = load_split(read_dataset(root)["train"], 16)
    moved = split.to("cpu")
    assert moved.device.type == "cpu" and torch.equal(moved.masks, split.masks)
    part = split.subset([3, 1])
    assert part.ids == [split.ids[3], split.ids[1]] and torch.equal(part.images[0], split.images[3])
    assert len(part) == 2


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 255], [0, 1]),
        ([0, 1], [0, 1]),
        ([0, 90, 200, 255], [0, 0, 1, 1]),
        ([0, 0], [0, 0]),
    ],
)
def test_binarize_mask(values, expected):
    assert binarize_mask(np.array(values, dtype=np.uint8)).tolist() == expected


def test_decode_handles_colour_and_16_bit(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., :] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert decode_gray(tmp_path / "rgb.png").tolist() == [[255] * 4] * 4
    Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert decode_gray(tmp_path / "deep.png").tolist() == [[255, 255], [255, 255]]
    assert is_binary_mask(np.array([0, 255])) and not is_binary_mask(np.array([0, 1, 255]))
