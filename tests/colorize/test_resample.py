import numpy as np
import pytest

from colorize import resample
from colorize.lab import luma, rgb_to_lab
from colorize.resample import compose_full_size, resize, resize_matrix, scale_chroma, working_size


@pytest.mark.parametrize("size, expected", [
    ((500, 375), (341, 256)),
    ((375, 500), (256, 341)),
    ((64, 48), (341, 256)),
    ((10000, 100), (1024, 32)),
    ((1, 1), (256, 256)),
])
def test_working_size(size, expected):
    assert working_size(size, 256) == expected


@pytest.mark.parametrize("n_in, n_out", [(10, 37), (37, 10), (256, 256), (1, 5), (300, 1)])
def test_resize_matrix_rows_are_weights_summing_to_one(n_in, n_out):
    matrix = resize_matrix(n_in, n_out).toarray()
    assert matrix.shape == (n_out, n_in)
    assert (matrix >= 0).all() and np.allclose(matrix.sum(axis=1), 1.0)


def test_resize_keeps_constants_and_ramps():
    ramp = np.tile(np.arange(20, dtype=np.float32), (8, 1))
    assert np.allclose(resize(np.full((8, 20, 2), 3.0, np.float32), 30, 50), 3.0)
    enlarged = resize(ramp, 8, 40)
    assert enlarged.shape == (8, 40) and np.all(np.diff(enlarged[0]) >= 0)


def test_compose_by_strips_matches_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (90, 70)).astype(np.uint8)
    ab = rng.normal(0, 20, (12, 10, 2)).astype(np.float32)
    confidence = rng.random((12, 10)).astype(np.float32)
    source = rng.integers(-1, 3, (12, 10))
    whole = compose_full_size(gray, ab, confidence, source)
    monkeypatch.setattr(resample, "STRIP_PIXELS", 70 * 7)
    strips = compose_full_size(gray, ab, confidence, source)
    assert whole.rgb.shape == (90, 70, 3)
    assert whole.confidence.shape == (90, 70) and whole.source.shape == (90, 70)
    assert np.array_equal(whole.rgb, strips.rgb)
    assert np.allclose(whole.confidence, strips.confidence)
    assert np.array_equal(whole.source, strips.source)


def test_scale_chroma_keeps_the_luma_scales_the_chroma_and_works_in_strips():
    rgb = np.random.default_rng(4).integers(40, 215, (90, 30, 3)).astype(np.uint8)
    gray = luma(rgb)
    half = scale_chroma(rgb.copy(), gray, 0.5)
    assert np.array_equal(luma(half), gray)
    ratio = np.linalg.norm(rgb_to_lab(half)[..., 1:], axis=-1).mean() / np.linalg.norm(
        rgb_to_lab(rgb)[..., 1:], axis=-1).mean()
    assert 0.45 < ratio < 0.55
    assert np.array_equal(scale_chroma(rgb.copy(), gray, 0.5, strip_pixels=30 * 7), half)  # 7-row strips
    assert (scale_chroma(rgb.copy(), gray, 0.0) == gray[..., None]).all()
