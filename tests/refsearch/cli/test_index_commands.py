"""`refsearch build-index`, `query` and `info`: a round trip on twenty demo photos, and the errors."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import refsearch.cli
from refsearch.cli import app
from refsearch.engines import local as local_engine

RESULT_KEYS = {"rank", "id", "path", "label", "label_name", "score", "semantic", "luminance", "global_similarity"}
RESPONSE_KEYS = {"query", "predicted", "searched_classes", "notes", "results", "params", "forward_ms", "search_ms",
                 "runtime"}


def responses(stdout: str) -> list[dict]:
    """`query --json` output: one object per query, a line each."""
    return [json.loads(line) for line in stdout.splitlines()]


def run(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str, hint: str | None = None) -> str:
    """Exit code 2 and on stderr one line starting `error: `, then a `hint: ` line if `hint` is given (and
    containing it), nothing else; the fragments are in the error line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert result.stderr.endswith("\n") and len(lines) == (1 if hint is None else 2), result.stderr
    message = lines[0]
    assert message.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in message, result.stderr
    if hint is not None:
        assert lines[1].startswith("hint: ") and hint in lines[1], result.stderr
    return message


def assert_usage_error(result, *fragments: str) -> None:
    """Refused by the option parser: exit code 2, the usage and the fragments on stderr."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "" and "Usage: " in result.stderr
    text = " ".join(result.stderr.replace("│", " ").split())  # the message may be wrapped in a box
    for fragment in fragments:
        assert fragment in text, result.stderr


@pytest.fixture(scope="module")
def photos(tmp_path_factory, demo_photos) -> list[Path]:
    folder = tmp_path_factory.mktemp("cli") / "photos"
    folder.mkdir()
    chosen = demo_photos[::2] + [demo_photos[1]]  # twenty of the 37
    return [Path(shutil.copy2(photo, folder / photo.name)).resolve() for photo in chosen]


@pytest.fixture(scope="module")
def built(photos) -> Path:
    """The twenty photos indexed through the command line (checked in the first test)."""
    index = photos[0].parent.parent / "cli.index"
    result = run("build-index", photos[0].parent, "-o", index, "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == summary["added"] == 20
    return index


def test_build_index_prints_a_json_summary_then_a_line_when_run_again(built, photos):
    assert (built / "manifest.json").is_file()
    result = run("build-index", photos[0].parent, "-o", built, "--quiet")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{built}: 20 images (0 added, 0 removed, 20 unchanged)")
    # nothing changed: nothing is published, and nothing was interrupted
    assert lines[0].endswith("; up to date: generation 1 stays published") and "resumed" not in lines[0]
    assert json.loads((built / "manifest.json").read_text())["generation"] == 1


def test_query_json_lists_ranked_references(built, photos):
    result = run("query", photos[3], "--index", built, "-k", "4", "--json")
    assert result.exit_code == 0, result.stderr
    response = json.loads(result.stdout)  # a single query prints a single object
    assert set(response) == RESPONSE_KEYS and response["query"] == str(photos[3])
    guess = response["predicted"][0]
    assert set(guess) == {"wnid", "name", "probability"} and 0 < guess["probability"] <= 1
    assert response["searched_classes"] is None or response["searched_classes"][0] == guess["wnid"]
    rows = response["results"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert set(row) == RESULT_KEYS
        assert Path(row["path"]).parent == photos[0].parent
        assert row["label"] == Path(row["path"]).name[:9]
    assert rows[0]["path"] == str(photos[3])  # an indexed file finds itself first
    assert [row["score"] for row in rows] == sorted(row["score"] for row in rows)
    for row in rows:
        assert row["score"] == pytest.approx(row["semantic"] + 0.25 * row["luminance"], abs=2e-5)


def test_query_a_degraded_copy_and_several_queries_at_once(built, photos, degrade, tmp_path):
    copy = tmp_path / "old-photo.jpg"
    degrade(photos[7]).save(copy)
    result = run("query", copy, photos[12], "--index", built, "-k", "2", "--json", "--exclude-self")
    assert result.exit_code == 0, result.stderr
    by_query = {response["query"]: response["results"] for response in responses(result.stdout)}
    assert list(by_query) == [str(copy), str(photos[12])]
    assert [r["rank"] for r in by_query[str(copy)]] == [1, 2]
    assert by_query[str(copy)][0]["path"] == str(photos[7])
    assert str(photos[12]) not in [r["path"] for r in by_query[str(photos[12])]]


def test_query_json_keeps_notes_off_stdout(built, photos):
    result = run("query", photos[0], "--index", built, "-k", "25", "--json")
    assert result.exit_code == 0, result.stderr
    response = json.loads(result.stdout)
    assert len(response["results"]) == 20 and "only 20 images to rank (k=25)" in response["notes"]
    assert "note: " in result.stderr and "only 20 images to rank (k=25)" in result.stderr


def test_query_table_output(built, photos):
    result = run("query", photos[5], "--index", built, "-k", "3", "--any-class", "--lum-weight", "0")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{photos[5]}  (predicted ")
    assert lines[1].split() == ["rank", "score", "d_sem", "d_lum", "id", "label", "path"]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert rows[0][-1] == str(photos[5])
    with refsearch.Index.open(built) as index:
        assert index.record(int(rows[0][4])).path == str(photos[5])  # the id column names the record
    for row in rows:
        assert float(row[1]) == pytest.approx(float(row[2]), abs=1e-4)  # luminance weight 0: score = d_sem


def test_query_global_only_and_the_default_index_from_the_environment(built, photos):
    result = run("query", photos[9], "-k", "3", "--global-only", "--json",
                 env={"REFSEARCH_INDEX": str(built)})
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    sims = [row["global_similarity"] for row in rows]
    assert sims == sorted(sims, reverse=True) and rows[0]["path"] == str(photos[9])


def test_info_text_and_json(built):
    result = run("info", "--index", built)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{built}: 20 images in 20 classes, 0 skipped; from ")
    assert "backbone efficientnet-lite2 (weights " in result.stdout
    assert "cells 7x7x64-d" in result.stdout and "all-class search: exact" in result.stdout
    data = json.loads(run("info", "--index", built, "--json").stdout)
    assert data["images"] == 20 and data["generation"] >= 1
    assert data["writer"] is None and data["pending"] is False
    assert data["config"]["backbone"] == "efficientnet-lite2" and data["config"]["global_dim"] == 128
    assert data["dims"] == {"global": 1280, "cell": 64, "fitted_on": 20}


def test_query_and_info_say_what_runs_the_network(built, photos):
    on_runtime = responses(run("query", photos[3], "--index", built, "--json").stdout)[0]
    on_torch = responses(run("query", photos[3], "--index", built, "--json", "--runtime", "torch").stdout)[0]
    assert on_runtime["runtime"].startswith("onnxruntime ") and on_torch["runtime"].startswith("torch ")
    assert [r["path"] for r in on_runtime["results"]] == [r["path"] for r in on_torch["results"]]
    assert [r["score"] for r in on_runtime["results"]] == pytest.approx([r["score"] for r in on_torch["results"]],
                                                                         abs=1e-4)
    data = json.loads(run("info", "--index", built, "--json").stdout)["runtime"]
    assert (data["runtime"], data["cached"]) == ("onnxruntime", True) and data["graph"].endswith(".graph")
    assert json.loads(run("info", "--index", built, "--json", "--runtime", "torch").stdout)["runtime"]["graph"] is None
    assert "queries here run the network on onnxruntime " in run("info", "--index", built).stdout
    assert_user_error(run("query", photos[3], "--index", built, "--runtime", "tensorflow"),
                      "unknown runtime 'tensorflow'", hint="use one of auto, torch, onnxruntime")


# -- errors: exit code 2 and one line -------------------------------------------------------------
def test_query_errors(built, photos, tmp_path):
    assert_user_error(run("query", tmp_path / "missing.jpg", "--index", built), "missing.jpg: no such file")
    assert_user_error(run("query", photos[0], "--index", tmp_path / "nothing.index"),
                      "nothing.index: no such index", hint="refsearch build-index")
    assert_user_error(run("query", photos[0], "--index", built, "--backbone", "vgg19"),
                      "built with backbone 'efficientnet-lite2', not 'vgg19'", hint="another network's")
    assert_user_error(run("query", photos[0], "--index", built, "--class", "n00000000"),
                      "'n00000000' is not an ImageNet-1k WordNet id", hint="like n01440764")
    assert_usage_error(run("query", photos[0], "--index", built, "-k", "0"), "-k", "greater than or equal to 1")
    assert_usage_error(run("query", photos[0], "--index", built, "--lum-weight", "-0.5"),
                       "--lum-weight", "greater than or equal to 0")
    assert_usage_error(run("query", photos[0], "--index", built, "-k", "20", "--candidates", "5"),
                       "--candidates", "5 is fewer than k=20", "give --candidates 20 or more")
    assert_usage_error(run("query", photos[0], "--index", built, "--rescue", "-1"), "--rescue")
    (tmp_path / "notes.jpg").write_text("not a photo")
    assert_user_error(run("query", tmp_path / "notes.jpg", "--index", built), "not an image file")
    both = run("query", photos[0], "--index", built, "--class", "n01440764", "--any-class")
    assert both.exit_code == 2 and "--class and --any-class exclude each other" in both.stderr


def test_query_a_folder_into_jsonl_resumes_and_reports_counts(built, photos, demo_photos, tmp_path):
    assert_usage_error(run("query", photos[0].parent, "--index", built), "is a folder", "--jsonl OUT.jsonl")
    output = tmp_path / "answers.jsonl"
    # a photo named twice (in the folder and on its own) is answered once
    first = run("query", photos[0].parent, photos[1], demo_photos[3], "--index", built, "-k", "2", "--jsonl", output,
                "--quiet")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == "" and "21 answered (0 could not be read), 0 already in" in first.stderr
    lines = responses(output.read_text())
    assert len(lines) == 21 and set(lines[0]) == RESPONSE_KEYS and len(lines[0]["results"]) == 2
    assert lines[0]["results"][0]["path"] == lines[0]["query"]  # an indexed photo finds itself first
    again = run("query", photos[0].parent, "--index", built, "--jsonl", output, "--quiet", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == {"output": str(output), "queries": 20, "answered": 0, "already_done": 20,
                                        "failed": 0}
    assert_usage_error(run("query", photos[0], "--index", built, "--engine", "ray"),
                       "--engine ray answers batch queries", "--jsonl OUT.jsonl")
    assert_user_error(run("query", photos[0].parent, "--index", built, "--jsonl", output, "--actors", "2"),
                      "--address and --actors are options of --engine ray")
    assert_user_error(run("query", photos[0].parent, "--index", built, "--jsonl", output, "--engine", "ray",
                          "--streams", "2"), "--workers and --streams are options of the local engine",
                      hint="--actors")
    unknown = run("query", photos[0].parent, "--index", built, "--jsonl", output, "--engine", "spark")
    assert_user_error(unknown, "unknown query engine 'spark'", hint="available: ")
    named = unknown.stderr.splitlines()[1].removeprefix("hint: available: ").split(", ")
    assert {"local", "ray"} <= set(named)
    assert run("query", photos[0], "--index", built, "--engine", "spark").stderr == unknown.stderr


def test_query_with_other_weights_is_refused(built, photos, changed_efficientnet_weights):
    assert_user_error(run("query", photos[0], "--index", built, "--weights", changed_efficientnet_weights),
                      "other efficientnet-lite2 weights", hint="pass the same --weights")


def test_info_errors(tmp_path):
    assert_user_error(run("info", "--index", tmp_path / "nothing.index"), "no such index", hint="build one")
    (tmp_path / "plain").mkdir()
    assert_user_error(run("info", "--index", tmp_path / "plain"), "is not a refsearch index")


def test_build_index_errors(built, photos, tmp_path, monkeypatch):
    assert_user_error(run("build-index", tmp_path / "nowhere", "-o", tmp_path / "x.index"), "no such folder")
    assert_user_error(run("build-index", "-o", tmp_path / "x.index"), "give a folder of images, or --recipe",
                      hint="known recipes: ")
    assert_user_error(run("build-index", photos[0].parent, "-o", built, "--global-dim", "64", "-q"),
                      "global_dim: 128 vs 64", hint="pass --rebuild")
    assert_user_error(run("build-index", tmp_path, "-o", built, "-q"), f"indexes {photos[0].parent}, not",
                      hint="pass --rebuild to replace it")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))
    source = photos[0].parent
    assert_user_error(run("build-index", source, "-o", tmp_path / "vgg.index", "--backbone", "vgg19"),
                      "vgg19 needs its ImageNet weights", hint="pass --weights FILE")
    assert_user_error(run("build-index", source, "-o", tmp_path / "y.index", "--backbone", "resnet"),
                      "unknown backbone 'resnet'", hint="available: efficientnet-lite2, ")
    monkeypatch.delenv("IMAGENET_TRAIN", raising=False)
    assert_user_error(run("build-index", "--recipe", "imagenet-train", "-o", tmp_path / "z.index"),
                      "recipe imagenet-train needs a source folder", hint="pass it as the first argument")
    assert_user_error(run("build-index", "--recipe", "no-such-recipe"), "no recipe named 'no-such-recipe'",
                      hint="known: demo")
    assert_usage_error(run("build-index", source, "-o", tmp_path / "w.index", "--batch-size", "0"),
                       "--batch-size", "greater than or equal to 1")
    assert_user_error(run("build-index", source, "-o", tmp_path / "p.index", "--precision", "half"),
                      "unknown precision 'half'", hint="auto, float32, float16, bfloat16")
    assert not any((tmp_path / name).exists() for name in ("vgg.index", "y.index", "p.index"))


def test_an_interrupted_build_exits_130_and_resumes(tmp_path, copy_photos, monkeypatch):
    copy_photos(tmp_path / "photos", 3)
    real = local_engine.extract

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(local_engine, "extract", interrupted)
    result = run("build-index", tmp_path / "photos", "-o", tmp_path / "x.index", "-q")
    assert result.exit_code == 130
    assert result.stderr == "interrupted: run the same command again to resume the build\n"
    monkeypatch.setattr(local_engine, "extract", real)
    info = run("info", "--index", tmp_path / "x.index")
    assert info.exit_code == 0 and "an interrupted build is pending: run the same `refsearch build-index`" in info.stdout
    assert json.loads(run("info", "--index", tmp_path / "x.index", "--json").stdout)["pending"] is True
    result = run("build-index", tmp_path / "photos", "-o", tmp_path / "x.index", "-q", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["images"] == 3


def test_a_recipe_file_sets_source_output_and_configuration(tmp_path, copy_photos):
    copy_photos(tmp_path / "photos", 2)
    (tmp_path / "mine.toml").write_text('source = "photos"\noutput = "mine.index"\n[config]\ncell_dim = 16\n')
    result = run("build-index", "--recipe", tmp_path / "mine.toml", "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["index"] == str(tmp_path / "mine.index")
    data = json.loads(run("info", "--index", tmp_path / "mine.index", "--json").stdout)
    assert data["config"]["cell_dim"] == 16 and data["images"] == 2
    assert data["source"] == str((tmp_path / "photos").resolve())


def test_skipped_files_are_reported_by_the_build(tmp_path, copy_photos):
    copy_photos(tmp_path / "photos", 1)
    (tmp_path / "photos" / "empty.jpg").write_bytes(b"")
    Image.new("1", (21_000, 20_000)).save(tmp_path / "photos" / "bomb.png")  # 420 megapixels, 75 kB
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("build-index", tmp_path / "photos", "-o", tmp_path / "s.index", "-q")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.splitlines()[1] == (f"skipped 2 unreadable files (2 new); reasons in "
                                                 f"{tmp_path / 's.index' / 'skipped.tsv'}")
        query = run("query", tmp_path / "photos" / "bomb.png", "--index", tmp_path / "s.index")
        assert_user_error(query, "bomb.png: 21000x20000 is 420 megapixels, over the limit of 50 megapixels",
                          hint="scale it down first")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    report = (tmp_path / "s.index" / "skipped.tsv").read_text().splitlines()
    photos = tmp_path.resolve() / "photos"
    assert report[1:] == [f"{photos / 'bomb.png'}\t21000x20000 is 420 megapixels, over the limit of 50 megapixels",
                          f"{photos / 'empty.jpg'}\tempty file"]


def test_one_pixel_limit_for_every_command_which_max_pixels_changes(built, tmp_path):
    large = tmp_path / "large.png"
    Image.new("L", (8_000, 7_000), 128).save(large)  # 56 megapixels, over the default of 50
    for command in (["query", large, "--index", built, "-k", "1"],
                    ["colorize", large, "--index", built, "--topk", "1", "-o", tmp_path / "out.png", "-q"]):
        assert_user_error(run(*command), "large.png: 8000x7000 is 56 megapixels, over the limit of 50 megapixels",
                          hint="raise the limit with --max-pixels")
    allowed = run("query", large, "--index", built, "-k", "1", "--json", "--max-pixels", "60000000")
    assert allowed.exit_code == 0, allowed.stderr
    assert len(json.loads(allowed.stdout)["results"]) == 1
    (tmp_path / "few").mkdir()
    large.rename(tmp_path / "few" / "large.png")
    built_small = run("build-index", tmp_path / "few", "-o", tmp_path / "few.index", "-q", "--json",
                      "--max-pixels", "1000000")
    assert built_small.exit_code == 0, built_small.stderr
    assert json.loads(built_small.stdout)["skipped"] == 1


def test_query_widen_chooses_how_classes_are_added(built, photos):
    for choice in ("probability", "taxonomy"):
        result = run("query", photos[2], "--index", built, "-k", "3", "--json", "--widen", choice)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["params"]["class_choice"] == choice
    assert_user_error(run("query", photos[2], "--index", built, "--widen", "alphabet"),
                      "--widen must be one of taxonomy, probability, got 'alphabet'")


def test_build_index_input_size_and_crop_are_recorded(photos, tmp_path, copy_photos):
    folder = tmp_path / "few"
    copy_photos(folder, photos[:3])
    result = run("build-index", folder, "-o", tmp_path / "c.index", "--quiet", "--crop", "center", "--input-size",
                 "224", "--weights", "imagenet")
    assert result.exit_code == 0, result.stderr
    info = json.loads(run("info", "--index", tmp_path / "c.index", "--json").stdout)
    assert (info["config"]["crop"], info["config"]["input_size"]) == ("center", 224)
    assert_user_error(run("build-index", folder, "-o", tmp_path / "d.index", "--crop", "middle"),
                      "crop must be one of full, center")


def test_adapt_writes_weights_that_build_index_takes(photos, tmp_path, copy_photos):
    folder = tmp_path / "few"
    copy_photos(folder, photos[:2])
    output = tmp_path / "gray.pt"
    result = run("adapt", folder, "-o", output, "--epochs", "1", "--batch-size", "2", "--input-size", "64",
                 "--quiet", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["photos"] == 2 and summary["epochs"] == 1 and len(summary["losses"]) == 1
    built = run("build-index", folder, "-o", tmp_path / "g.index", "--quiet", "--weights", output, "--input-size", "64")
    assert built.exit_code == 0, built.stderr
    assert_user_error(run("adapt", tmp_path / "nothing-here", "-o", output), "no such folder")
