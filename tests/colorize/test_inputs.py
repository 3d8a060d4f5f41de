"""What users hand in: colour targets, odd image modes, files that are not images, huge and tiny images."""
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from colorize import ColorizeError, Reference, colorize, colorize_with_index
from colorize.exemplar import ExemplarColorizer
from colorize.lab import luma
from refsearch.images import ImageError


@pytest.fixture(scope="module")
def fast(backbone):
    return ExemplarColorizer(backbone, working_short_side=96)


def test_colour_target_is_colorized_from_its_luminance_with_a_note(colour_scene, fast):
    result = colorize(colour_scene, [colour_scene], fast)
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(colour_scene.convert("L")))
    assert any("has colour" in note for note in result.notes)


def test_gray_target_gets_no_note(gray_scene, colour_scene, fast):
    assert colorize(gray_scene, [colour_scene], fast).notes == []


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


@pytest.mark.parametrize("kind", ["rgba", "la", "16bit", "palette", "cmyk", "gray-jpeg"])
def test_odd_modes_work_as_target_and_as_reference(kind, colour_scene, tmp_path, fast):
    if kind == "rgba":
        image = colour_scene.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(colour_scene.size))
        path = _save(image, tmp_path / "a.png")
    elif kind == "la":
        path = _save(colour_scene.convert("LA"), tmp_path / "a.png")
    elif kind == "16bit":
        wide = np.asarray(colour_scene.convert("L")).astype(np.uint16) * 257
        path = _save(Image.fromarray(wide), tmp_path / "a.png")
    elif kind == "palette":
        path = _save(colour_scene.quantize(32), tmp_path / "a.png")
    elif kind == "cmyk":
        path = _save(colour_scene.convert("CMYK"), tmp_path / "a.jpg")
    else:
        path = _save(colour_scene.convert("L"), tmp_path / "a.jpg")
    as_target = colorize(path, [colour_scene], fast)
    assert as_target.image.size == colour_scene.size and as_target.image.mode == "RGB"
    as_reference = colorize(colour_scene.convert("L"), [path], fast)
    assert as_reference.image.size == colour_scene.size
    assert as_reference.references[0].name == str(path)


def test_grayscale_reference_is_noted(gray_scene, fast):
    result = colorize(gray_scene, [gray_scene], fast)
    assert any("grayscale" in note for note in result.notes)


def test_reference_forms_path_pil_array_pair_and_reference(gray_scene, colour_scene, tmp_path, fast):
    path = _save(colour_scene, tmp_path / "ref.png")
    result = colorize(gray_scene, [path, colour_scene, np.asarray(colour_scene), (colour_scene, 0.25),
                                   Reference(colour_scene, 0.5, "mine")], fast)
    assert [r.score for r in result.references] == [None, None, None, 0.25, 0.5]
    assert result.references[0].name == str(path) and result.references[4].name == "mine"


@pytest.mark.parametrize("content, reason", [(None, "no such file"), (b"", "empty file"),
                                             (b"not an image at all", "not an image file")])
def test_unusable_files_raise_image_error(tmp_path, colour_scene, gray_scene, content, reason, fast):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        colorize(path, [colour_scene], fast)
    with pytest.raises(ImageError, match=reason):
        colorize(gray_scene, [path], fast)


def test_truncated_file_raises_image_error(tmp_path, colour_scene, fast):
    full = _save(colour_scene, tmp_path / "full.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:-400])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        colorize(cut, [colour_scene], fast)


def test_no_references_is_an_error(gray_scene):
    with pytest.raises(ColorizeError, match="no references"):
        colorize(gray_scene, [])


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 200)])
def test_tiny_targets(size, colour_scene, fast):
    target = Image.new("L", size, 120)
    result = colorize(target, [colour_scene], fast)
    assert result.image.size == size
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(target))


def test_huge_target_stays_within_bounded_memory(make_scene, fast):
    """Beyond the result itself (3 bytes a pixel of RGB, 4 of confidence, 1 of source) a 12-megapixel
    target costs only a few bytes a pixel more: the chroma is upsampled strip by strip."""
    width, height = 4000, 3000
    target = make_scene((width, height)).convert("L")
    tracemalloc.start()
    try:
        result = colorize(target, [make_scene()], fast)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.image.size == (width, height)
    assert peak / (width * height) < 16


def test_a_saturation_out_of_range_is_refused_before_any_work(gray_scene, colour_scene):
    for saturation in (-0.1, 4.5):
        with pytest.raises(ValueError, match="saturation must be between 0 and 4"):
            colorize(gray_scene, [colour_scene], "transfer", saturation=saturation)
        with pytest.raises(ValueError, match="saturation must be between 0 and 4"):
            colorize_with_index(None, gray_scene, saturation=saturation)  # refused before it searches


def test_index_colorize_retrieves_references_and_takes_saturation_and_search_options(small_index,
                                                                                     demo_queries):
    import refsearch

    query = next(q for q in demo_queries if "Eskimo_dog" in q.name)
    gray = np.asarray(Image.open(query).convert("L"))
    with refsearch.Index.open(small_index) as index:
        result = index.colorize(query, topk=2, rerank=False)
        pale = index.colorize(query, topk=2, rerank=False, saturation=0.0)
    assert len(result.references) == 2 and all(r.score is not None for r in result.references)
    assert any("husky" in r.name or "malamute" in r.name or "Samoyed" in r.name for r in result.references)
    colour = np.asarray(result.image).astype(int)
    assert np.array_equal(luma(colour.astype(np.uint8)), gray)
    assert np.abs(colour - colour.mean(axis=2, keepdims=True)).mean() > 1.0
    assert (np.asarray(pale.image) == gray[..., None]).all()
