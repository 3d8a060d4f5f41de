"""Subsets, their export (copy, symlink, list; all or nothing) and removing images from the index."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import refsearch
from refsearch.images import file_digest, find_images

DEMO = Path(__file__).resolve().parents[3] / "index_builds" / "demo" / "photos"


def test_a_copied_subset_round_trips(planted, planted_index, tmp_path):
    redundant = planted_index.curation.near_duplicates().redundant_ids()
    subset = planted_index.curation.subset(exclude=redundant)
    assert len(subset) == len(planted_index) - len(redundant)
    summary = planted_index.curation.subset(exclude=redundant).export(tmp_path / "clean")
    clean = tmp_path / "clean"
    exported = {p.path.relative_to(clean).as_posix(): p.path for p in find_images(clean)}
    kept = {planted.relative(r.path): r for r in subset.records()}
    assert exported.keys() == kept.keys()  # the layout under the indexed folder is kept
    assert all(file_digest(exported[name].read_bytes()) == record.digest for name, record in kept.items())
    assert summary.files == len(kept) and summary.bytes == sum(r.file_size for r in kept.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_subset_keeps_the_given_order_once(planted_index):
    ids = [r.id for r in planted_index.records()][:3]
    assert list(planted_index.curation.subset([ids[2], ids[0], ids[2]])) == [ids[2], ids[0]]


@pytest.fixture
def two_pugs(tmp_path):
    """An index of one pug photo filed twice under the same name, in two wnid folders."""
    source = tmp_path / "source"
    for folder in ("n02110958", "other/n02110958"):
        (source / folder).mkdir(parents=True)
        shutil.copy2(DEMO / "n02110958_pug.jpg", source / folder / "dog.jpg")
    refsearch.build_index(source, tmp_path / "dogs.index", progress=False)
    with refsearch.Index.open(tmp_path / "dogs.index") as index:
        yield index


def test_a_flat_export_keeps_folder_labels_and_separates_equal_names(two_pugs, tmp_path):
    second = max(r.id for r in two_pugs.records())
    two_pugs.curation.export(tmp_path / "flat", layout="flat")
    names = sorted(p.name for p in (tmp_path / "flat").iterdir())
    assert names == [f"n02110958_dog-{second}.jpg", "n02110958_dog.jpg"]


def test_symlinks_point_at_the_indexed_files(planted_index, tmp_path):
    planted_index.curation.subset(exclude=[]).export(tmp_path / "links", mode="symlink", layout="flat")
    links = list((tmp_path / "links").iterdir())
    assert len(links) == len(planted_index)
    assert {str(link.resolve()) for link in links} == {r.path for r in planted_index.records()}


def test_a_list_export_writes_one_path_per_line(planted_index, tmp_path):
    bus = next(g for g in planted_index.curation.near_duplicates() if len(g) == 3)
    planted_index.curation.subset(bus.ids).export(tmp_path / "bus.txt", mode="list")
    assert (tmp_path / "bus.txt").read_text().splitlines() == [m.path for m in bus.members]


def test_an_export_never_overwrites(planted_index, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        planted_index.curation.export(tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    planted_index.curation.export(tmp_path / "empty", mode="symlink")  # an empty folder is fine
    assert len(list((tmp_path / "empty").rglob("*.*"))) == len(planted_index)


def test_a_failed_export_leaves_nothing(planted_index, tmp_path, monkeypatch):
    copied = []

    def copy_then_fail(source, target):
        if len(copied) == 3:
            raise OSError("disk full")
        copied.append(shutil.copyfile(source, target))

    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        planted_index.curation.export(tmp_path / "out")
    assert len(copied) == 3
    assert list(tmp_path.iterdir()) == []


def test_an_export_of_a_vanished_file_fails_before_writing(two_pugs, tmp_path):
    vanished = next(two_pugs.records()).path
    Path(vanished).unlink()
    with pytest.raises(FileNotFoundError, match="dog.jpg"):
        two_pugs.curation.export(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_modes_and_ids_are_refused(planted_index, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        planted_index.curation.export(tmp_path / "x", mode="move")
    with pytest.raises(ValueError, match="layout"):
        planted_index.curation.export(tmp_path / "x", layout="nested")
    with pytest.raises(KeyError):
        planted_index.curation.subset([10_000]).export(tmp_path / "x", mode="list")


def test_removing_redundant_copies(own_index):
    before = len(own_index)
    redundant = own_index.curation.near_duplicates().redundant_ids()
    assert refsearch.remove_images(own_index.path, redundant) == len(redundant)
    with own_index.refreshed() as latest:
        assert len(latest) == before - len(redundant)
        assert latest.curation.near_duplicates() == []
        assert not set(redundant) & {r.id for r in latest.records()}
        assert len(latest.curation.clusters(n=2).to_records()) == len(latest)
    own_index.close()  # LMDB refuses a second environment on one file in one process
    with refsearch.Index.open(own_index.path) as reopened:
        assert len(reopened) == before - len(redundant)
