"""Decode image and mask files into 2-D uint8 arrays, the one way every part of medref does it.

- Images become 8-bit grayscale (colour images through PIL's luminance; 16-bit and float
  images are scaled into 0..255).
- Masks become {0, 1}: a mask whose largest value is 1 is taken as is (0/1 masks), any other
  mask is thresholded at 128 (0/255 masks; JPEG-like noise around 0 and 255 is tolerated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medref_cli.errors import MedrefError


class DecodeError(MedrefError):
    """An image or mask file that cannot be decoded (missing, truncated, not an image)."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _to_uint8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max(initial=0) > 255 else 255.0
        return np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8)
    if image.mode != "L":
        image = image.convert("L")
    return np.array(image, dtype=np.uint8)  # a writable copy


def decode_gray(path: str | Path) -> np.ndarray:
    """The file as an (H, W) uint8 array; raises DecodeError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return _to_uint8(image)
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not a valid image"
        reason = str(exc).replace(f"'{path}'", "the file").replace(str(path), "the file")
        raise DecodeError(path, reason or type(exc).__name__) from None


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W) uint8 in {0, 1} (see the module note for the rule)."""
    if mask.max(initial=0) <= 1:
        return (mask >= 1).astype(np.uint8)
    return (mask >= 128).astype(np.uint8)


def is_binary_mask(mask: np.ndarray) -> bool:
    """True when the mask holds only 0 and one foreground value, 1 or 255."""
    values = np.unique(mask)
    return bool(np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all())


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W) uint8 image to (size, size); a no-op at that size."""
    if image.shape == (size, size):
        return image
    return np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) {0, 1} mask to (size, size)."""
    if mask.shape == (size, size):
        return mask
    return np.array(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
