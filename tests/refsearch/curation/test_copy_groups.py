"""Near-duplicate groups are verified copies only, through the library and the commands: look-alikes stay
apart however similar, dropping duplicates drops only verified copies, a dry run changes nothing, and an
unreadable file (or one over the pixel limit) leaves its pairs unverified with the reason. The index uses
the tiny backbone, and a threshold of -1 makes every neighbour link a candidate, so the pixels alone
decide."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from copies import edited_copy
from typer.testing import CliRunner

import refsearch
from refsearch.cli import app

DEMO = Path(__file__).resolve().parents[3] / "index_builds" / "demo" / "photos"
LOOK_ALIKES = ["n02128385_leopard.jpg", "n02128757_snow_leopard.jpg", "n02130308_cheetah.jpg",
               "n02123045_tabby.jpg", "n02123159_tiger_cat.jpg"]
runner = CliRunner()


@pytest.fixture(scope="module")
def collection(tmp_path_factory, tiny_build) -> Path:
    """Look-alike photos, a pug and an edited copy of it, a tabby and an identical copy of it; indexed."""
    root = tmp_path_factory.mktemp("copies")
    photos = root / "photos"
    photos.mkdir()
    for name in [*LOOK_ALIKES, "n02110958_pug.jpg"]:
        shutil.copy2(DEMO / name, photos / name)
    edited_copy(DEMO / "n02110958_pug.jpg", photos / "n02110958_pug_copy.jpg", crop=0.1, scale=0.4,
                quality=30, gray=True, caption="BEST FRIENDS")
    shutil.copy2(DEMO / "n02123045_tabby.jpg", photos / "n02123045_tabby_again.jpg")
    tiny_build(photos, root / "copies.index")
    return root


@pytest.fixture
def index_path(collection, tmp_path) -> Path:
    """A private copy of the index (the same photos), for tests that change it."""
    return Path(shutil.copytree(collection / "copies.index", tmp_path / "copies.index"))


def _names(paths) -> set[str]:
    return {Path(p).name for p in paths}


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_only_verified_copies_group_when_every_neighbour_is_a_candidate(index_path):
    with refsearch.Index.open(index_path) as index:
        groups = index.curation.near_duplicates(threshold=-1)
        assert groups.candidate_pairs >= len(index)  # every link was checked
    assert sorted(_names(m.path for m in g.members) for g in groups) == [
        {"n02110958_pug.jpg", "n02110958_pug_copy.jpg"}, {"n02123045_tabby.jpg", "n02123045_tabby_again.jpg"}]
    pug = next(g for g in groups if g.kind == "near")
    assert Path(pug.representative.path).name == "n02110958_pug.jpg" and pug.representative.check is None
    check = pug.members[1].check
    assert check.verified and (check.first, check.second) == (pug.representative.id, pug.members[1].id)
    assert check.scale == pytest.approx(0.4, rel=0.1) and "luminance correlation" in check.reason
    tabby = next(g for g in groups if g.kind == "exact")
    assert tabby.members[1].check.reason == "identical files"
    row = groups.to_records()[1]
    assert row["check_verified"] and row["check_reason"] == check.reason and "check" not in row


def test_a_look_alike_pair_is_explained(index_path):
    with refsearch.Index.open(index_path) as index:
        ids = {Path(r.path).name: r.id for r in index.records()}
        check = index.curation.check_copies(ids["n02128385_leopard.jpg"], ids["n02128757_snow_leopard.jpg"])
    assert not check.verified and not check.unreadable and check.reason


def test_an_unreadable_copy_leaves_its_pairs_unverified(collection, index_path):
    with refsearch.Index.open(index_path) as index:
        pug_copy = index.record_of_path(collection / "photos" / "n02110958_pug_copy.jpg")
    moved = collection / "photos" / "n02110958_pug_copy.jpg"
    hidden = moved.with_suffix(".hidden")
    moved.rename(hidden)
    try:
        with refsearch.Index.open(index_path) as index:
            groups = index.curation.near_duplicates(threshold=-1)
        result = _run("dedup", "--index", index_path, "--threshold", -1, "-q")
    finally:
        hidden.rename(moved)
    assert all(pug_copy.id not in g.ids for g in groups)
    reasons = {c.reason for c in groups.unreadable}
    assert reasons == {f"cannot read {moved}: no such file"}
    assert all(c.unreadable and not c.verified and pug_copy.id in (c.first, c.second)
               for c in groups.unreadable)
    assert result.exit_code == 0, result.output
    assert f"warning: not verified: cannot read {moved}: no such file" in result.stderr


def test_the_pixel_limit_holds_for_the_files_verified(index_path):
    result = _run("dedup", "--index", index_path, "--threshold", -1, "--json", "-q", "--max-pixels", 1000)
    assert result.exit_code == 0, result.output
    assert [group["kind"] for group in json.loads(result.stdout)] == ["exact"]  # identical files: not decoded
    assert "megapixels, over the limit of 0.001 megapixels" in result.stderr
    assert "n02110958_pug" in result.stderr


def test_dedup_json_and_table_say_why(index_path, tmp_path):
    listed = json.loads(_run("dedup", "--index", index_path, "--threshold", -1, "--json", "-q").stdout)
    copy = next(m for g in listed if g["kind"] == "near" for m in g["members"][1:])
    assert copy["check"]["verified"] and "keypoint matches align them" in copy["check"]["reason"]
    assert listed[0]["members"][0]["check"] is None
    table = _run("dedup", "--index", index_path, "--threshold", -1, "-q", "--report", tmp_path / "d.html")
    assert table.exit_code == 0, table.output
    assert copy["check"]["reason"] in table.stdout and "2 groups, 2 redundant copies" in table.stdout
    page = (tmp_path / "d.html").read_text()
    assert "keypoint matches align them" in page and "identical files" in page


def test_export_drops_only_verified_copies_and_a_dry_run_writes_nothing(index_path, tmp_path):
    with refsearch.Index.open(index_path) as index:
        total = len(index)
    destination = tmp_path / "clean.txt"
    options = ["--index", index_path, "--mode", "list", "--drop-duplicates", "--threshold", -1, "-q"]
    dry = _run("export", destination, *options, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert not destination.exists()
    assert planned["dry_run"] and planned["files"] == total - 2
    assert _names(c["path"] for c in planned["dropped_duplicates"]) & {"n02110958_pug_copy.jpg"}
    assert all(c["reason"] for c in planned["dropped_duplicates"]) and len(planned["dropped_duplicates"]) == 2
    table = _run("export", destination, *options, "--dry-run")
    assert "would leave out 2 verified copies" in table.stdout and "nothing written" in table.stdout
    assert not destination.exists()

    done = json.loads(_run("export", destination, *options, "--json").stdout)
    assert not done["dry_run"] and done["files"] == total - 2
    exported = _names(destination.read_text().splitlines())
    assert set(LOOK_ALIKES) <= exported and "n02110958_pug.jpg" in exported
    assert "n02110958_pug_copy.jpg" not in exported
    assert len(exported & {"n02123045_tabby.jpg", "n02123045_tabby_again.jpg"}) == 1


def test_remove_drops_only_verified_copies_after_a_dry_run_that_changes_nothing(index_path):
    with refsearch.Index.open(index_path) as index:
        total = len(index)
    options = ["--index", index_path, "--drop-duplicates", "--threshold", -1, "-q"]
    dry = _run("remove", *options, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 images; nothing changed" in dry.stdout and "copy of" in dry.stdout
    with refsearch.Index.open(index_path) as index:
        assert len(index) == total
    removed = json.loads(_run("remove", *options, "--json").stdout)
    assert removed["images_left"] == total - 2
    assert {c["id"] for c in removed["duplicates"]} == {r["id"] for r in removed["images"]}
    with refsearch.Index.open(index_path) as index:
        left = _names(r.path for r in index.records())
        assert set(LOOK_ALIKES) <= left and "n02110958_pug_copy.jpg" not in left
        assert index.curation.near_duplicates(threshold=-1) == []
    nothing = _run("remove", *options)
    assert nothing.exit_code == 0 and "removed 0 images" in nothing.stdout
