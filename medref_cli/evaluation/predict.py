"""`medref predict`: segment what a caption describes in one image or a folder of images.

For each (image, caption) pair the model of a recorded run (or a checkpoint file) writes
`<stem>_mask.png` (mode L, 0/255, the image's own size) and `<stem>_overlay.png` (the image
with the mask's outline and a translucent fill, the caption in a band underneath).

Pipeline per image: decode to 8-bit grayscale -> bilinear resize to the model's
`data.image_size` -> the evaluation preprocessing (to [0, 1], per-image standardisation) ->
sigmoid of the logits -> bilinear resize of the probability map back to the original size ->
foreground where probability > threshold (the metrics' rule).

Every input is checked (files exist and decode, captions are not empty, --out is writable)
before anything is written; outputs go to temporary files that are renamed only once every
pair has been rendered, so a failure leaves no partial output. Nothing is recorded in the
ledger: a prediction is not an experiment.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from medref_cli.data.decode import DecodeError, decode_gray, resize_image
from medref_cli.data.reader_paths import clean_name, is_blank, resolve_image
from medref_cli.data.views import to_unit
from medref_cli.errors import MedrefError
from medref_cli.evaluation.evaluate_run import LoadedModel
from medref_cli.evaluation.overlay import render_overlay
from medref_cli.models.text_cache import TextFeatureCache
from medref_cli.runtime.batches import model_input
from medref_cli.runtime.metrics import binarize
from medref_cli.runtime.precision import autocast
from medref_cli.text.positions import zones_named

# caption table columns: (image column, caption column), first match wins
CAPTION_COLUMNS = (("image", "caption"), ("Image", "Description"))


@dataclass(frozen=True)
class PredictItem:
    where: str  # how errors name this input: "--image x.png" or "captions.csv row 3"
    image: Path
    caption: str
    stem: str  # output names: <stem>_mask.png, <stem>_overlay.png


@dataclass(frozen=True)
class PreparedImage:
    item: PredictItem
    model_size: np.ndarray  # (S, S) uint8, the model's input before normalisation
    height: int
    width: int


@dataclass(frozen=True)
class WrittenPair:
    image: Path
    caption: str
    mask: Path
    overlay: Path
    foreground: float  # share of the image's pixels predicted foreground

    def as_dict(self) -> dict:
        return {"image": str(self.image), "caption": self.caption, "mask": str(self.mask),
                "overlay": str(self.overlay), "foreground": self.foreground}


def single_item(image: Path, caption: str) -> PredictItem:
    """The one pair of `--image X --text "..."`."""
    if is_blank(caption):
        raise MedrefError("--text is empty: give the caption whose region to segment")
    if not image.is_file():
        raise MedrefError(f"--image {image}: file not found")
    return PredictItem(f"--image {image}", image, caption.strip(), image.stem)


def read_caption_table(table: Path, images_dir: Path) -> list[PredictItem]:
    """Rows of a CSV with columns image,caption (or Image,Description), images under `images_dir`.

    Every row is checked; the first problem is raised as one line naming its row (spreadsheet
    numbering: the header is row 1). Rows that share an image stem get `_row<N>` in their names.
    """
    if not images_dir.is_dir():
        raise MedrefError(f"--images {images_dir}: not a folder")
    rows, (image_column, caption_column) = _read_csv(table)
    if not rows:
        raise MedrefError(f"{table.name}: no data rows")
    items, problems = [], []
    for number, cells in rows:
        where = f"{table.name} row {number}"
        try:
            items.append(_table_item(where, cells.get(image_column), cells.get(caption_column), images_dir,
                                     image_column == "Image"))
        except MedrefError as exc:
            problems.append(str(exc))
    _raise_first(problems, "bad rows")
    return _unique_stems(items, [number for number, _ in rows])


def _read_csv(table: Path) -> tuple[list[tuple[int, dict]], tuple[str, str]]:
    try:
        with table.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [(name or "").strip() for name in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(index + 2, cells) for index, cells in enumerate(reader)]
    except FileNotFoundError:
        raise MedrefError(f"--captions {table}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedrefError(f"--captions {table}: cannot read the CSV ({type(exc).__name__}: {exc})") from None
    for columns in CAPTION_COLUMNS:
        if all(c in header for c in columns):
            return rows, columns
    wanted = " or ".join(",".join(c) for c in CAPTION_COLUMNS)
    raise MedrefError(f"{table.name}: needs columns {wanted}; found: {','.join(header) or 'none'}")


def _table_item(where: str, name: object, caption: object, images_dir: Path, mask_named: bool) -> PredictItem:
    if is_blank(name):
        raise MedrefError(f"{where}: no image name")
    if is_blank(caption):
        raise MedrefError(f"{where}: empty caption")
    if mask_named:  # MMI-UNet tables name the mask file; the image is that name without `mask_`
        path = resolve_image(images_dir, clean_name(name))
    else:
        candidate = images_dir / str(name).strip()
        path = candidate if candidate.is_file() else None
    if path is None:
        raise MedrefError(f"{where}: image '{str(name).strip()}' not found in {images_dir}")
    return PredictItem(where, path, str(caption).strip(), path.stem)


def _unique_stems(items: list[PredictItem], row_numbers: list[int]) -> list[PredictItem]:
    counts = Counter(item.stem for item in items)
    return [
        item if counts[item.stem] == 1 else PredictItem(item.where, item.image, item.caption, f"{item.stem}_row{n}")
        for item, n in zip(items, row_numbers, strict=True)
    ]


def decode_item(item: PredictItem) -> np.ndarray:
    """The item's image as (H, W) uint8; a corrupt file is one line naming the input."""
    try:
        return decode_gray(item.image)
    except DecodeError as exc:
        raise MedrefError(f"{item.where}: {exc}") from None


