"""Finding image files and decoding them, whatever their mode, into RGB or luminance."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidArgumentError, RefsearchError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# The most pixels decoded from one image (a JPEG counts at the reduced scale it is decoded at): beyond it
# an image is refused, so that a tiny file claiming a huge size cannot exhaust memory. One limit for the
# command line, the Python API and the server; `pixel_limit` and `--max-pixels` change it.
DEFAULT_MAX_PIXELS = 50_000_000
_max_pixels = DEFAULT_MAX_PIXELS
_EXIF_ORIENTATION = 0x0112
# Pillow's own bomb check (a DecompressionBombWarning on stderr from 89 megapixels, an error from 179)
# would judge a JPEG by its full size before we can decode it reduced, and speak of "DOS attacks" about
# holiday photos; the pixel limit above replaces it. The setting is Pillow's, so it holds for the whole process.
Image.MAX_IMAGE_PIXELS = None

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageError(RefsearchError, ValueError):
    """An image that cannot be used: `source` names it, `reason` says why in words."""

    def __init__(self, source: object, reason: str, hint: str = ""):
        super().__init__(f"{source}: {reason}", hint)
        self.source = str(source)
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.source, self.reason, self.hint)


@dataclass(frozen=True)
class ImageFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class UnusableEntry:
    """Something named like an image that cannot be read as one (a folder, a broken link, a FIFO ...),
    with the reason in words. `size` and `mtime_ns` are the entry's own (not followed through a link),
    as for ImageFile, so that a later scan can tell whether it changed."""

    path: Path
    reason: str
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class ImageScan:
    """What `scan_images` found: the image files to decode, and the entries named like images that are not
    usable files (in the order the walk met them)."""

    files: list[ImageFile]
    unusable: list[UnusableEntry]


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image (mode RGB or L, EXIF orientation applied), possibly decoded at reduced scale;
    `original_size` is the full (width, height); `digest` hashes the file's bytes when it came from a file."""

    image: Image.Image
    original_size: tuple[int, int]
    digest: str | None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(root: str | os.PathLike) -> list[ImageFile]:
    """Every image file under root (recursively, sorted), skipping hidden folders and index folders."""
    return scan_images(root).files


