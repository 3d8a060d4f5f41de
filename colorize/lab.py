"""sRGB <-> CIE Lab (D65), and putting chroma onto a gray image without changing its gray levels.

"Keeping the target's L exactly" is taken at its strictest: the result, converted back to grayscale the
way the target was made (ITU-R 601 luma, as Pillow's convert("L") computes it), gives the target's pixels
back unchanged.
"""
from __future__ import annotations

import numpy as np

_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0
# Pillow's integer luma: (19595 R + 38470 G + 7471 B + 0x8000) >> 16; the weights sum to 65536, so adding
# the same integer to all three channels adds exactly that integer to the luma.
_LUMA_WEIGHTS = np.array([19595, 38470, 7471]) / 65536.0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.maximum(c, 0.0)
    return np.where(c <= 0.0031308, c * np.float32(12.92),
                    np.float32(1.055) * np.power(c, np.float32(1 / 2.4)) - np.float32(0.055))


def _f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _DELTA ** 3, np.cbrt(t), t / (3 * _DELTA ** 2) + 4.0 / 29.0)


def _f_inverse(t: np.ndarray) -> np.ndarray:
    return np.where(t > _DELTA, t * t * t, np.float32(3 * _DELTA ** 2) * (t - np.float32(4.0 / 29.0)))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or 0-255 floats -> (..., 3) float32 L in [0, 100], a and b roughly in [-128, 127]."""
    xyz = _srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0) @ _RGB_TO_XYZ.T / _WHITE
    fx, fy, fz = np.moveaxis(_f(xyz), -1, 0)
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) Lab -> (..., 3) float32 sRGB on the 0-255 scale, not clipped (out-of-gamut values stay)."""
    lab = np.asarray(lab, dtype=np.float32)
    fy = (lab[..., 0] + np.float32(16.0)) / np.float32(116.0)
    f = np.stack([fy + lab[..., 1] / np.float32(500.0), fy, fy - lab[..., 2] / np.float32(200.0)], axis=-1)
    linear = _f_inverse(f) @ (_XYZ_TO_RGB * _WHITE).T.astype(np.float32)
    return np.float32(255.0) * np.sign(linear) * _linear_to_srgb(np.abs(linear))


def gray_lightness(gray: np.ndarray) -> np.ndarray:
    """Lab L of each gray level (R = G = B = gray), as float32."""
    return _GRAY_TO_L[np.asarray(gray, dtype=np.uint8)]


def luma(rgb: np.ndarray) -> np.ndarray:
    """Pillow's convert("L") of a (..., 3) uint8 array."""
    total = rgb[..., 0] * np.uint32(19595) + rgb[..., 1] * np.uint32(38470) + rgb[..., 2] * np.uint32(7471)
    return ((total + np.uint32(0x8000)) >> np.uint32(16)).astype(np.uint8)


def colorize_gray(gray: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Give the (H, W) uint8 gray image the (H, W, 2) Lab chroma `ab`; returns (H, W, 3) uint8 whose luma
    equals `gray` exactly. Colours outside the sRGB gamut keep their hue and lose saturation."""
    gray_f = gray.astype(np.float32)
    lab = np.concatenate([gray_lightness(gray)[..., None], ab.astype(np.float32)], axis=-1)
    rgb = lab_to_rgb(lab)
    chroma = rgb - (rgb @ _LUMA_WEIGHTS.astype(np.float32))[..., None]
    rgb = gray_f[..., None] + chroma * _gamut_scale(gray_f, chroma)[..., None]
    return _fix_rounding(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), gray)


def _gamut_scale(gray: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """The largest s in [0, 1] for which gray + s * chroma stays within [0, 255] in every channel."""
    headroom = np.where(chroma > 0, np.float32(255.0) - gray[..., None], gray[..., None])
    with np.errstate(divide="ignore", invalid="ignore"):
        room = headroom / np.abs(chroma)
    return np.clip(np.nan_to_num(room.min(axis=-1), nan=1.0, posinf=1.0), 0.0, 1.0)


def _fix_rounding(rgb: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Rounding to 8 bits moves the luma by at most a level or two: shift all three channels by the
    difference; where clipping at 0 or 255 prevents that, fall back to the plain gray pixel."""
    error = gray.astype(np.int16) - luma(rgb)
    if not error.any():
        return rgb
    rgb = np.clip(rgb.astype(np.int16) + error[..., None], 0, 255).astype(np.uint8)
    still_off = luma(rgb) != gray
    rgb[still_off] = gray[still_off, None]
    return rgb


_GRAY_TO_L = rgb_to_lab(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1))[:, 0]