def prepare_images(items: list[PredictItem], image_size: int) -> list[PreparedImage]:
    """Decode every input once (all are checked before any output exists), kept at model size."""
    prepared, problems = [], []
    for item in items:
        try:
            image = decode_item(item)
        except MedrefError as exc:
            problems.append(str(exc))
            continue
        prepared.append(PreparedImage(item, resize_image(image, image_size), *image.shape))
    _raise_first(problems, "unreadable images")
    return prepared


def _raise_first(problems: list[str], what: str) -> None:
    """One line for all the problems found: the first, and how many more."""
    if problems:
        raise MedrefError(problems[0] + (f" (and {len(problems) - 1} more {what})" if len(problems) > 1 else ""))


@torch.inference_mode()
def predict_probabilities(loaded: LoadedModel, cache: TextFeatureCache, images: np.ndarray,
                          captions: list[str], device: torch.device) -> torch.Tensor:
    """(B, S, S) uint8 images + captions -> (B, 1, S, S) float32 sigmoid probabilities, as evaluate does."""
    batch = torch.from_numpy(images).unsqueeze(1).to(device)
    text = cache.encode(captions)
    if getattr(loaded.model, "takes_positions", False):  # ISPG: the positions the caption names
        text = text.with_positions(torch.tensor([zones_named(c) for c in captions], dtype=torch.float32))
    with autocast(device, loaded.cfg.runtime.amp):
        logits = loaded.model(model_input(to_unit(batch), False), text).logits
    return torch.sigmoid(logits.float())


