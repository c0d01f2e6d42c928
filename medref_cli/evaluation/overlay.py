"""The overlay a prediction is shown with: the image, the mask's outline and a translucent fill,
and the caption wrapped into a band under the image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUTLINE_RGB = (255, 48, 48)
FILL_ALPHA = 0.35
BAND_RGB = (0, 0, 0)
TEXT_RGB = (255, 255, 255)


def mask_outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Bool (H, W): foreground pixels within `thickness` steps (4-neighbour) of the background or border."""
    inner = mask > 0
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return (mask > 0) & ~inner


def caption_font(width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(10, width // 28))


def wrap_caption(caption: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a word wider than a line is broken between characters."""
    lines: list[str] = []
    current = ""
    for word in caption.split():
        for piece in _word_pieces(word, font, width):
            candidate = f"{current} {piece}" if current else piece
            if current and font.getlength(candidate) > width:
                lines.append(current)
                current = piece
            else:
                current = candidate
    if current:
        lines.append(current)
    return lines


def _word_pieces(word: str, font, width: int) -> list[str]:
    if font.getlength(word) <= width:
        return [word]
    pieces, piece = [], ""
    for char in word:
        if piece and font.getlength(piece + char) > width:
            pieces.append(piece)
            piece = char
        else:
            piece += char
    return pieces + [piece]


def render_overlay(image: np.ndarray, mask: np.ndarray, caption: str) -> Image.Image:
    """RGB: the image with the mask's translucent fill and outline, the caption in a band below."""
    height, width = image.shape
    rgb = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    colour = np.array(OUTLINE_RGB, dtype=np.float32)
    fill = mask > 0
    rgb[fill] = (1 - FILL_ALPHA) * rgb[fill] + FILL_ALPHA * colour
    rgb[mask_outline(mask, max(1, min(height, width) // 150))] = colour
    font = caption_font(width)
    margin = max(2, width // 64)
    lines = wrap_caption(caption, font, width - 2 * margin)
    top, bottom = font.getbbox("Ag")[1::2]
    line_height = bottom - top + max(2, (bottom - top) // 3)
    canvas = Image.new("RGB", (width, height + 2 * margin + line_height * len(lines)), BAND_RGB)
    canvas.paste(Image.fromarray(rgb.round().astype(np.uint8), "RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(lines):
        draw.text((margin, height + margin + index * line_height - top), line, fill=TEXT_RGB, font=font)
    return canvas
