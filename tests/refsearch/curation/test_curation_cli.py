"""`refsearch dedup`, `outliers`, `clusters`, `export` and `remove` on the planted index."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from refsearch.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def index(planted, tmp_path_factory):
    """A copy of the planted index: the session's opened one holds its LMDB environment, and LMDB
    refuses a second one on the same file in one process."""
    path = tmp_path_factory.mktemp("cli") / "planted.index"
    shutil.copytree(planted.index, path)
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_dedup_json_lists_the_planted_groups(planted, index):
    result = _run("dedup", "--index", index, "--json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)
    found = sorted(({planted.relative(m["path"]) for m in g["members"]} for g in groups), key=len)
    assert found == [planted.exact, planted.near]
    assert {g["kind"] for g in groups} == {"exact", "near"}


def test_dedup_table_and_report(planted, index, tmp_path):
    report = tmp_path / "dups.html"
    result = _run("dedup", "--index", index, "--report", report)
    assert result.exit_code == 0, result.output
    assert "2 groups, 3 redundant copies" in result.stdout
    assert "keep" in result.stdout and "n04146614_school_bus_gray_crop.jpg" in result.stdout
    page = report.read_text()
    assert page.count("<img src=\"data:image/jpeg;base64,") == 5
    assert page.count("class=keep") == 2


def test_dedup_exact_only(planted, index):
    result = _run("dedup", "--index", index, "--exact", "--json")
    groups = json.loads(result.stdout)
    assert [{planted.relative(m["path"]) for m in g["members"]} for g in groups] == [planted.exact]


def test_outliers_json_puts_the_planted_outlier_first(planted, index, tmp_path):
    result = _run("outliers", "--index", index, "-n", "3", "--json", "--report", tmp_path / "o.html")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and planted.relative(rows[0]["path"]) == planted.outlier
    assert {"id", "path", "label", "score", "nearest_id", "nearest_similarity"} <= set(rows[0])
    assert (tmp_path / "o.html").read_text().count("<figure") == 6


def test_outliers_labels_lists_the_mislabelled_photo(planted, index):
    result = _run("outliers", "--index", index, "--labels")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if planted.mislabelled.split("/")[1] in line)
    assert "banana" in line and "daisy" in line


def test_clusters_json_and_table(planted, index, planted_index):
    result = _run("clusters", "--index", index, "-n", "3", "--json")
    clusters = json.loads(result.stdout)
    assert len(clusters) == 3
    assert sum(c["size"] for c in clusters) == sum(len(c["members"]) for c in clusters) == len(planted_index)
    table = _run("clusters", "--index", index, "-n", "3")
    assert table.exit_code == 0 and len(table.stdout.strip().splitlines()) == 1 + 3


def test_export_drops_duplicates_and_lists_paths(planted, index, planted_index, tmp_path):
    destination = tmp_path / "clean.txt"
    result = _run("export", destination, "--index", index, "--mode", "list", "--drop-duplicates", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == len(planted_index) - 3
    listed = {planted.relative(p) for p in destination.read_text().splitlines()}
    assert listed & planted.near == {"photos/n04146614_school_bus.jpg"}
    assert len(listed & planted.exact) == 1


def test_export_of_listed_ids(planted, index, planted_index, tmp_path):
    ids = [r.id for r in planted_index.records()][:2]
    (tmp_path / "ids.txt").write_text(f"# chosen by hand\n{ids[0]}, {ids[1]}\n")
    result = _run("export", tmp_path / "two", "--index", index, "--ids", tmp_path / "ids.txt",
                  "--mode", "symlink")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("linked 2 images")
    assert len(list((tmp_path / "two").rglob("*.*"))) == 2


def test_export_errors_are_one_line(planted, index, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    result = _run("export", tmp_path / "taken", "--index", index)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "already exists" in result.stderr
    missing = _run("dedup", "--index", tmp_path / "nowhere")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ")


def _own_copy(planted, tmp_path):
    path = tmp_path / "own.index"
    shutil.copytree(planted.index, path)
    return path


def test_remove_dry_run_then_drop_duplicates_and_a_rebuild_keeps_them_out(planted, planted_index, tmp_path):
    path = _own_copy(planted, tmp_path)
    total = len(planted_index)
    dry = _run("remove", "--index", path, "--drop-duplicates", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["images_left"] == total and len(planned["images"]) == 3

    result = _run("remove", "--index", path, "--drop-duplicates", "--json")
    assert result.exit_code == 0, result.output
    removed = json.loads(result.stdout)
    assert removed["images_left"] == total - 3
    assert [r["id"] for r in removed["images"]] == [r["id"] for r in planned["images"]]
    assert json.loads(_run("dedup", "--index", path, "--json").stdout) == []

    source = planted_index.manifest.source
    rebuilt = _run("build-index", source, "-o", path, "--json", "-q")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.stdout)["images"] == total - 3


def test_remove_by_id_and_by_path_lists_what_it_removed(planted, planted_index, tmp_path):
    path = _own_copy(planted, tmp_path)
    first, second = list(planted_index.records())[:2]
    result = _run("remove", first.id, second.path, "--index", path)
    assert result.exit_code == 0, result.output
    assert first.path in result.stdout and second.path in result.stdout
    assert f"removed 2 images; {len(planted_index) - 2} left" in result.stdout


def test_a_removed_file_is_counted_as_removed_not_unreadable(planted, planted_index, tmp_path):
    path = _own_copy(planted, tmp_path)
    victim = next(planted_index.records())
    result = _run("remove", victim.id, "--index", path)
    assert result.exit_code == 0, result.output
    assert f"removed 1 image; {len(planted_index) - 1} left" in result.stdout
    rebuilt = _run("build-index", planted_index.manifest.source, "-o", path, "-q")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "unreadable" not in rebuilt.stdout and "skipped" not in rebuilt.stdout
    info = json.loads(_run("info", "--index", path, "--json").stdout)
    assert (info["skipped"], info["removed_files"], info["images"]) == (0, 1, len(planted_index) - 1)
    assert ", 0 skipped, 1 removed (kept out of builds); from " in _run("info", "--index", path).stdout


def test_remove_refuses_unknown_ids_and_an_empty_request_without_changing_anything(planted, planted_index,
                                                                                   tmp_path):
    path = _own_copy(planted, tmp_path)
    known = next(planted_index.records()).id
    unknown = _run("remove", known, 999999, "--index", path)
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: ") and "no image with id 999999" in unknown.stderr
    stranger = _run("remove", known, tmp_path / "not-indexed.jpg", "--index", path)
    assert stranger.exit_code == 2 and "not-indexed.jpg is not in this index" in stranger.stderr
    nothing = _run("remove", "--index", path)
    assert nothing.exit_code == 2 and "name the images to remove" in nothing.stderr
    assert json.loads(_run("remove", known, "--index", path, "--dry-run", "--json").stdout)["images_left"] == \
        len(planted_index)
