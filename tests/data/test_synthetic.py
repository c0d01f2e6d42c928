"""The built-in synthetic data set: layout, determinism, atomic writes, lesions vs distractors."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from PIL import Image

from medref_cli.data import synthetic
from medref_cli.data.synthetic import draw_label, render_sample, split_sizes, write_synthetic_dataset
from medref_cli.errors import MedrefError
from medref_cli.text.positions import compose_caption, parse_caption

ENTRY_KEYS = {"image_path", "caption", "pulmonary_infection", "infected_area", "pseudo_label"}


def _hashes(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(400, (240, 60, 100)), (100, (60, 15, 25)), (20, (12, 3, 5)), (3, (1, 1, 1)), (5, (3, 1, 1))],
)
def test_split_sizes(n, sizes):
    assert tuple(split_sizes(n).values()) == sizes
    assert list(split_sizes(n)) == ["train", "valid", "test"]


def test_too_small_n_is_a_user_error(tmp_path):
    with pytest.raises(MedrefError, match="n >= 3"):
        write_synthetic_dataset(tmp_path / "out", n=2, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_layout_and_annotation_schema(tmp_path):
    root = write_synthetic_dataset(tmp_path / "synth", n=10, seed=3)
    annotation = json.loads((root / "prompts" / "annotation.json").read_text())
    meta = json.loads((root / "meta.json").read_text())
    assert list(annotation) == ["train", "valid", "test"]
    assert [len(annotation[s]) for s in annotation] == [7, 1, 2]
    assert meta["seed"] == 3 and meta["n"] == 10 and meta["generator_version"] == synthetic.GENERATOR_VERSION
    assert meta["images_with_distractors"] == {"train": 3, "valid": 0, "test": 1}
    assert "seed 3" in (root / "README.md").read_text()
    names = []
    for split, entries in annotation.items():
        for entry in entries:
            assert set(entry) == ENTRY_KEYS
            label = tuple(entry["pseudo_label"])
            assert entry["caption"] == compose_caption(label)
            assert parse_caption(entry["caption"]).label == label
            assert entry["infected_area"] == sum(label) >= 1
            assert entry["pulmonary_infection"] == int(any(label[:3])) + int(any(label[3:]))
            name = entry["image_path"].removeprefix("mask_")
            names.append(name)
            image = Image.open(root / "images" / split / "images" / name)
            mask = Image.open(root / "images" / split / "masks" / entry["image_path"])
            assert image.mode == "L" and image.size == (224, 224)
            assert mask.mode == "L" and mask.size == (224, 224)
            values = set(np.unique(np.asarray(mask)).tolist())
            assert values == {0, 255}
    assert len(set(names)) == 10
    distractor_names = set(meta["distractor_zones"])
    assert len(distractor_names) == 4 and distractor_names <= {n.removesuffix(".png") for n in names}
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temp folder left behind


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _hashes(write_synthetic_dataset(tmp_path / "a", n=9, seed=5, image_size=64))
    b = _hashes(write_synthetic_dataset(tmp_path / "b", n=9, seed=5, image_size=64))
    c = _hashes(write_synthetic_dataset(tmp_path / "c", n=9, seed=6, image_size=64))
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".png")]
    assert len(images) == 18
    assert all(a[k] != c[k] for k in images if "/images/" in k and "/masks/" not in k)


def _sample(index: int, with_distractor: bool, size: int = 224):
    rng = np.random.default_rng([11, index])
    label = draw_label(rng)
    free = [z for z in range(6) if not label[z]]
    zones = (int(rng.choice(free)),) if with_distractor else ()
    return render_sample(rng, label, zones, size)


@pytest.mark.parametrize("size", [224, 64])
def test_mask_lies_in_named_zones_and_covers_each(size):
    for index in range(30):
        sample = _sample(index, with_distractor=index % 2 == 0, size=size)
        mask = sample.mask > 0
        named = np.zeros_like(mask)
        for zone in range(6):
            if sample.label[zone]:
                named |= sample.zone_bands[zone]
                assert (mask & sample.zone_bands[zone]).any(), (index, zone)
            else:
                assert not (mask & sample.zone_bands[zone]).any(), (index, zone)
        assert not (mask & ~named).any()
        assert 1 <= sum(sample.label) <= 4


def test_left_and_right_are_the_image_sides():
    for index in range(40):
        sample = _sample(index, with_distractor=False)
        columns = np.nonzero(sample.mask)[1]
        if not any(sample.label[3:]):
            assert columns.max() < 112
        if not any(sample.label[:3]):
            assert columns.min() >= 112


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_distractors_make_the_text_matter():
    """A text-blind rule (segment all bright lung pixels) loses to the same rule restricted to the
    zones the caption names, and loses most on images with a distractor."""
    blind = {True: [], False: []}
    aware = {True: [], False: []}
    for index in range(40):
        has_distractor = index % 2 == 0
        sample = _sample(index, with_distractor=has_distractor)
        lungs = sample.zone_bands.any(axis=0)
        image = sample.image.astype(float)
        bright = (image > np.median(image[lungs]) + 30) & lungs
        named = np.any([sample.zone_bands[z] for z in range(6) if sample.label[z]], axis=0)
        mask = sample.mask > 0
        blind[has_distractor].append(_dice(bright, mask))
        aware[has_distractor].append(_dice(bright & named, mask))
    assert np.mean(aware[True]) > np.mean(blind[True]) + 0.1
    assert np.mean(blind[True]) < np.mean(blind[False])


def test_refuses_non_empty_out_unless_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MedrefError, match="not empty; use --force"):
        write_synthetic_dataset(out, n=3, seed=0, image_size=32)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_synthetic_dataset(out, n=3, seed=0, image_size=32, force=True)
    assert not (out / "keep.txt").exists() and (out / "prompts" / "annotation.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_synthetic_dataset(empty, n=3, seed=0, image_size=32)
    assert (empty / "meta.json").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MedrefError, match="not a folder"):
        write_synthetic_dataset(tmp_path / "file", n=3, seed=0)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    real_write_split = synthetic._write_split
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write_split(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write_split", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "out", n=6, seed=0, image_size=32)
    assert calls == ["train", "valid"]
    assert list(tmp_path.iterdir()) == []


def test_generation_is_fast():
    start = time.perf_counter()
    for index in range(40):
        _sample(index, with_distractor=True)
    assert time.perf_counter() - start < 4.0  # about 0.3 s on one core


def test_cli_synth(cli, tmp_path):
    out = tmp_path / "set"
    code, stdout, err = cli(
        "data", "synth", "--out", str(out), "--n", "6", "--seed", "2", "--image-size", "48"
    )
    assert code == 0, err
    assert "wrote 6 synthetic samples" in stdout
    assert json.loads((out / "meta.json").read_text())["image_size"] == 48
    code, _, err = cli("data", "synth", "--out", str(out), "--n", "6")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--force" in err
    code, _, err = cli("data", "synth", "--out", str(out), "--n", "6", "--seed", "3", "--force")
    assert code == 0, err
    assert json.loads((out / "meta.json").read_text())["seed"] == 3
