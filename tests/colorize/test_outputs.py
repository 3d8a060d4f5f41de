"""The contact sheet and folder-in, folder-out."""
import numpy as np
from PIL import Image

from colorize import colorize, colorize_folder, contact_sheet
from colorize.exemplar import ExemplarColorizer
from colorize.lab import luma


def test_contact_sheet_shows_input_references_result_and_confidence(gray_scene, colour_scene, backbone):
    result = colorize(gray_scene, [(colour_scene, 0.5), (colour_scene.resize((60, 90)), 0.7)],
                      ExemplarColorizer(backbone, working_short_side=96))
    sheet = contact_sheet(result, height=100)
    assert sheet.mode == "RGB" and 100 < sheet.height < 140
    scene_width = round(128 * 100 / 96)
    tile_widths = [scene_width, scene_width, round(60 * 100 / 90), scene_width, scene_width]
    assert sheet.width == sum(tile_widths) + 4 * (len(tile_widths) + 1)
    pixels = np.asarray(sheet)
    first_tile = pixels[4:104, 4:4 + tile_widths[0]]
    assert (first_tile[..., 0] == first_tile[..., 2]).all()  # the input, gray


def test_folder_in_folder_out(tmp_path, make_scene):
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    make_scene(seed=1).convert("L").save(source / "a.jpg")
    make_scene((90, 70), seed=2).convert("L").save(source / "sub" / "b.png")
    (source / "broken.jpg").write_bytes(b"nope")
    (source / "dangling.png").symlink_to(source / "gone.png")
    reference = make_scene()

    def colorize_one(path):
        return colorize(path, [reference], "transfer")

    summary = colorize_folder(source, tmp_path / "out", colorize_one, sheet_root=tmp_path / "sheets",
                              progress=False)
    assert sorted(p.name for p, _ in summary.failed) == ["broken.jpg", "dangling.png"]
    assert "a broken link" in {p.name: why for p, why in summary.failed}["dangling.png"]
    assert {d.output.relative_to(tmp_path / "out").as_posix() for d in summary.done} == {"a.png", "sub/b.png"}
    for done in summary.done:
        gray = np.asarray(Image.open(done.source).convert("L"))
        assert np.array_equal(luma(np.asarray(Image.open(done.output))), gray)
        assert done.sheet.is_file() and done.sheet.name.endswith("_sheet.png")
