"""Edited copies of a photo, as people make them: cropped, shrunk, recompressed, gray, captioned."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont


def edited_copy(source: Path, destination: Path, *, crop: float = 0.0, scale: float = 1.0, quality: int = 90,
                gray: bool = False, caption: str = "", rotate: float = 0.0, brightness: float = 1.0) -> Path:
    """Write a copy of `source` with `crop` of each side cut off, turned by `rotate` degrees (cropped to
    keep no corner fill), re-lit by `brightness`, captioned, made gray, resized by `scale` and saved as a
    JPEG of `quality`."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    if crop:
        image = image.crop((round(width * crop), round(height * crop), round(width * (1 - crop)),
                            round(height * (1 - crop))))
    if rotate:
        inset = 0.1
        image = image.rotate(rotate, Image.BICUBIC)
        image = image.crop((round(image.width * inset), round(image.height * inset),
                            round(image.width * (1 - inset)), round(image.height * (1 - inset))))
    if brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    if caption:
        draw = ImageDraw.Draw(image)
        size = max(8, image.height // 10)
        draw.text((image.width * 0.05, image.height * 0.85), caption, font=ImageFont.load_default(size=size),
                  fill=(255, 255, 255), stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    if gray:
        image = image.convert("L")
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS)
    destination.parent.mkdir(parents=True, exist_ok=True)
    image.save(destination, "JPEG", quality=quality)
    return destination
