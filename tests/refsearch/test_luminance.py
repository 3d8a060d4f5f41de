"""Per-cell luminance histograms and their correlation, against values computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refsearch.luminance import cell_histograms, correlation, histograms_of_pixels


# -- histograms_of_pixels -------------------------------------------------------------------------
def test_histograms_of_a_4x4_image_by_hand():
    # bins=4: value v falls in bin v // 64.
    pixels = np.array([[0, 63, 64, 127],
                       [128, 191, 192, 255],
                       [10, 20, 200, 210],
                       [70, 80, 250, 255]], np.uint8)
    # Bins:            [[0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 3, 3], [1, 1, 3, 3]]
    expected = np.array([
        [0.5, 0.0, 0.5, 0.0],  # top-left cell: bins 0, 0, 2, 2
        [0.0, 0.5, 0.0, 0.5],  # top-right: 1, 1, 3, 3
        [0.5, 0.5, 0.0, 0.0],  # bottom-left: 0, 0, 1, 1
        [0.0, 0.0, 0.0, 1.0],  # bottom-right: 3, 3, 3, 3
    ])
    hist = histograms_of_pixels(pixels, grid=2, bins=4)
    assert hist.shape == (4, 4)
    np.testing.assert_allclose(hist, expected)


def test_ten_bin_boundaries_by_hand():
    # With 10 bins over 0..255, value v goes to floor(10 v / 256).
    pixels = np.array([[0, 25, 26, 51, 52], [127, 128, 230, 231, 255]], np.uint8)
    # bins:             0   0   1   1   2     4    5    8    9    9
    expected = np.array([[2, 2, 1, 0, 1, 1, 0, 0, 1, 2]]) / 10
    np.testing.assert_allclose(histograms_of_pixels(pixels, grid=1, bins=10), expected)


def test_uneven_cells_put_the_remainder_in_the_last_row_and_column():
    # 5x5 into 2x2 cells: rows and columns 0-2 form the first cell, 3-4 the second.
    pixels = np.zeros((5, 5), np.uint8)
    pixels[2, 2] = 255  # still in the top-left cell (9 pixels)
    pixels[3:, 3:] = 255  # the whole bottom-right cell (4 pixels)
    hist = histograms_of_pixels(pixels, grid=2, bins=2)
    np.testing.assert_allclose(hist, [[8 / 9, 1 / 9], [1, 0], [1, 0], [0, 1]], rtol=1e-6)


def _cells_image(border_value=255) -> np.ndarray:
    """256x256 (no resize needed), 16-px border of `border_value`, and inside it a 7x7 grid of 32-px
    cells, cell (r, c) holding the value 26*((r + c) % 10) + 1, i.e. exactly bin (r + c) % 10."""
    pixels = np.full((256, 256), border_value, np.uint8)
    for r in range(7):
        for c in range(7):
            pixels[16 + 32 * r:16 + 32 * (r + 1), 16 + 32 * c:16 + 32 * (c + 1)] = 26 * ((r + c) % 10) + 1
    return pixels


def test_cell_histograms_trim_the_border_and_run_row_major():
    hist = cell_histograms(Image.fromarray(_cells_image(), "L"))
    assert hist.shape == (49, 10)
    expected = np.zeros((49, 10))
    for r in range(7):
        for c in range(7):
            expected[r * 7 + c, (r + c) % 10] = 1.0
    # Any border pixel counted would put mass in bin 9 of an edge cell.
    np.testing.assert_allclose(hist, expected)


def test_cell_histograms_without_border_trim_see_the_border():
    hist = cell_histograms(Image.fromarray(_cells_image(), "L"), border=0)
    # Untrimmed, the corner cell is rows and columns 0-36 (37 * 7 // 256 == 1): 37 * 37 = 1369 pixels,
    # of which rows/columns 16-36 (21 * 21 = 441) hold the inner value (bin 0), the rest the border (bin 9).
    assert hist[0, 0] == pytest.approx(441 / 1369, abs=1e-6)
    assert hist[0, 9] == pytest.approx(928 / 1369, abs=1e-6)


def test_cell_histograms_resize_to_the_short_side_before_trimming():
    # 128x64 (w x h): top half black, bottom half white. Resized to 512x256, trimmed to 480x224,
    # cell rows 0-2 lie wholly in the black half and rows 4-6 wholly in the white half.
    pixels = np.zeros((64, 128), np.uint8)
    pixels[32:] = 255
    hist = cell_histograms(Image.fromarray(pixels, "L"))
    for cell in range(0, 21):
        np.testing.assert_allclose(hist[cell], np.eye(10)[0], err_msg=f"cell {cell}")
    for cell in range(28, 49):
        np.testing.assert_allclose(hist[cell], np.eye(10)[9], err_msg=f"cell {cell}")
    middle = hist[21:28]
    assert np.all(middle[:, 0] > 0.2) and np.all(middle[:, 9] > 0.2)


def test_cell_histograms_of_a_large_uniform_image_and_a_1x1_image():
    big = cell_histograms(Image.new("L", (1000, 700), 128))
    np.testing.assert_allclose(big, np.tile(np.eye(10)[5], (49, 1)))
    tiny = cell_histograms(Image.new("L", (1, 1), 255))
    np.testing.assert_allclose(tiny, np.tile(np.eye(10)[9], (49, 1)))


def test_cell_histograms_each_sum_to_one_with_other_grids(synthetic_image):
    image = synthetic_image((300, 200), "L", "noise")
    for grid, bins in [(7, 10), (4, 16), (1, 3)]:
        hist = cell_histograms(image, grid=grid, bins=bins)
        assert hist.shape == (grid * grid, bins)
        np.testing.assert_allclose(hist.sum(axis=1), 1.0, rtol=1e-6)


# -- correlation ----------------------------------------------------------------------------------
def test_correlation_of_known_vectors():
    a = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    b = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    # centred: a' = (.75, -.25, -.25, -.25), b' = (-.25, .75, -.25, -.25)
    # a'.b' = -.1875 - .1875 + .0625 + .0625 = -.25 ; |a'|^2 = |b'|^2 = .75  ->  -.25 / .75
    assert correlation(a, b) == pytest.approx(-1 / 3, abs=1e-6)
    c = np.array([1.0, 2.0, 3.0], np.float32)
    assert correlation(c, c) == pytest.approx(1.0, abs=1e-6)
    assert correlation(c, 2 * c + 5) == pytest.approx(1.0, abs=1e-6)
    assert correlation(c, c[::-1].copy()) == pytest.approx(-1.0, abs=1e-6)
    # (1, 2, 3) and (1, 3, 2): centred (-1, 0, 1), (-1, 1, 0): 1 / (sqrt 2 sqrt 2) = 0.5
    assert correlation(c, np.array([1.0, 3.0, 2.0], np.float32)) == pytest.approx(0.5, abs=1e-6)


def test_correlation_of_flat_histograms_is_one_as_in_opencv():
    flat = np.full(10, 0.1, np.float32)
    peaked = np.eye(10, dtype=np.float32)[3]
    assert correlation(flat, flat) == pytest.approx(1.0)
    # OpenCV's HISTCMP_CORREL returns 1 whenever the variance product vanishes, one flat side included.
    assert correlation(flat, peaked) == pytest.approx(1.0)
    assert not np.isnan(correlation(np.zeros(10, np.float32), peaked))


def test_correlation_runs_along_the_last_axis_and_broadcasts():
    rng = np.random.default_rng(0)
    query = rng.random((5, 10)).astype(np.float32)
    candidates = rng.random((3, 5, 10)).astype(np.float32)
    corr = correlation(query[None], candidates)
    assert corr.shape == (3, 5) and corr.dtype == np.float32
    for i in range(3):
        for j in range(5):
            assert corr[i, j] == pytest.approx(np.corrcoef(query[j], candidates[i, j])[0, 1], abs=1e-5)
