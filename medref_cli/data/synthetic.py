"""The built-in synthetic data set: chest-like images, lesion masks and QaTa-template captions.

It is written in exactly the on-disk layout of the QaTa-COV19 refined release (see
`/work/shared/data/README.md`), so every reader and command treats it like real data::

    <out>/prompts/annotation.json               {"train": [...], "valid": [...], "test": [...]}
    <out>/images/<split>/images/<name>.png      image_size^2 grayscale (mode L)
    <out>/images/<split>/masks/mask_<name>.png  values {0, 255}
    <out>/meta.json, <out>/README.md            generator version, seed, n, split sizes, distractors

What an image holds: a bright body with two darker, soft-edged lung fields (faint rib
stripes, low-frequency texture, noise), a brighter heart shadow at the lower middle-right.
Each image has 1 to 4 lesion zones out of the 6 (left/right x upper/middle/lower; left and
right are the IMAGE's sides, as in the real data), drawn with probabilities 0.35/0.30/0.20/0.15,
the zones uniformly. Each lesion zone gets a brighter soft opacity (1 to 3 overlapping blobs)
confined to that zone's band of its lung; the mask is that opacity thresholded, so a mask pixel
always lies in a zone the caption names and every named zone has mask pixels. The caption is
`compose_caption(label)`, the 6-bit `pseudo_label` is the label.

Distractors, so that the text matters: in every split exactly half of the images
(`floor(size / 2)`, chosen by a seeded permutation) carry ONE distractor opacity, drawn like a
lesion, in one zone that the caption does not name; the mask does not include it. A model that
ignores the text cannot tell it from a lesion. With n = 400 that is 120 + 30 + 50 = 200 images.
The distractor zones are listed per image in meta.json.

Split sizes from n: valid = max(1, floor(0.15 n)), test = max(1, floor(0.25 n)), train = the
rest (about 60/15/25 %; n = 400 gives 240/60/100). The same seed gives the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from medref_cli.errors import MedrefError
from medref_cli.files import new_folders
from medref_cli.text.positions import compose_caption

GENERATOR_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "valid", "test")
VALID_SHARE = 0.15
TEST_SHARE = 0.25
DISTRACTOR_SHARE = 0.5
ZONE_COUNT_PROBS = (0.35, 0.30, 0.20, 0.15)  # P(1..4 lesion zones)
# lung fields in image coordinates (fractions of the side): centre x of the image-left and
# image-right lung, centre y, half width, half height
LUNG_CX = (0.29, 0.71)
LUNG_CY = 0.49
LUNG_AX = 0.175
LUNG_AY = 0.33


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # (S, S) uint8
    mask: np.ndarray  # (S, S) uint8 in {0, 255}
    label: tuple[int, ...]
    distractor_zones: tuple[int, ...]
    zone_bands: np.ndarray  # (6, S, S) bool: the pixels of each zone (inside its lung), ZONES order


@dataclass(frozen=True)
class _Lung:
    cx: float
    cy: float
    ax: float
    ay: float


def split_sizes(n: int) -> dict[str, int]:
    """Train/valid/test sizes for n images (about 60/15/25 %, each at least 1)."""
    if n < 3:
        raise MedrefError(f"a synthetic data set needs n >= 3 (one image per split), got {n}")
    valid = max(1, int(n * VALID_SHARE))
    test = max(1, int(n * TEST_SHARE))
    return {"train": n - valid - test, "valid": valid, "test": test}


def draw_label(rng: np.random.Generator) -> tuple[int, ...]:
    """A 6-bit label with 1 to 4 zones (ZONE_COUNT_PROBS), zones uniform."""
    k = int(rng.choice(np.arange(1, 5), p=ZONE_COUNT_PROBS))
    bits = np.zeros(6, dtype=int)
    bits[rng.choice(6, size=k, replace=False)] = 1
    return tuple(int(b) for b in bits)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _upsample_rows(field: np.ndarray, size: int, factor: int) -> np.ndarray:
    """Linear interpolation along axis 0: output row i reads coarse position i / factor."""
    position = np.arange(size, dtype=np.float32) / factor
    index = position.astype(np.int64)
    weight = (position - index)[:, None]
    return field[index] * (1.0 - weight) + field[index + 1] * weight


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Low-frequency noise of unit standard deviation (smoothed on a coarse grid, then upsampled)."""
    factor = max(1, int(sigma // 2))
    coarse = -(-size // factor) + 1
    field = gaussian_filter(rng.standard_normal((coarse, coarse), dtype=np.float32), sigma / factor)
    if factor == 1:
        field = field[:size, :size]
    else:
        field = _upsample_rows(_upsample_rows(field, size, factor).T, size, factor).T
    return field / (field.std() + 1e-6)


def _lungs(rng: np.random.Generator) -> tuple[_Lung, _Lung]:
    scale = rng.uniform(0.94, 1.05)
    shift_x, shift_y = rng.uniform(-0.025, 0.025, size=2)
    return tuple(
        _Lung(
            cx=cx + shift_x + rng.uniform(-0.01, 0.01),
            cy=LUNG_CY + shift_y + rng.uniform(-0.01, 0.01),
            ax=LUNG_AX * scale * rng.uniform(0.95, 1.05),
            ay=LUNG_AY * scale * rng.uniform(0.95, 1.05),
        )
        for cx in LUNG_CX
    )


def _lung_width(lung: _Lung, v):
    """Half width of the lung at height v: narrow apex, wide base."""
    return lung.ax * (0.75 + 0.35 * np.clip((v - lung.cy + lung.ay) / (2.0 * lung.ay), 0.0, 1.0))


def _lung_alpha(lung: _Lung, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 inside the lung field, 0 outside, with a soft edge."""
    r = np.sqrt(((u - lung.cx) / _lung_width(lung, v)) ** 2 + ((v - lung.cy) / lung.ay) ** 2)
    return _sigmoid((1.0 - r) / 0.04)


def _band_limits(lung: _Lung, level: int) -> tuple[float, float]:
    """Top and bottom (image fractions) of one vertical third of a lung (0 upper .. 2 lower)."""
    third = 2.0 * lung.ay / 3.0
    top = lung.cy - lung.ay + level * third
    bottom = top + third
    if level == 0:
        top -= 0.1  # the upper band runs past the lung apex
    if level == 2:
        bottom += 0.1  # the lower band runs past the base
    return top, bottom


def _band_window(lung: _Lung, level: int, v: np.ndarray, softness: float = 0.012) -> np.ndarray:
    """Soft 0..1 window of one vertical third of a lung."""
    top, bottom = _band_limits(lung, level)
    return _sigmoid((v - top) / softness) * _sigmoid((bottom - v) / softness)


def _levels_box(lung: _Lung, levels: list[int], size: int) -> tuple[slice, slice]:
    """Rows and columns outside which the field of these levels is below 1e-3 (band, lung edge)."""
    top = _band_limits(lung, min(levels))[0]
    bottom = _band_limits(lung, max(levels))[1]
    rows = (max(0, int((top - 0.09) * size)), min(size, int((bottom + 0.09) * size) + 1))
    cols = (
        max(0, int((lung.cx - 1.5 * lung.ax) * size)),
        min(size, int((lung.cx + 1.5 * lung.ax) * size) + 1),
    )
    return slice(*rows), slice(*cols)


def _gauss(x: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _opacity(rng: np.random.Generator, lung: _Lung, level: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A lesion-like field in [0, 1]: 1-3 blobs centred in the zone, combined as a soft OR."""
    third = 2.0 * lung.ay / 3.0
    centre_y = lung.cy - lung.ay + (level + 0.5) * third + rng.uniform(-0.3, 0.3) * third
    dy = (centre_y - lung.cy) / lung.ay
    half_width = 0.6 * _lung_width(lung, centre_y) * np.sqrt(max(0.0, 1.0 - dy * dy))
    centre_x = lung.cx + rng.uniform(-half_width, half_width)
    missing = np.ones((v.shape[0], u.shape[1]), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        bx = centre_x + rng.uniform(-0.3, 0.3) * lung.ax
        by = centre_y + rng.uniform(-0.15, 0.15) * third
        sx, sy = rng.uniform(0.3, 0.6) * lung.ax, rng.uniform(0.22, 0.42) * third
        missing *= 1.0 - _gauss(u, bx, sx) * _gauss(v, by, sy)
    # keep the centre itself fully opaque so that every named zone has mask pixels
    centre = _gauss(u, centre_x, 0.2 * lung.ax) * _gauss(v, centre_y, 0.15 * third)
    return 1.0 - missing * (1.0 - centre)


def _side_field(rng, lung: _Lung, levels: list[int], alpha: np.ndarray, u, v):
    """Lesion-like opacity in the given levels of one lung, zero (< 0.5) outside their bands.

    The opacities of all levels are joined before the window of the union of their bands is
    applied, so a lesion crosses the border between two named levels without a gap. Computed
    inside the levels' box only; returns (field inside the lung, the lung's alpha there, box).
    """
    rows, cols = _levels_box(lung, levels, v.shape[0])
    missing = np.ones((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float32)
    window = np.zeros((rows.stop - rows.start, 1), dtype=np.float32)
    for level in levels:
        missing *= 1.0 - _opacity(rng, lung, level, u[:, cols], v[rows])
        window += _band_window(lung, level, v[rows])
    return (1.0 - missing) * window, alpha[rows, cols], (rows, cols)


def _visible(field: np.ndarray) -> np.ndarray:
    """Smoothstep of the field over [0.2, 0.8]: the opacity's visible edge sits at the mask's (0.5)."""
    t = np.clip((field - 0.2) / 0.6, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def render_sample(
    rng: np.random.Generator, label: tuple[int, ...], distractor_zones: tuple[int, ...], image_size: int
) -> SyntheticSample:
    """One image, its mask (lesions in the label's zones only) and the zone bands."""
    if any(label[z] for z in distractor_zones):
        raise ValueError("a distractor must lie in a zone the label does not name")
    s = image_size
    coords = (np.arange(s, dtype=np.float32) + 0.5) / s
    u, v = coords[None, :], coords[:, None]  # u: column (x) as a row, v: row (y) as a column
    lungs = _lungs(rng)
    alphas = [_lung_alpha(lung, u, v) for lung in lungs]

    torso = _sigmoid((1.0 - np.sqrt(((u - 0.5) / 0.56) ** 2 + ((v - 0.72) / 0.75) ** 2)) / 0.05)
    body = 55.0 + torso * (125.0 + 35.0 * v + 8.0 * _smooth_noise(rng, s, s / 12))
    heart = _sigmoid((1.0 - np.sqrt(((u - 0.57) / 0.15) ** 2 + ((v - 0.68) / 0.12) ** 2)) / 0.08)
    lung_alpha = np.maximum(alphas[0], alphas[1]) * (1.0 - 0.4 * heart)
    ribs = np.sin(2.0 * np.pi * (v * rng.uniform(6.5, 8.0) + 1.5 * (u - 0.5) ** 2 + rng.uniform(0, 1)))
    lung_tone = rng.uniform(75.0, 100.0) + 5.0 * ribs + 5.0 * _smooth_noise(rng, s, s / 70)
    image = body * (1.0 - lung_alpha) + lung_tone * lung_alpha

    texture = 1.0 + 0.15 * _smooth_noise(rng, s, s / 25)
    lesion = np.zeros((s, s), dtype=np.float32)
    image = np.ascontiguousarray(image, dtype=np.float32)
    for side in range(2):
        levels = [level for level in range(3) if label[3 * side + level]]
        if levels:
            field, alpha, box = _side_field(rng, lungs[side], levels, alphas[side], u, v)
            lesion[box] = np.maximum(lesion[box], field * alpha)
            image[box] += rng.uniform(55.0, 85.0) * _visible(field) * alpha * texture[box]
    for zone in distractor_zones:
        field, alpha, box = _side_field(rng, lungs[zone // 3], [zone % 3], alphas[zone // 3], u, v)
        image[box] += rng.uniform(55.0, 85.0) * _visible(field) * alpha * texture[box]

    contrast, brightness = rng.uniform(0.9, 1.1), rng.uniform(-10.0, 10.0)
    image = gaussian_filter(image, 0.8) * contrast + (128.0 * (1.0 - contrast) + brightness)
    image = image + rng.normal(0.0, 4.0, size=(s, s)).astype(np.float32)
    bands = np.stack(
        [(_band_window(lungs[z // 3], z % 3, v) >= 0.5) & (alphas[z // 3] >= 0.5) for z in range(6)]
    )
    return SyntheticSample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=np.where(lesion >= 0.5, 255, 0).astype(np.uint8),
        label=label,
        distractor_zones=distractor_zones,
        zone_bands=bands,
    )


def _png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array, mode="L").save(path, format="PNG", compress_level=1)


def _write_split(root: Path, split: str, first_index: int, size: int, seed: int, image_size: int):
    """Render and write one split; returns its annotation entries and distractor zones by name."""
    image_dir = root / "images" / split / "images"
    mask_dir = root / "images" / split / "masks"
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    with_distractor = set(
        np.random.default_rng([seed, 1, SPLITS.index(split)]).permutation(size)[
            : int(size * DISTRACTOR_SHARE)
        ]
    )
    entries, distractors = [], {}
    for offset in range(size):
        name = f"synth_{first_index + offset:05d}"
        rng = np.random.default_rng([seed, 0, first_index + offset])
        label = draw_label(rng)
        free = [z for z in range(6) if not label[z]]
        zones = (int(rng.choice(free)),) if offset in with_distractor else ()
        sample = render_sample(rng, label, zones, image_size)
        _png(sample.image, image_dir / f"{name}.png")
        _png(sample.mask, mask_dir / f"mask_{name}.png")
        entries.append(
            {
                "image_path": f"mask_{name}.png",
                "caption": compose_caption(label),
                "pulmonary_infection": int(any(label[:3])) + int(any(label[3:])),
                "infected_area": sum(label),
                "pseudo_label": list(label),
            }
        )
        if zones:
            distractors[name] = list(zones)
    return entries, distractors


def _readme(meta: dict) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
    with_d = ", ".join(f"{k} {v}" for k, v in meta["images_with_distractors"].items())
    return (
        "# Synthetic chest-like referring segmentation data (medref)\n\n"
        f"Generated by `medref data synth` (generator version {meta['generator_version']}), "
        f"seed {meta['seed']}, n {meta['n']}, images {meta['image_size']}x{meta['image_size']}.\n\n"
        f"Splits: {sizes}. Layout and annotation schema: the QaTa-COV19 refined release.\n"
        "Captions name the lesion zones (left/right = the image's sides); masks cover exactly those lesions.\n"
        f"Images with one distractor opacity in an unnamed zone (not in the mask): {with_d}; "
        "their zones are listed in meta.json.\n"
        "Not real patient data: for tests, demos and smoke runs only.\n"
    )


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MedrefError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MedrefError(f"output folder {out} is not empty; use --force to replace it")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto `out`; an old folder is moved aside first, then deleted."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # replaces the empty placeholder folder
    os.replace(tmp, out)  # also replaces an empty `out`
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_synthetic_dataset(out: Path, n: int, seed: int, image_size: int = 224, force: bool = False) -> Path:
    """Write the synthetic data set (module doc) to `out` atomically; returns `out`.

    Refuses a non-empty `out` unless `force` (then it is replaced as a whole at the end).
    """
    out = Path(out)
    sizes = split_sizes(n)
    if image_size < 32:
        raise MedrefError(f"image_size must be at least 32, got {image_size}")
    _check_output(out, force)
    try:
        with new_folders(out.parent):
            _write_dataset(out, n, seed, image_size, sizes)
    except OSError as exc:
        raise MedrefError(f"cannot write the synthetic data set to {out}: {exc.strerror or exc}") from None
    return out


def _write_dataset(out: Path, n: int, seed: int, image_size: int, sizes: dict[str, int]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        annotation, distractors, first = {}, {}, 0
        for split in SPLITS:
            annotation[split], split_distractors = _write_split(
                tmp, split, first, sizes[split], seed, image_size
            )
            distractors.update(split_distractors)
            first += sizes[split]
        meta = {
            "generator": "medref_cli.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "n": n,
            "image_size": image_size,
            "laterality": "image",
            "splits": sizes,
            "distractor_share": DISTRACTOR_SHARE,
            "distractors_per_image": 1,
            "images_with_distractors": {k: int(sizes[k] * DISTRACTOR_SHARE) for k in SPLITS},
            "distractor_zones": distractors,
        }
        (tmp / "prompts").mkdir()
        (tmp / "prompts" / "annotation.json").write_text(json.dumps(annotation, indent=1) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        (tmp / "README.md").write_text(_readme(meta))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
