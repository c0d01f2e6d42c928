"""Tiny data sets in each public layout (qata, lvit, mmiunet, mosmed), built in tmp_path.

Every sample is a 16x16 grayscale image with a 4x4 lesion; the caption names the lesion's
side and level. With `laterality="image"` the lesion of a "left" caption lies in the image's
left half, with "patient" in the right half.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 16
LEVEL_ROWS = {"upper": 2, "middle": 6, "lower": 10}
LEVELS = ("upper", "middle", "lower")
COUNTS = ("zero", "one", "two", "three")


@dataclass(frozen=True)
class FixtureSample:
    id: str
    split: str
    sides: tuple[str, ...]  # ("left",), ("right",) or ("left", "right")
    level: str

    @property
    def label(self) -> tuple[int, ...]:
        bits = [0] * 6
        for side in self.sides:
            bits[(0 if side == "left" else 3) + LEVELS.index(self.level)] = 1
        return tuple(bits)

    @property
    def caption(self) -> str:
        extent = "bilateral" if len(self.sides) == 2 else "unilateral"
        zones = " and ".join(f"{self.level} {side} lung" for side in self.sides)
        area = "area" if len(self.sides) == 1 else "areas"
        return f"{extent} pulmonary infection, {COUNTS[len(self.sides)]} infected {area}, {zones}."


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def sample_arrays(sample: FixtureSample, laterality: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask 0/255) of one sample; the image is noise with the lesion brighter."""
    rng = np.random.default_rng(seed)
    image = rng.integers(20, 120, size=(SIZE, SIZE))
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    row = LEVEL_ROWS[sample.level]
    for side in sample.sides:
        image_side = side if laterality == "image" else ("right" if side == "left" else "left")
        col = 2 if image_side == "left" else 10
        mask[row : row + 4, col : col + 4] = 255
    image = np.where(mask > 0, 220, image)
    return image.astype(np.uint8), mask


def make_samples(counts: dict[str, int]) -> list[FixtureSample]:
    """Samples per split, cycling left / right / both sides and the three levels."""
    side_cycle = (("left",), ("right",), ("left", "right"), ("left",), ("right",))
    samples, number = [], 0
    for split, count in counts.items():
        for _ in range(count):
            sides = side_cycle[number % len(side_cycle)]
            samples.append(FixtureSample(f"case_{number}", split, sides, LEVELS[number % 3]))
            number += 1
    return samples


DEFAULT_COUNTS = {"train": 6, "valid": 2, "test": 3}


def build_qata(root: Path, counts=DEFAULT_COUNTS, laterality: str = "image") -> list[FixtureSample]:
    import json

    samples = make_samples(counts)
    annotation = {"train": [], "valid": [], "test": []}
    for index, sample in enumerate(samples):
        image, mask = sample_arrays(sample, laterality, index)
        write_png(root / "images" / sample.split / "images" / f"{sample.id}.png", image)
        write_png(root / "images" / sample.split / "masks" / f"mask_{sample.id}.png", mask)
        annotation[sample.split].append(
            {
                "image_path": f"mask_{sample.id}.png",
                "caption": sample.caption,
                "pseudo_label": list(sample.label),
            }
        )
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "annotation.json").write_text(json.dumps(annotation, indent=1))
    return samples


LVIT_FOLDERS = {"train": "Train_Folder", "valid": "Val_Folder", "test": "Test_Folder"}


def build_lvit(root: Path, counts=DEFAULT_COUNTS, same_name: bool = False) -> list[FixtureSample]:
    """QaTa-style names (labelcol/mask_X.png, img/X.png), or MosMed-style shared names."""
    import pandas as pd

    samples = make_samples(counts)
    rows: dict[str, list[dict]] = {split: [] for split in LVIT_FOLDERS}
    for index, sample in enumerate(samples):
        image, mask = sample_arrays(sample, "image", index)
        folder = root / LVIT_FOLDERS[sample.split]
        mask_name = f"{sample.id}.png" if same_name else f"mask_{sample.id}.png"
        write_png(folder / "img" / f"{sample.id}.png", image)
        write_png(folder / "labelcol" / mask_name, mask)
        rows[sample.split].append({"Image": mask_name, "Description": sample.caption})
    for split, folder_name in LVIT_FOLDERS.items():
        prefix = folder_name.split("_")[0]
        (root / folder_name).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows[split], columns=["Image", "Description"]).to_excel(
            root / folder_name / f"{prefix}_text.xlsx", index=False
        )
    return samples


