"""Working resolution, and bringing chroma computed there back to the target's full size in row strips,
so that memory beyond the output itself stays bounded however large the target is."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .lab import colorize_gray, rgb_to_lab

MIN_WORKING_SIDE = 32
STRIP_PIXELS = 1 << 18


def working_size(size: tuple[int, int], short_side: int, max_aspect: float = 4.0) -> tuple[int, int]:
    """(width, height) with the short side `short_side` (up or down), the long side at most `max_aspect`
    times that, and neither side below MIN_WORKING_SIDE (the networks' coarsest stride)."""
    width, height = size
    scale = short_side / min(width, height)
    long_cap = short_side * max_aspect
    new_w, new_h = width * scale, height * scale
    if max(new_w, new_h) > long_cap:
        factor = long_cap / max(new_w, new_h)
        new_w, new_h = new_w * factor, new_h * factor
    return max(MIN_WORKING_SIDE, round(new_w)), max(MIN_WORKING_SIDE, round(new_h))


def resize_matrix(n_in: int, n_out: int) -> sp.csr_matrix:
    """(n_out, n_in) linear resampling with a triangle filter on pixel centres: bilinear when enlarging,
    averaging over the footprint when reducing."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    taps = int(np.ceil(support)) * 2 + 1
    columns = np.floor(centres)[:, None].astype(np.int64) + np.arange(-(taps // 2), taps // 2 + 1)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(columns - centres[:, None]) / support)
    columns = np.clip(columns, 0, n_in - 1)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), columns.shape[1])
    return sp.csr_matrix((weights.ravel().astype(np.float32), (rows, columns.ravel())), shape=(n_out, n_in))


def resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample the first two axes of an (h, w) or (h, w, c) float array to (height, width)."""
    rows = resize_matrix(array.shape[0], height)
    columns = resize_matrix(array.shape[1], width)
    flat = array.reshape(array.shape[0], array.shape[1], -1)
    out = np.stack([rows @ (columns @ flat[:, :, c].T).T for c in range(flat.shape[2])], axis=-1)
    return out.reshape((height, width) + array.shape[2:]).astype(np.float32)


@dataclass
class FullSizeResult:
    rgb: np.ndarray
    confidence: np.ndarray
    source: np.ndarray


def compose_full_size(gray: np.ndarray, ab: np.ndarray, confidence: np.ndarray,
                      source: np.ndarray) -> FullSizeResult:
    """Upsample working-resolution chroma (h, w, 2), confidence (h, w) and source (h, w) to the (H, W)
    gray target, strip by strip, and put the chroma on the target's own gray levels."""
    height, width = gray.shape
    work_h, work_w = confidence.shape
    column_matrix = resize_matrix(work_w, width)
    # Columns first, once: (h, W, 3) at the working height stays small whatever the target's size.
    planes = np.concatenate([ab, confidence[..., None]], axis=-1).astype(np.float32)
    widened = np.stack([(column_matrix @ planes[:, :, c].T).T for c in range(3)], axis=-1).astype(np.float32)
    row_matrix = resize_matrix(work_h, height)
    source_columns = source[:, nearest_indices(work_w, width)]
    source_rows = nearest_indices(work_h, height)

    rgb = np.empty((height, width, 3), np.uint8)
    full_confidence = np.empty((height, width), np.float32)
    full_source = np.empty((height, width), np.int8)
    strip = max(1, STRIP_PIXELS // width)
    for top in range(0, height, strip):
        rows = slice(top, min(height, top + strip))
        block = row_matrix[rows] @ widened.reshape(work_h, -1)
        block = block.reshape(-1, width, 3)
        rgb[rows] = colorize_gray(gray[rows], block[..., :2])
        full_confidence[rows] = np.clip(block[..., 2], 0.0, 1.0)
        full_source[rows] = source_columns[source_rows[rows]]
    return FullSizeResult(rgb, full_confidence, full_source)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def scale_chroma(rgb: np.ndarray, gray: np.ndarray, factor: float,
                 strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """Scale the Lab chroma of an (H, W, 3) uint8 image whose luma is the (H, W) `gray` by `factor`, in
    place and in row strips (so memory stays bounded for huge images); the luma stays `gray` exactly."""
    height, width = gray.shape
    rows = max(1, strip_pixels // max(1, width))
    for top in range(0, height, rows):
        strip = slice(top, top + rows)
        rgb[strip] = colorize_gray(gray[strip], rgb_to_lab(rgb[strip])[..., 1:] * np.float32(factor))
    return rgb
