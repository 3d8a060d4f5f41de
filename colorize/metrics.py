"""Image quality measures for colorization, on (H, W, 3) uint8 RGB arrays."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def psnr(result: np.ndarray, original: np.ndarray) -> float:
    error = np.mean((result.astype(np.float64) - original.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10.0 * np.log10(255.0 ** 2 / error))


def ssim(result: np.ndarray, original: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03),
    averaged over the colour channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for channel in range(result.shape[2]):
        x = result[..., channel].astype(np.float64)
        y = original[..., channel].astype(np.float64)
        mean_x, mean_y = _window(x), _window(y)
        var_x = _window(x * x) - mean_x ** 2
        var_y = _window(y * y) - mean_y ** 2
        covariance = _window(x * y) - mean_x * mean_y
        index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)
                 / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))
        scores.append(index[5:-5, 5:-5].mean() if min(x.shape) > 10 else index.mean())
    return float(np.mean(scores))


def _window(values: np.ndarray) -> np.ndarray:
    return gaussian_filter(values, 1.5, truncate=3.5)


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003): spread plus 0.3 times the mean of the opponent colour components."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    spread = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mean = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(spread + 0.3 * mean)