TABLE_DIRS = {"train": "Train", "valid": "Val", "test": "Test"}
TABLE_CSVS = {"train": "train.csv", "valid": "val.csv", "test": "test.csv"}


def build_tables(
    root: Path, format: str, counts=DEFAULT_COUNTS, with_val: bool = True
) -> list[FixtureSample]:
    """mmiunet: Image,Description with GTs/mask_X.png; mosmed: Image,text,pseudo_label, shared names."""
    import pandas as pd

    samples = make_samples(counts)
    rows: dict[str, list[dict]] = {split: [] for split in TABLE_DIRS}
    for index, sample in enumerate(samples):
        image, mask = sample_arrays(sample, "image", index)
        split = sample.split if with_val or sample.split != "valid" else "train"
        folder = root / TABLE_DIRS[split]
        mask_name = f"mask_{sample.id}.png" if format == "mmiunet" else f"{sample.id}.png"
        write_png(folder / "Images" / f"{sample.id}.png", image)
        write_png(folder / "GTs" / mask_name, mask)
        if format == "mmiunet":
            rows[split].append({"Image": mask_name, "Description": sample.caption})
        else:
            label_text = "[" + ", ".join(str(b) for b in sample.label) + "]"
            rows[split].append({"Image": mask_name, "text": sample.caption, "pseudo_label": label_text})
    (root / "prompt").mkdir(parents=True, exist_ok=True)
    for split, csv_name in TABLE_CSVS.items():
        if split == "valid" and not with_val:
            continue
        pd.DataFrame(rows[split]).to_csv(root / "prompt" / csv_name, index=False)
    return samples


# the reference's MosMedData+ table names (data_splits/MosMed/ of the Semi-MedRef repository)
FRAMES_TABLES = {"train": "Train_text_MosMedData+ 1(in)", "valid": "Val_text_MosMedData+ 1(in)",
                 "test": "Test_text_MosMedData+(in)"}


def build_frames(root: Path, counts=DEFAULT_COUNTS, labels_in_eval: bool = True, image_dir: str = "frames",
                 table_dir: str = ".") -> list[FixtureSample]:
    """MosMedData+ as the reference reads it: frames/X.png and masks/X.png for every split, and
    Train/Val/Test caption tables written with a UTF-8 byte-order mark. The train table is
    `<name>.plabel.csv` (Image, text, pseudo_label); the valid and test tables are too when
    `labels_in_eval`, else plain `<name>.csv` with Image, text only (the files the reference's
    configs name)."""
    import pandas as pd

    samples = make_samples(counts)
    rows: dict[str, list[dict]] = {split: [] for split in FRAMES_TABLES}
    for index, sample in enumerate(samples):
        image, mask = sample_arrays(sample, "image", index)
        write_png(root / image_dir / f"{sample.id}.png", image)
        write_png(root / "masks" / f"{sample.id}.png", mask)
        label_text = "[" + ", ".join(str(b) for b in sample.label) + "]"
        rows[sample.split].append({"Image": f"{sample.id}.png", "text": sample.caption, "pseudo_label": label_text})
    folder = root / table_dir
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in FRAMES_TABLES.items():
        frame = pd.DataFrame(rows[split])
        if split == "train" or labels_in_eval:
            frame.to_csv(folder / f"{name}.plabel.csv", index=False, encoding="utf-8-sig")
        else:
            frame[["Image", "text"]].to_csv(folder / f"{name}.csv", index=False, encoding="utf-8-sig")
    return samples


def build_format(root: Path, format: str, counts=DEFAULT_COUNTS) -> list[FixtureSample]:
    if format == "qata":
        return build_qata(root, counts)
    if format == "lvit":
        return build_lvit(root, counts)
    if format == "mosmed-frames":
        return build_frames(root, counts)
    return build_tables(root, format, counts)


@pytest.fixture
def qata_fixture(tmp_path) -> tuple[Path, list[FixtureSample]]:
    root = tmp_path / "qata"
    return root, build_qata(root)


@pytest.fixture
def mris():
    """The builders above, for tests (importlib import mode cannot import conftest directly)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        build_qata=build_qata,
        build_lvit=build_lvit,
        build_tables=build_tables,
        build_frames=build_frames,
        FRAMES_TABLES=FRAMES_TABLES,
        build_format=build_format,
        write_png=write_png,
        sample_arrays=sample_arrays,
        make_samples=make_samples,
        SIZE=SIZE,
    )
