"""Per-cell luminance histograms and their correlation: the d_lum half of the local re-rank."""
from __future__ import annotations

import numpy as np
from PIL import Image


def cell_histograms(lum: Image.Image, grid: int = 7, bins: int = 10, short_side: int = 256,
                    border: int = 16) -> np.ndarray:
    """(grid*grid, bins) normalised histograms of L over a grid of cells, row-major.

    The image is resized so its short side is `short_side`, then `border` pixels are trimmed from each
    edge before it is cut into the grid; each cell's histogram sums to one.
    """
    width, height = lum.size
    scale = short_side / min(width, height)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    pixels = np.asarray(lum.resize(size, Image.BILINEAR) if size != lum.size else lum)
    if border:
        pixels = pixels[border:-border, border:-border]
    return histograms_of_pixels(pixels, grid, bins)


def histograms_of_pixels(pixels: np.ndarray, grid: int, bins: int) -> np.ndarray:
    height, width = pixels.shape
    row_cell = (np.arange(height) * grid) // height
    col_cell = (np.arange(width) * grid) // width
    cell = row_cell[:, None] * grid + col_cell[None, :]
    value_bin = (pixels.astype(np.int32) * bins) >> 8
    counts = np.bincount((cell * bins + value_bin).ravel(), minlength=grid * grid * bins)
    counts = counts.reshape(grid * grid, bins).astype(np.float32)
    return counts / counts.sum(axis=1, keepdims=True)


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of histograms along the last axis (OpenCV's HISTCMP_CORREL).

    Two histograms with no variance (flat) correlate as 1, as in OpenCV.
    """
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    numerator = (a * b).sum(axis=-1)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    flat = denominator <= np.finfo(np.float32).eps
    return np.where(flat, 1.0, numerator / np.where(flat, 1.0, denominator)).astype(np.float32)
