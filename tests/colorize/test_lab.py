import numpy as np
from PIL import Image

from colorize.lab import colorize_gray, gray_lightness, lab_to_rgb, luma, rgb_to_lab


def test_lab_round_trip_is_exact_to_a_fraction_of_a_level():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)) - rgb).max() < 0.01


def test_known_lab_values():
    lab = rgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.05)
    assert np.allclose(lab[1], [0, 0, 0], atol=0.05)
    assert np.allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)


def test_luma_is_pillows_convert_l():
    rgb = np.random.default_rng(1).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    assert np.array_equal(luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


def test_colorize_gray_keeps_every_gray_level_exactly_even_out_of_gamut():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (80, 80)).astype(np.uint8)
    for spread in (5, 40, 200):
        rgb = colorize_gray(gray, rng.normal(0, spread, (80, 80, 2)))
        assert rgb.dtype == np.uint8 and rgb.shape == (80, 80, 3)
        assert np.array_equal(luma(rgb), gray)


def test_colorize_gray_gives_back_a_colour_image_from_its_own_chroma():
    rgb = np.random.default_rng(3).integers(30, 220, (40, 40, 3)).astype(np.uint8)
    gray = luma(rgb)
    back = colorize_gray(gray, rgb_to_lab(rgb)[..., 1:])
    assert np.abs(back.astype(int) - rgb).mean() < 6


def test_zero_chroma_is_plain_gray():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = colorize_gray(gray, np.zeros((16, 16, 2)))
    assert np.array_equal(rgb, np.repeat(gray[..., None], 3, axis=2))
    assert np.allclose(rgb_to_lab(rgb)[..., 0], gray_lightness(gray), atol=1e-3)