def scan_images(root: str | os.PathLike) -> ImageScan:
    """Walk root as `find_images` does, and also report what is named like an image but is no file to
    decode: a folder (whose contents are still searched), a link to a folder (not followed), a broken or
    looping link, a FIFO, socket or device. Paths are absolute, with the folders' links resolved (an
    ImageFile's link is resolved too; an unusable entry's is not: it is what the folder holds)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: expected a folder of images, got a file")
    files: list[ImageFile] = []
    unusable: list[UnusableEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath).resolve()
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.endswith(".index"))
        for name in sorted([*dirnames, *filenames]):
            path = folder / name
            if not is_image_path(path):
                continue
            found = _examine(path)
            if isinstance(found, ImageFile):
                files.append(found)
            elif found is not None:
                unusable.append(found)
    return ImageScan(files, unusable)


def _examine(path: Path) -> ImageFile | UnusableEntry | None:
    try:
        own = path.lstat()
    except FileNotFoundError:
        return None  # deleted between listing the folder and looking at it: nothing to report
    except OSError as exc:
        return UnusableEntry(path, f"cannot read: {exc.strerror or exc}")

    def unusable(reason: str) -> UnusableEntry:
        return UnusableEntry(path, reason, own.st_size, own.st_mtime_ns)

    try:
        target = path.stat()
    except FileNotFoundError:
        return unusable(f"a broken link (to {os.readlink(path)}, which does not exist)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return unusable("a link that loops back on itself")
        return unusable(f"cannot read: {exc.strerror or exc}")
    if stat.S_ISDIR(target.st_mode):
        return unusable("a link to a folder, not an image file" if stat.S_ISLNK(own.st_mode)
                        else "a folder, not an image file")
    if not stat.S_ISREG(target.st_mode):
        return unusable("not a regular file (a FIFO, socket or device)")
    return ImageFile(path.resolve(), target.st_size, target.st_mtime_ns)


def file_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode(source: ImageSource, *, min_short_side: int | None = None,
           luminance: bool = False) -> DecodedImage:
    """Decode an image from a path, a PIL image or an array into mode RGB or L.

    With `min_short_side`, JPEGs decode at the smallest DCT scale whose short side is still at least
    that large, which is several times faster for big photos. With `luminance`, the result is mode L,
    and a colour JPEG decodes only its luma plane (JPEG's Y is ITU-R 601 luma, what convert("L")
    computes), skipping the colour conversion. Raises ImageError with a reason for anything unusable:
    missing, empty, not an image, truncated, unsupported mode, too large.
    """
    if isinstance(source, Image.Image):
        if source.width * source.height > _max_pixels:
            raise _too_large("image", *source.size)
        decoded = DecodedImage(_to_rgb_or_l(source, "image"), source.size, None)
    elif isinstance(source, np.ndarray):
        if source.ndim >= 2 and source.shape[0] * source.shape[1] > _max_pixels:
            raise _too_large("array", source.shape[1], source.shape[0])
        decoded = DecodedImage(_from_array(source), (source.shape[1], source.shape[0]), None)
    else:
        decoded = _decode_file(Path(source), min_short_side, luminance)
    return replace(decoded, image=to_luminance(decoded.image)) if luminance else decoded


def max_pixels() -> int:
    """The most pixels decoded from one image now."""
    return _max_pixels


@contextmanager
def pixel_limit(pixels: int) -> Iterator[None]:
    """Decode images of up to `pixels` pixels (instead of `max_pixels()`) inside the block."""
    global _max_pixels
    if pixels < 1:
        raise InvalidArgumentError(f"the pixel limit must be at least 1, got {pixels}")
    previous, _max_pixels = _max_pixels, int(pixels)
    try:
        yield
    finally:
        _max_pixels = previous


def _too_large(source: object, width: int, height: int) -> ImageError:
    return ImageError(source, f"{width}x{height} is {width * height / 1e6:.3g} megapixels, over the limit of "
                      f"{_max_pixels / 1e6:.3g} megapixels", "scale it down first, or raise the limit with "
                      "--max-pixels")


def _decode_file(path: Path, min_short_side: int | None, luminance: bool) -> DecodedImage:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise ImageError(path, "empty file")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError:  # only if Image.MAX_IMAGE_PIXELS was set again after our import
        raise ImageError(path, "too large for Pillow's pixel limit (Image.MAX_IMAGE_PIXELS)") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageError(path, f"unreadable image header ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(path, f"has no pixels ({width}x{height})")
    if image.format == "JPEG" and image.mode in ("RGB", "L", "YCbCr") and (min_short_side or luminance):
        scale = min(1.0, (min_short_side or min(width, height)) / min(width, height))
        image.draft("L" if luminance else image.mode,
                    (max(1, round(width * scale)), max(1, round(height * scale))))
    if image.width * image.height > _max_pixels:  # a JPEG counts at the scale chosen above
        raise _too_large(path, width, height)
    try:
        image.load()
    except Exception as exc:
        raise ImageError(path, f"truncated or corrupt image data ({exc})") from None
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(_to_rgb_or_l(image, path), (width, height), file_digest(data))


def _to_rgb_or_l(image: Image.Image, source: object) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        pass  # a broken EXIF block must not lose an otherwise good photo
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("1", "P", "PA", "LA", "RGBA", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        if mode == "P" and "transparency" in image.info or mode in ("PA", "LA", "La", "RGBA", "RGBa"):
            rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            flattened = Image.alpha_composite(white, rgba).convert("RGB")
            return flattened.convert("L") if mode in ("LA", "La") else flattened
        return image.convert("L" if mode == "1" else "RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image)), "L")
    raise ImageError(source, f"unsupported image mode {mode!r}")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    elif array.dtype.itemsize >= 2 and values.size and values.max() > 255:
        top = 65535.0
    else:
        top = 255.0
    return np.clip(np.nan_to_num(values) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        return Image.fromarray(_to_uint8(array), "L")
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        pixels = _to_uint8(array)
        if pixels.shape[2] == 1:
            return Image.fromarray(pixels[:, :, 0], "L")
        return _to_rgb_or_l(Image.fromarray(pixels, "RGB" if pixels.shape[2] == 3 else "RGBA"), "array")
    raise ImageError("array", f"expected HxW, HxWx3 or HxWx4, got shape {array.shape}")


def to_luminance(image: Image.Image) -> Image.Image:
    """Luma (ITU-R 601, as JPEG stores it) of an RGB or L image."""
    return image if image.mode == "L" else image.convert("L")


def is_grayscale(image: Image.Image, tolerance: int = 3) -> bool:
    if image.mode == "L":
        return True
    pixels = np.asarray(image.convert("RGB").reduce(4) if min(image.size) >= 8 else image.convert("RGB"))
    spread = pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2)
    return bool(np.percentile(spread, 99) <= tolerance)
