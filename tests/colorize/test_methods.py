"""Each built-in method on small images: shapes, the target's gray levels kept exactly, and colour that
comes from the references."""
import numpy as np
import pytest
from PIL import Image

from colorize import colorize
from colorize.exemplar import ExemplarColorizer, UntrainedExemplarColorizer
from colorize.lab import luma, rgb_to_lab
from colorize.metrics import psnr
from colorize.transfer import TransferColorizer


def chroma_error_map(result: Image.Image, original: Image.Image) -> np.ndarray:
    a = rgb_to_lab(np.asarray(result))[..., 1:]
    b = rgb_to_lab(np.asarray(original))[..., 1:]
    return np.linalg.norm(a - b, axis=-1)


def mean_chroma_error(result: Image.Image, original: Image.Image) -> float:
    return float(chroma_error_map(result, original).mean())


@pytest.fixture(scope="module")
def exemplar(backbone):
    return ExemplarColorizer(backbone)


def test_transfer_paints_the_best_references_mean_chroma(gray_scene, colour_scene):
    red = Image.new("RGB", (40, 30), (200, 30, 30))
    result = colorize(gray_scene, [red, colour_scene], "transfer")
    lab = rgb_to_lab(np.asarray(result.image))
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(gray_scene))
    mid_tones = (lab[..., 0] > 25) & (lab[..., 0] < 75)
    assert np.median(lab[mid_tones, 1]) > 20  # reddish where the gamut has room for it
    assert result.confidence.shape == (96, 128) and np.allclose(result.confidence, 1.0)
    assert np.all(result.source == 0)


def test_transfer_uses_only_the_first_reference(gray_scene, colour_scene):
    first = colorize(gray_scene, [colour_scene], TransferColorizer())
    blue = Image.new("RGB", (9, 9), (0, 0, 255))
    with_more = colorize(gray_scene, [colour_scene, blue], TransferColorizer())
    assert np.array_equal(np.asarray(first.image), np.asarray(with_more.image))


def test_exemplar_from_the_colour_original_comes_back_close(gray_scene, colour_scene, exemplar):
    result = colorize(gray_scene, [colour_scene], exemplar)
    original = np.asarray(colour_scene)
    gray_rgb = np.asarray(gray_scene.convert("RGB"))
    assert psnr(np.asarray(result.image), original) > psnr(gray_rgb, original) + 8
    assert mean_chroma_error(result.image, colour_scene) < 8
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(gray_scene))


def test_exemplar_from_a_demo_photos_colour_original(demo_photos, exemplar):
    photo = Image.open(next(p for p in demo_photos if "goldfinch" in p.name)).convert("RGB")
    result = colorize(photo.convert("L"), [photo], exemplar)
    original = np.asarray(photo)
    gray_rgb = np.asarray(photo.convert("L").convert("RGB"))
    assert psnr(np.asarray(result.image), original) > psnr(gray_rgb, original) + 5
    assert mean_chroma_error(result.image, photo) < 10


def test_exemplar_takes_each_region_from_the_reference_that_matches_it(gray_scene, colour_scene, exemplar):
    unrelated = Image.fromarray(np.random.default_rng(5).integers(0, 256, (60, 80, 3)).astype(np.uint8))
    result = colorize(gray_scene, [unrelated, colour_scene], exemplar)
    assert result.source.shape == (96, 128) and result.source.dtype == np.int8
    assert (result.source == 1).mean() > 0.7
    assert mean_chroma_error(result.image, colour_scene) < 12


def test_exemplar_with_a_shifted_look_alike_reference(make_scene, exemplar, backbone):
    target = make_scene(seed=1).convert("L")
    reference = make_scene((160, 120), seed=2, shift=12)
    original = make_scene(seed=1)
    untrained = colorize(target, [reference], UntrainedExemplarColorizer(backbone))
    assert mean_chroma_error(untrained.image, original) < 15
    # With the prior, the look-alike's colour is taken where it matches near-exactly; elsewhere the prior,
    # trained on photographs, guesses for these synthetic shapes.
    result = colorize(target, [reference], exemplar)
    from_reference = result.source == 0
    assert from_reference.mean() > 0.4
    error = chroma_error_map(result.image, original)
    assert error[from_reference].mean() < 15
    assert error.mean() < chroma_error_map(target.convert("RGB"), original).mean()


@pytest.mark.parametrize("target_size, reference_sizes", [
    ((9, 7), [(300, 200)]),
    ((640, 48), [(20, 20), (64, 400)]),
    ((33, 250), [(500, 333), (13, 7), (128, 128)]),
])
def test_sizes_far_apart_work(make_scene, exemplar, target_size, reference_sizes):
    target = make_scene(target_size).convert("L")
    result = colorize(target, [make_scene(size) for size in reference_sizes], exemplar)
    width, height = target_size
    assert result.image.size == target_size and result.image.mode == "RGB"
    assert result.confidence.shape == (height, width) and result.source.shape == (height, width)
    assert 0 <= result.confidence.min() and result.confidence.max() <= 1
    assert set(np.unique(result.source)) <= set(range(-1, len(reference_sizes)))
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(target))


def test_exemplar_uses_the_given_working_resolution(gray_scene, colour_scene, backbone):
    small = colorize(gray_scene, [colour_scene], ExemplarColorizer(backbone, working_short_side=64))
    assert small.image.size == gray_scene.size
    assert small.seconds < 2 and mean_chroma_error(small.image, colour_scene) < 20
