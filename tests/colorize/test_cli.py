"""`refsearch colorize` end to end."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import refsearch.cli.colorize_command  # noqa: F401  (registers the command)
from colorize.lab import luma
from refsearch.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["colorize", *map(str, args)])


@pytest.fixture
def files(tmp_path, make_scene):
    gray = tmp_path / "gray.jpg"
    make_scene(seed=3).convert("L").save(gray)
    reference = tmp_path / "ref.png"
    make_scene((150, 100), seed=4).save(reference)
    return gray, reference


def test_list_methods():
    result = run("--list-methods")
    assert result.exit_code == 0
    assert "exemplar" in result.stdout and "(default)" in result.stdout and "transfer" in result.stdout
    listed = json.loads(run("--list-methods", "--json").stdout)
    assert {m["name"] for m in listed} >= {"exemplar", "transfer"}


def test_with_given_references_json_and_sheet(files, tmp_path):
    gray, reference = files
    out, sheet = tmp_path / "out.png", tmp_path / "sheet.png"
    result = run(gray, "--ref", reference, "--ref", reference, "-o", out, "--sheet", sheet, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["done"][0]
    assert report["output"] == str(out) and report["method"] == "exemplar" and len(report["references"]) == 2
    assert np.array_equal(luma(np.asarray(Image.open(out))), np.asarray(Image.open(gray).convert("L")))
    assert Image.open(sheet).width > Image.open(out).width * 3


def test_a_chroma_prior_file_for_exemplar(files, tmp_path, backbone):
    from colorize.prior import ChromaPrior, bundled_prior_path

    gray, reference = files
    copy = tmp_path / "prior.pt"
    ChromaPrior.load(bundled_prior_path(backbone.name)).save(copy)
    with_file, default = tmp_path / "with_file.png", tmp_path / "default.png"
    assert run(gray, "--ref", reference, "--prior", copy, "-o", with_file).exit_code == 0
    assert run(gray, "--ref", reference, "-o", default).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(with_file)), np.asarray(Image.open(default)))
    wrong_method = run(gray, "--ref", reference, "--prior", copy, "--method", "transfer")
    assert wrong_method.exit_code == 2 and "exemplar method" in wrong_method.output
    (tmp_path / "junk.pt").write_bytes(b"junk")
    junk = run(gray, "--ref", reference, "--prior", tmp_path / "junk.pt")
    assert junk.exit_code == 2 and "is not a chroma prior" in junk.output


def test_default_output_name_and_method_choice(files, tmp_path, monkeypatch):
    gray, reference = files
    monkeypatch.chdir(tmp_path)
    result = run(gray, "--ref", reference, "--method", "transfer")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gray_colorized.png").is_file() and "transfer" in result.stdout


def test_folder_in_folder_out(files, tmp_path):
    gray, reference = files
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("one.jpg", "two.jpg"):
        (folder / name).write_bytes(gray.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    result = run(folder, "--ref", reference, "-o", tmp_path / "done", "--sheet", tmp_path / "sheets", "-q",
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["done"]) == 2 and report["failed"][0]["input"].endswith("broken.png")
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["one.png", "two.png"]
    assert len(list((tmp_path / "sheets").iterdir())) == 2


def test_with_an_index(small_index, files, tmp_path):
    gray, _ = files
    result = run(gray, "--index", small_index, "--topk", 2, "-o", tmp_path / "o.png", "--json")
    assert result.exit_code == 0, result.output
    references = json.loads(result.stdout)["done"][0]["references"]
    assert len(references) == 2 and all(r["score"] is not None for r in references)
    global_only = run(gray, "--index", small_index, "--topk", 1, "--global-only", "-o", tmp_path / "g.png")
    assert global_only.exit_code == 0, global_only.output


@pytest.mark.parametrize("args, message", [
    ([], "give a photo"),
    (["missing.jpg", "--ref", "{ref}"], "no such file"),
    (["{gray}", "--ref", "{ref}", "--method", "nope"], "unknown colorize method 'nope'"),
    (["{gray}", "--index", "{tmp}/no.index"], "error:"),
    (["{gray}", "--ref", "{ref}", "--index", "{tmp}/no.index"], "exclude each other"),
    (["{gray}", "--ref", "{ref}", "--topk", "0"], "at least 1"),
    (["{gray}", "--ref", "{gray}.missing"], "no such file"),
    (["{gray}", "--ref", "{ref}", "--saturation", "5"], "Invalid value for '--saturation'"),
    (["{gray}", "--ref", "{ref}", "--saturation", "-1"], "Invalid value for '--saturation'"),
    (["{gray}", "--ref", "{ref}", "--hint", "1,2"], "is not X,Y,#RRGGBB"),
    (["{gray}", "--ref", "{ref}", "--hint", "1,2,#ff00"], "six hex digits"),
    (["{gray}", "--ref", "{ref}", "--hint", "500,2,#ff0000"], "outside the 128x96 photo"),
    (["{gray}", "--ref", "{ref}", "--hints", "{gray}"], "the hints are not valid JSON"),
    (["{gray}", "--ref", "{ref}", "--hints", "{tmp}/missing.json"], "no such file"),
    (["{tmp}", "--ref", "{ref}", "--hint", "1,1,#ff0000"], "give a photo, not a folder"),
])
def test_bad_input_exits_2_with_a_message(files, tmp_path, args, message):
    gray, reference = files
    filled = [a.format(gray=gray, ref=reference, tmp=tmp_path) for a in args]
    result = run(*filled)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_saturation_scales_the_colour_and_keeps_the_gray_levels(files, tmp_path):
    gray, reference = files
    outputs = {}
    for saturation in (1, 0.5, 0):
        output = tmp_path / f"s{saturation}.png"
        result = run(gray, "--ref", reference, "--saturation", saturation, "-o", output)
        assert result.exit_code == 0, result.output
        rgb = np.asarray(Image.open(output))
        assert np.array_equal(luma(rgb), np.asarray(Image.open(gray)))
        outputs[saturation] = rgb.astype(int)

    def spread(rgb):
        return np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()

    assert spread(outputs[0]) == 0
    assert 0.35 * spread(outputs[1]) < spread(outputs[0.5]) < 0.65 * spread(outputs[1])


def test_colour_points_and_their_replay_from_the_json_output(files, tmp_path):
    gray, reference = files
    pointed, replayed, plain = tmp_path / "pointed.png", tmp_path / "replayed.png", tmp_path / "plain.png"
    result = run(gray, "--ref", reference, "--hint", "10,80,#c03028", "--hint", "100,10,#3050D0",
                 "-o", pointed, "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)["done"][0]
    assert done["hints"] == [{"x": 10, "y": 80, "color": "#c03028"}, {"x": 100, "y": 10, "color": "#3050d0"}]
    assert (done["width"], done["height"]) == (128, 96)
    saved = tmp_path / "run.json"
    saved.write_text(result.stdout)
    assert run(gray, "--ref", reference, "--hints", saved, "-o", replayed).exit_code == 0
    assert run(gray, "--ref", reference, "-o", plain).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(pointed)), np.asarray(Image.open(replayed)))
    assert not np.array_equal(np.asarray(Image.open(pointed)), np.asarray(Image.open(plain)))
    # a file's points first, then --hint's
    both = run(gray, "--ref", reference, "--hints", saved, "--hint", "60,60,#20a040",
               "-o", tmp_path / "b.png", "--json")
    colours = [h["color"] for h in json.loads(both.stdout)["done"][0]["hints"]]
    assert colours == ["#c03028", "#3050d0", "#20a040"]


def test_thousands_of_points_or_points_of_another_photo_are_refused(files, tmp_path):
    gray, reference = files
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"x": i % 128, "y": i // 128 % 96, "color": "#808080"} for i in range(5000)]))
    result = run(gray, "--ref", reference, "--hints", many)
    assert result.exit_code == 2 and "5000 colour hints; at most 256" in result.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"width": 64, "height": 48, "hints": [{"x": 1, "y": 1, "color": "#808080"}]}))
    result = run(gray, "--ref", reference, "--hints", other)
    assert result.exit_code == 2 and "placed on a 64x48 photo; this one is 128x96" in result.output
    assert "Traceback" not in result.output
