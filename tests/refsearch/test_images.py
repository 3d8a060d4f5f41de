"""Finding image files and decoding every kind of image into RGB or L, or refusing it with a reason."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from refsearch import images
from refsearch.config import IndexConfig
from refsearch.errors import RefsearchError
from refsearch.features import load_prepared
from refsearch.images import (ImageError, ImageFile, ImageScan, UnusableEntry, decode, find_images, is_grayscale,
                              scan_images, to_luminance)


# -- find_images ----------------------------------------------------------------------------------
def test_find_images_walks_sorted_and_skips_hidden_index_and_non_image_files(tmp_path, write_image):
    write_image("b.jpg")
    write_image("a.PNG", format="PNG")
    write_image("sub/c.jpeg", format="JPEG")
    write_image("sub/deeper/d.webp", format="WEBP")
    write_image(".hidden/e.jpg")
    write_image("old.index/f.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "g.gif").write_bytes(b"GIF89a")  # not a suffix the index reads
    found = find_images(tmp_path)
    names = [f.path.relative_to(tmp_path.resolve()).as_posix() for f in found]
    assert names == ["a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp"]
    first = found[1]
    assert first.path.is_absolute()
    assert first.size == (tmp_path / "b.jpg").stat().st_size
    assert first.mtime_ns == (tmp_path / "b.jpg").stat().st_mtime_ns


def test_find_images_refuses_a_missing_folder_and_a_file(tmp_path, write_image):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match="expected a folder"):
        find_images(write_image("x.jpg"))
    with pytest.raises(NotADirectoryError, match="expected a folder"):
        scan_images(write_image("y.jpg"))


def test_scan_images_reports_what_is_named_like_an_image_but_is_no_file(tmp_path, write_image):
    write_image("a.jpg")
    write_image("x.jpg/inside.png", format="PNG")  # a folder named like an image: reported, and searched
    (tmp_path / "y.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "z.png").symlink_to(tmp_path / "x.jpg")  # a link to a folder: reported, not followed
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")  # decoding would wait forever for a writer
    (tmp_path / "notes").symlink_to(tmp_path / "nowhere")  # not named like an image: not reported
    (tmp_path / ".hidden.jpg").mkdir()  # hidden folders are skipped, as before
    scan = scan_images(tmp_path)
    assert isinstance(scan, ImageScan)
    root = tmp_path.resolve()
    assert [f.path.relative_to(root).as_posix() for f in scan.files] == ["a.jpg", "x.jpg/inside.png"]
    assert scan.files == find_images(tmp_path)
    reasons = {entry.path.relative_to(root).as_posix(): entry.reason for entry in scan.unusable}
    assert reasons == {
        "x.jpg": "a folder, not an image file",
        "y.jpg": f"a broken link (to {tmp_path / 'missing.jpg'}, which does not exist)",
        "z.png": "a link to a folder, not an image file",
        "loop.jpg": "a link that loops back on itself",
        "pipe.jpg": "not a regular file (a FIFO, socket or device)",
    }
    broken = next(entry for entry in scan.unusable if entry.path.name == "y.jpg")
    assert isinstance(broken, UnusableEntry) and broken.path == root / "y.jpg"
    own = (tmp_path / "y.jpg").lstat()
    assert (broken.size, broken.mtime_ns) == (own.st_size, own.st_mtime_ns)


def test_a_link_to_an_image_is_an_image_file(tmp_path, write_image):
    target = write_image("photos/a.jpg")
    (tmp_path / "linked.jpg").symlink_to(target)
    scan = scan_images(tmp_path)
    assert scan.unusable == []
    assert {f.path for f in scan.files} == {target.resolve()}
    assert all(isinstance(f, ImageFile) and f.size == target.stat().st_size for f in scan.files)


# -- decode: refusals -----------------------------------------------------------------------------
def _reason(source, **options) -> str:
    with pytest.raises(ImageError) as caught:
        decode(source, **options)
    return caught.value.reason


def test_unusable_files_are_refused_with_a_reason(tmp_path, demo_photos):
    assert _reason(tmp_path / "missing.jpg") == "no such file"
    assert "folder" in _reason(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg") == "empty file"
    (tmp_path / "text.jpg").write_text("this is not a photo\n" * 20)
    assert "not an image" in _reason(tmp_path / "text.jpg")
    data = demo_photos[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(tmp_path / "truncated.jpg")
    error = pytest.raises(ImageError, decode, tmp_path / "empty.jpg").value
    assert str(tmp_path / "empty.jpg") in str(error) and error.source == str(tmp_path / "empty.jpg")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_a_header_claiming_a_giant_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(30_000, 20_000))  # 600 megapixels claimed in a tiny file
    reason = _reason(path)
    assert reason == "30000x20000 is 600 megapixels, over the limit of 50 megapixels"


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """PNGs whose pixel counts set off Pillow's bomb check: 900 megapixels (its error, and over the
    limit the tests raise to 400) and 144 (its warning, within it); one bit a pixel, so the files are small."""
    folder = tmp_path_factory.mktemp("bombs")
    Image.new("1", (30_000, 30_000)).save(folder / "huge.png")
    Image.new("1", (12_000, 12_000)).save(folder / "large.png")
    return folder


def test_a_decompression_bomb_is_refused_by_our_limit_without_pillows_warning(bombs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with images.pixel_limit(400_000_000), pytest.raises(ImageError) as refused:
            decode(bombs / "huge.png", luminance=True, min_short_side=256)
        assert refused.value.reason == "30000x30000 is 900 megapixels, over the limit of 400 megapixels"
        assert refused.value.hint == "scale it down first, or raise the limit with --max-pixels"
        assert isinstance(refused.value, RefsearchError) and isinstance(refused.value, ValueError)
        with images.pixel_limit(400_000_000):
            assert decode(bombs / "large.png", luminance=True).image.size == (12_000, 12_000)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], caught


def test_a_decompression_bomb_prints_nothing_of_pillows_on_stderr(bombs):
    code = (f"from refsearch.images import ImageError, decode, pixel_limit\n"
            f"with pixel_limit(400_000_000):\n"
            f"    decode({str(bombs / 'large.png')!r})\n"
            f"try:\n    decode({str(bombs / 'huge.png')!r})\n"
            f"except ImageError as error:\n    print(error.reason)\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == "30000x30000 is 900 megapixels, over the limit of 50 megapixels\n"


def test_max_pixels_limit(tmp_path, write_image):
    assert images.max_pixels() == images.DEFAULT_MAX_PIXELS == 50_000_000
    with images.pixel_limit(300):
        assert images.max_pixels() == 300
        assert _reason(write_image("big.png", size=(20, 20))) == "20x20 is 0.0004 megapixels, over the limit " \
            "of 0.0003 megapixels"
        assert decode(write_image("ok.png", size=(10, 30))).image.size == (10, 30)
        with pytest.raises(ImageError, match="over the limit"):
            decode(np.zeros((20, 20), np.uint8))  # arrays and PIL images are held to it too
        with pytest.raises(ImageError, match="over the limit"):
            decode(Image.new("L", (20, 20)))
    assert images.max_pixels() == 50_000_000
    with pytest.raises(ValueError, match="at least 1"):
        with images.pixel_limit(0):
            pass


def test_a_large_jpeg_counts_at_the_scale_it_is_decoded_at(tmp_path, write_image, monkeypatch):
    path = write_image("big.jpg", size=(800, 600), format="JPEG")
    with images.pixel_limit(100_000):  # the photo has 480 000
        assert "480000" not in _reason(path) and "0.48 megapixels" in _reason(path)
        reduced = decode(path, min_short_side=150, luminance=True)  # JPEG draft: 1/4 scale, 200x150
    assert reduced.image.size == (200, 150) and reduced.original_size == (800, 600)


def test_an_unsupported_mode_is_refused(monkeypatch):
    # Every mode Pillow 13 makes is supported; stand in for a future or plugin format's mode (the EXIF
    # step copies the image, which would restore the real mode, so it is skipped here).
    monkeypatch.setattr(images.ImageOps, "exif_transpose", lambda image: image)
    image = Image.new("RGB", (4, 4))
    image._mode = "XYZ;32"
    assert "unsupported image mode" in _reason(image)


def test_arrays_of_the_wrong_shape_are_refused():
    assert "expected HxW" in _reason(np.zeros((4, 4, 2), np.uint8))
    assert "expected HxW" in _reason(np.zeros((2, 4, 4, 3), np.uint8))


# -- decode: modes and formats --------------------------------------------------------------------
def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    decoded = decode(path)
    assert decoded.image.mode == "RGB"
    r, g, b = np.asarray(decoded.image).reshape(-1, 3).mean(axis=0)
    assert r > 230 and g < 25 and b < 25


def test_16_bit_png_scales_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    decoded = decode(path)
    assert decoded.image.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded.image), [[0, 128, 255]])


def test_palette_with_transparency_is_flattened_on_white(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 0, 1, 1, 0, 0, 1, 1])  # index 1 (blue) is the transparent one
    image.save(path, transparency=1)
    decoded = decode(path)
    assert decoded.image.mode == "RGB"
    pixels = np.asarray(decoded.image)
    np.testing.assert_array_equal(pixels[:, :2], [[[255, 0, 0]] * 2] * 2)
    np.testing.assert_array_equal(pixels[:, 2:], [[[255, 255, 255]] * 2] * 2)


def test_palette_without_transparency_keeps_its_colours(tmp_path):
    path = tmp_path / "palette.gif"
    image = Image.new("P", (2, 1))
    image.putpalette([0, 200, 0] + [0] * 765)
    image.save(path)
    np.testing.assert_array_equal(np.asarray(decode(path).image), [[[0, 200, 0]] * 2])


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    pixels = np.array([[[255, 0, 0, 255], [0, 0, 255, 0], [0, 0, 255, 128]]], np.uint8)
    Image.fromarray(pixels, "RGBA").save(path)
    decoded = decode(path).image
    assert decoded.mode == "RGB"
    out = np.asarray(decoded).astype(int)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])  # opaque: unchanged
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])  # fully transparent: white
    np.testing.assert_allclose(out[0, 2], [127, 127, 255], atol=1)  # half: halfway to white


def test_grayscale_with_alpha_stays_grayscale(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[100, 255], [100, 0]]], np.uint8), "LA").save(path)
    decoded = decode(path).image
    assert decoded.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded), [[100, 255]])


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) - {"La"}))
def test_every_pillow_mode_decodes_to_rgb_or_l(mode):
    decoded = decode(Image.new(mode, (5, 3)))
    assert decoded.image.mode in ("RGB", "L") and decoded.image.size == (5, 3)
    assert decoded.original_size == (5, 3) and decoded.digest is None


def test_premultiplied_grayscale_alpha_decodes():
    decoded = decode(Image.new("La", (2, 2), (100, 255)))
    assert decoded.image.mode == "L"


def test_a_1x1_image_decodes_and_prepares(tmp_path, write_image):
    path = write_image("dot.png", size=(1, 1))
    decoded = decode(path)
    assert decoded.image.size == (1, 1) and decoded.original_size == (1, 1)
    prepared = load_prepared(path, IndexConfig(), 224)
    assert prepared.network_input.shape == (224, 224)
    assert prepared.histograms.shape == (49, 10)
    np.testing.assert_allclose(prepared.histograms.sum(axis=1), 1.0, rtol=1e-6)


def _oriented_jpeg(path, orientation: int):
    """40x20 stored pixels: left half black, right half white, with an EXIF orientation tag."""
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels, "L").save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # Orientation 6: display rotated 90 degrees clockwise, so the stored left half ends up on top.
    decoded = decode(_oriented_jpeg(tmp_path / "rotated.jpg", 6)).image
    assert decoded.size == (20, 40)
    pixels = np.asarray(decoded)
    assert pixels[:18].max() < 30 and pixels[22:].min() > 225
    # Orientation 3: rotated 180 degrees, so the black half moves to the right.
    pixels = np.asarray(decode(_oriented_jpeg(tmp_path / "upside-down.jpg", 3)).image)
    assert pixels[:, :18].min() > 225 and pixels[:, 22:].max() < 30


def test_original_size_follows_the_exif_orientation(tmp_path):
    decoded = decode(_oriented_jpeg(tmp_path / "rotated.jpg", 6))
    assert decoded.original_size == decoded.image.size == (20, 40)


def test_large_jpegs_decode_reduced_but_report_their_full_size(tmp_path, write_image):
    path = write_image("large.jpg", size=(1600, 1200), quality=90)
    reduced = decode(path, min_short_side=256)
    assert reduced.original_size == (1600, 1200)
    assert 256 <= min(reduced.image.size) < 512
    assert reduced.image.size[0] * 3 == reduced.image.size[1] * 4
    full = decode(path)
    assert full.image.size == (1600, 1200)
    assert full.digest == reduced.digest == images.file_digest(path.read_bytes())


def test_luminance_decoding_gives_the_luma_of_every_kind_of_source(tmp_path, write_image, demo_photos):
    photo = decode(demo_photos[0], luminance=True)
    assert photo.image.mode == "L"
    from_rgb = np.asarray(decode(demo_photos[0]).image.convert("L")).astype(int)
    difference = np.abs(np.asarray(photo.image).astype(int) - from_rgb)
    assert np.mean(difference == 0) > 0.95 and np.percentile(difference, 99.9) <= 2  # differs only where RGB clips
    large = write_image("large.jpg", size=(1600, 1200), quality=90)
    reduced = decode(large, min_short_side=256, luminance=True)
    assert reduced.image.mode == "L" and 256 <= min(reduced.image.size) < 512
    assert reduced.digest == decode(large).digest
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk, quality=95)
    assert decode(cmyk, luminance=True).image.mode == "L"
    oriented = decode(_oriented_jpeg(tmp_path / "rotated.jpg", 6), luminance=True)
    assert oriented.image.mode == "L" and oriented.image.size == (20, 40)
    for source in (Image.new("RGB", (8, 8), (255, 0, 0)), np.zeros((8, 8, 3), np.uint8)):
        assert decode(source, luminance=True).image.mode == "L"


def test_digest_depends_on_the_bytes_only(tmp_path, write_image):
    a = write_image("a.png", pattern="noise", seed=1)
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    c = write_image("c.png", pattern="noise", seed=2)
    assert decode(a).digest == decode(b).digest != decode(c).digest


# -- arrays and PIL images ------------------------------------------------------------------------
def test_arrays_decode_by_dtype_and_shape():
    gray = decode(np.array([[0.0, 0.5, 1.0]]))  # floats in 0..1
    assert gray.image.mode == "L" and gray.original_size == (3, 1)
    np.testing.assert_array_equal(np.asarray(gray.image), [[0, 128, 255]])
    deep = decode(np.array([[0, 65535]], np.uint16))
    np.testing.assert_array_equal(np.asarray(deep.image), [[0, 255]])
    single = decode(np.full((2, 3, 1), 7, np.uint8))
    assert single.image.mode == "L" and single.image.size == (3, 2)
    rgba = decode(np.array([[[10, 20, 30, 0]]], np.uint8))
    assert rgba.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgba.image), [[[255, 255, 255]]])
    rgb = decode(np.array([[[10, 20, 30]]], np.uint8))
    np.testing.assert_array_equal(np.asarray(rgb.image), [[[10, 20, 30]]])


def test_luminance_is_itu_601_luma():
    image = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8))
    lum = to_luminance(image)
    assert lum.mode == "L"
    np.testing.assert_allclose(np.asarray(lum)[0], [76, 150, 29, 255], atol=1)
    already = Image.new("L", (2, 2), 9)
    assert to_luminance(already) is already


def test_is_grayscale(synthetic_image):
    assert is_grayscale(Image.new("L", (9, 9)))
    assert is_grayscale(synthetic_image((64, 64), "L").convert("RGB"))
    assert not is_grayscale(synthetic_image((64, 64), "RGB"))
    assert not is_grayscale(Image.new("RGB", (2, 2), (200, 0, 0)))
