"""A contact sheet for a person to judge a colorization: the input, each reference with its score, the
result and its confidence map, side by side at one height, each with a caption."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import ColorizeResult

CAPTION_HEIGHT = 18
GAP = 4
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def contact_sheet(result: ColorizeResult, height: int = 192) -> Image.Image:
    # The result's luma is the input's, exactly, so the input needs no passing around.
    tiles = [(result.image.convert("L").convert("RGB"), "input")]
    for number, reference in enumerate(result.references, start=1):
        score = "" if reference.score is None else f" score {reference.score:.3f}"
        tiles.append((reference.image.convert("RGB"), f"ref {number}{score} {Path(reference.name).name}"))
    tiles.append((result.image, f"{result.method} ({result.seconds:.1f} s)"))
    confidence = Image.fromarray(np.round(result.confidence * 255).astype(np.uint8), "L")
    tiles.append((confidence.convert("RGB"), f"confidence, mean {float(result.confidence.mean()):.2f}"))

    scaled = [(_to_height(image, height), caption) for image, caption in tiles]
    width = sum(image.width for image, _ in scaled) + GAP * (len(scaled) + 1)
    sheet = Image.new("RGB", (width, height + CAPTION_HEIGHT + 2 * GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    left = GAP
    for image, caption in scaled:
        sheet.paste(image, (left, GAP))
        draw.text((left, GAP + height + 2), _fit(draw, caption, font, image.width), fill=TEXT, font=font)
        left += image.width + GAP
    return sheet


def _to_height(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.BILINEAR, reducing_gap=3.0)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """The caption, cut short with "..." where the tile is narrower than it."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""