def probabilities_at(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """One (1, S, S) probability map -> (height, width), bilinear (identity at the same size)."""
    if probs.shape[-2:] == (height, width):
        return probs[0]
    resized = F.interpolate(probs.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False,
                            antialias=True)
    return resized[0, 0]


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise MedrefError(f"--threshold must lie in (0, 1), got {threshold:g}")


def mask_image(probs: torch.Tensor, threshold: float) -> np.ndarray:
    """(H, W) probabilities -> (H, W) uint8 mask in {0, 255}."""
    return binarize(probs, threshold).cpu().numpy().astype(np.uint8) * 255


@contextmanager
def output_folder(out: Path) -> Iterator[Path]:
    """Create `out` (checked writable); folders it created are removed again if the block fails."""
    if out.exists() and not out.is_dir():
        raise MedrefError(f"--out {out}: exists and is not a folder")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".medref-probe.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        _remove_empty(created)
        raise MedrefError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    try:
        yield out
    except BaseException:
        _remove_empty(created)
        raise


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


class StagedFiles:
    """PNGs written to hidden temporary files, renamed into place together by `commit`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pending: list[tuple[Path, Path]] = []
        umask = os.umask(0)
        os.umask(umask)
        self.mode = 0o666 & ~umask  # what open() would give; mkstemp makes files private

    def add(self, image: Image.Image, name: str) -> Path:
        final = self.out / name
        fd, tmp = tempfile.mkstemp(dir=self.out, prefix=f".{name}.", suffix=".tmp")
        self.pending.append((Path(tmp), final))
        try:
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, format="PNG")
            os.chmod(tmp, self.mode)
        except OSError as exc:
            raise MedrefError(f"cannot write {final}: {exc.strerror or exc}") from None
        return final

    def commit(self) -> None:
        for tmp, final in self.pending:
            os.replace(tmp, final)
        self.pending = []

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending = []


def predict_items(loaded: LoadedModel, cache: TextFeatureCache, items: list[PredictItem], out: Path,
                  device: torch.device, threshold: float, batch_size: int) -> list[WrittenPair]:
    """Check every input, predict in batches, write all pairs or none."""
    check_threshold(threshold)
    if batch_size < 1:
        raise MedrefError(f"--batch-size must be >= 1, got {batch_size}")
    prepared = prepare_images(items, loaded.cfg.data.image_size)
    with output_folder(out):
        staged = StagedFiles(out)
        try:
            written = []
            for start in range(0, len(prepared), batch_size):
                chunk = prepared[start : start + batch_size]
                probs = predict_probabilities(loaded, cache, np.stack([p.model_size for p in chunk]),
                                              [p.item.caption for p in chunk], device)
                written += [_write_pair(staged, p, probs[i], threshold) for i, p in enumerate(chunk)]
            staged.commit()
        except BaseException:
            staged.discard()
            raise
    return written


def _write_pair(staged: StagedFiles, prepared: PreparedImage, probs: torch.Tensor, threshold: float) -> WrittenPair:
    item = prepared.item
    mask = mask_image(probabilities_at(probs, prepared.height, prepared.width), threshold)
    image = decode_item(item)
    if image.shape != mask.shape:
        raise MedrefError(f"{item.where}: {item.image} changed while predicting; run again")
    mask_path = staged.add(Image.fromarray(mask, "L"), f"{item.stem}_mask.png")
    overlay_path = staged.add(render_overlay(image, mask, item.caption), f"{item.stem}_overlay.png")
    return WrittenPair(item.image, item.caption, mask_path, overlay_path, float((mask > 0).mean()))


@dataclass(frozen=True)
class PredictOutcome:
    source: str  # "run 7" or the checkpoint path
    threshold: float
    pairs: list[WrittenPair]


def collect_items(image: Path | None, text: str | None, images_dir: Path | None,
                  captions: Path | None) -> list[PredictItem]:
    """--image/--text (one pair) or --images/--captions (a folder), never a mix."""
    single, folder = (image, text), (images_dir, captions)
    if any(v is not None for v in single) and any(v is not None for v in folder):
        raise MedrefError("give either --image with --text, or --images with --captions, not both")
    if image is not None or text is not None:
        if image is None or text is None:
            raise MedrefError("--image and --text go together: the image and the caption to segment")
        return [single_item(image, text)]
    if images_dir is None or captions is None:
        raise MedrefError("give --image X.png --text \"...\", or --images DIR --captions CSV")
    return read_caption_table(captions, images_dir)


def predict_recorded(ledger_url: str, run_id: int | None, checkpoint: Path | None, items: list[PredictItem],
                     out: Path, device_spec: str, threshold: float | None = None,
                     batch_size: int | None = None) -> PredictOutcome:
    """Load a run's sha256-verified checkpoint (or a checkpoint file) and predict every item."""
    from medref_cli.runtime.device import resolve_device

    if (run_id is None) == (checkpoint is None):
        raise MedrefError("give either --run RUN_ID or --checkpoint PATH")
    if threshold is not None:
        check_threshold(threshold)
    device = resolve_device(device_spec)
    with output_folder(out):  # an unwritable --out fails before the model is loaded
        loaded, cache = _load(ledger_url, run_id, checkpoint, device)
        cut = loaded.cfg.eval.threshold if threshold is None else threshold
        pairs = predict_items(loaded, cache, items, out, device, cut, batch_size or loaded.cfg.train.batch_size)
    return PredictOutcome(f"run {run_id}" if run_id is not None else str(checkpoint), cut, pairs)


def _load(ledger_url: str, run_id: int | None, checkpoint: Path | None,
          device: torch.device) -> tuple[LoadedModel, TextFeatureCache]:
    from medref_cli.evaluation.evaluate_run import checkpoint_of_run, load_model
    from medref_cli.ledger import open_ledger
    from medref_cli.runtime.build import build_text

    if run_id is not None:
        ledger = open_ledger(ledger_url, create=False)
        try:
            path, sha = checkpoint_of_run(ledger, run_id)
        finally:
            ledger.dispose()
    else:
        path, sha = checkpoint, None
    loaded = load_model(Path(path), sha, device, run_id)
    _, cache = build_text(loaded.cfg, device, loaded.weights or {})
    if cache.encoder.dim != loaded.model.text_dim:
        raise MedrefError(f"text encoder {loaded.cfg.model.text_encoder} is {cache.encoder.dim} wide, the model "
                          f"expects {loaded.model.text_dim}")
    return loaded, cache
