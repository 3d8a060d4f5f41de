"""IndexWriter: one writer at a time, generations that readers keep, updates that add segments instead
of rebuilding, removal as tombstones, compaction. Built with the tiny backbone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import refsearch
from refsearch import layout
from refsearch.errors import IndexLockedError, IndexStateError, InvalidArgumentError
from refsearch.lock import WriterLock, read_holder
from refsearch.manifest import Manifest
from refsearch.status import index_status
from refsearch.writer import IndexWriter

CRASH_DRIVER = Path(__file__).resolve().parents[1] / "support" / "crash_driver.py"


@pytest.fixture
def photos(tmp_path, copy_photos):
    return copy_photos(tmp_path / "photos", 12)


def _segment_files(index: Path) -> dict[str, float]:
    return {str(p.relative_to(index)): p.stat().st_mtime_ns for p in (index / layout.SEGMENTS).rglob("*")
            if p.is_file()}


def test_a_second_writer_is_refused_naming_the_holder_or_waits_for_it(tmp_path, photos, tiny_build):
    output = tmp_path / "w.index"
    tiny_build(tmp_path / "photos", output)
    with IndexWriter.open(output, command="first"):
        holder = read_holder(output)
        assert holder.pid == os.getpid() and holder.command == "first"
        with pytest.raises(IndexLockedError, match=rf"being written by pid {os.getpid()} on .*since .*first.*--wait"):
            tiny_build(tmp_path / "photos", output)
        assert index_status(output).writer.startswith(f"pid {os.getpid()}")
    assert index_status(output).writer is None

    first = IndexWriter.open(output, command="first")
    waited: list[str] = []
    result: dict = {}

    def second():
        result["summary"] = tiny_build(tmp_path / "photos", output, wait=True, on_wait=waited.append)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive() and waited and "first" in waited[0]  # queued behind the first writer
    first.close()
    thread.join(30)
    assert result["summary"].images == 12 and result["summary"].added == 0


def test_two_builds_at_once_never_store_an_image_twice(tmp_path, photos):
    output = tmp_path / "race.index"
    job = json.dumps({"op": "build", "source": str(tmp_path / "photos"), "index": str(output)})
    runs = [subprocess.Popen([sys.executable, str(CRASH_DRIVER), job], stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    codes = sorted(run.returncode for run in runs)
    # one builds; the other either finds the index being written and stops, or comes second and adds nothing
    assert codes[0] == 0, errors
    assert codes[1] == 0 or "IndexLockedError" in "".join(errors), errors
    with refsearch.Index.open(output) as index:
        paths = [r.path for r in index.records()]
        assert len(paths) == len(set(paths)) == len(index) == 12


def test_an_index_still_being_created_is_locked_not_foreign(tmp_path, photos, tiny_build):
    output = tmp_path / "new.index"
    output.mkdir()
    (output / (layout.MANIFEST + ".tmp")).write_text("{")  # its creator is between writing and renaming
    creator = WriterLock(output, "creator").acquire()
    with pytest.raises(IndexLockedError, match="being written by .*creator"):
        tiny_build(tmp_path / "photos", output)
    creator.release()
    # the creator died before its manifest existed: the next build takes the folder over
    assert tiny_build(tmp_path / "photos", output).added == 12


def test_a_lock_left_by_a_killed_writer_is_taken_over(tmp_path, photos, tiny_build):
    output = tmp_path / "dead.index"
    tiny_build(tmp_path / "photos", output)
    holder = subprocess.Popen([sys.executable, str(CRASH_DRIVER), json.dumps({"op": "hold-lock", "index": str(output)})],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
        IndexWriter.open(output)
    holder.kill()
    holder.wait()
    summary = tiny_build(tmp_path / "photos", output)
    assert any(f"pid {holder.pid}" in note and "died" in note for note in summary.notes)


def test_readers_keep_their_generation_while_an_update_publishes_a_new_one(tmp_path, photos, demo_photos,
                                                                        tiny_build):
    output = tmp_path / "gen.index"
    tiny_build(tmp_path / "photos", output)
    old = refsearch.Index.open(output)
    before = old.search(photos[3], k=5, any_class=True)
    assert old.generation == 1 and len(old) == 12

    added = [Path(shutil.copy2(p, tmp_path / "photos" / p.name)) for p in demo_photos[20:24]]
    photos[0].unlink()
    summary = tiny_build(tmp_path / "photos", output)
    assert (summary.added, summary.removed, summary.images, summary.generation) == (4, 1, 15, 2)

    # the open reader still answers from generation 1, whole
    assert len(old) == 12 and old.record(0).path == str(photos[0].resolve())
    again = old.search(photos[3], k=5, any_class=True)
    assert [r.id for r in again] == [r.id for r in before]
    assert all(r.path not in {str(a.resolve()) for a in added} for r in old.search(added[0], k=12, any_class=True))
    # a reopened (refreshed) index sees generation 2
    new = old.refreshed()
    assert new is not old and new.generation == 2 and len(new) == 15
    assert new.search(added[0], k=1, any_class=True)[0].path == str(added[0].resolve())
    assert str(photos[0].resolve()) not in {r.path for r in new.records()}
    assert new.refreshed() is new
    old.close()
    new.close()


def test_an_update_adds_a_segment_and_leaves_the_others_untouched(tmp_path, photos, demo_photos, tiny_build):
    output = tmp_path / "inc.index"
    tiny_build(tmp_path / "photos", output)
    first = _segment_files(output)
    shutil.copy2(demo_photos[30], tmp_path / "photos" / demo_photos[30].name)
    tiny_build(tmp_path / "photos", output)
    second = _segment_files(output)
    assert {k: v for k, v in second.items() if k in first} == first  # not rewritten
    manifest = Manifest.load(output)
    assert [s.rows for s in manifest.segments] == [12, 1]


def test_removal_is_a_tombstone_until_compaction(tmp_path, photos, tiny_build):
    output = tmp_path / "rm.index"
    tiny_build(tmp_path / "photos", output)
    with refsearch.Index.open(output) as index:
        victims = [index.record_of_path(photos[i]).id for i in (2, 5)]
        reference = {str(p): [r.path for r in index.search(p, k=4, any_class=True, exclude_self=True)
                              if r.id not in victims] for p in photos[:4]}
    files = _segment_files(output)
    assert refsearch.remove_images(output, victims) == 2
    assert _segment_files(output) == files  # nothing rewritten
    manifest = Manifest.load(output)
    assert (manifest.images, manifest.tombstones) == (10, 2)
    with refsearch.Index.open(output) as index:
        assert len(index) == 10 and not {r.id for r in index.records()} & set(victims)
        for path in photos[:4]:
            found = [r.id for r in index.search(path, k=11, any_class=True)]
            assert not set(found) & set(victims) and len(found) == 10

    summary = refsearch.compact_index(output)
    assert summary.images == 10
    manifest = Manifest.load(output)
    assert manifest.tombstones == 0 and sum(s.rows for s in manifest.segments) == 10
    assert all(not s.contiguous for s in manifest.segments)
    with refsearch.Index.open(output) as index:
        assert len(index) == 10 and sorted(r.path for r in index.records()) == \
            sorted(str(p.resolve()) for i, p in enumerate(photos) if i not in (2, 5))
        for path in photos[:4]:
            if str(path.resolve()) in {r.path for r in index.records()}:
                got = [r.path for r in index.search(path, k=4, any_class=True, exclude_self=True)]
                assert got[:3] == reference[str(path)][:3]
    # the removed files stay out of later builds; compaction keeps ids, so records are unchanged
    assert tiny_build(tmp_path / "photos", output).images == 10


def test_build_settings_are_validated(tmp_path, photos, tiny_config):
    with pytest.raises(InvalidArgumentError, match="grid 5 does not fit backbone tiny-test"):
        refsearch.build_index(tmp_path / "photos", tmp_path / "g.index", tiny_config.with_(grid=5), progress=False)
    assert not (tmp_path / "g.index").exists()
    for bad, message in (({"global_dim": 0}, "global_dim must be at least 1"),
                         ({"hist_bins": 1}, "hist_bins must be from 2 to 256"),
                         ({"hist_short_side": 36, "hist_border": 16}, "fewer than the 7 cells")):
        with pytest.raises(InvalidArgumentError, match=message):
            refsearch.IndexConfig(**bad)
    with pytest.raises(InvalidArgumentError, match="luminance_weight must be at least 0"):
        refsearch.SearchSettings(luminance_weight=-1)


def test_an_empty_folder_builds_an_empty_index_with_a_note(tmp_path, tiny_build):
    (tmp_path / "empty").mkdir()
    summary = tiny_build(tmp_path / "empty", tmp_path / "e.index")
    assert summary.images == 0 and "holds no image files" in summary.notes[0]
    with refsearch.Index.open(tmp_path / "e.index") as index:
        assert len(index) == 0
        with pytest.raises(IndexStateError, match="holds no images"):
            index.search(np.zeros((32, 32), np.uint8))


def test_the_stored_histograms_keep_the_correlation(tmp_path, photos, tiny_build):
    from refsearch.features import load_prepared
    from refsearch.luminance import correlation

    output = tmp_path / "h.index"
    tiny_build(tmp_path / "photos", output)
    with refsearch.Index.open(output) as index:
        ids = [r.id for r in index.records()]
        _, stored = index.local_features(ids)
        exact = np.stack([load_prepared(index.record(i).path, index.config, 56).histograms for i in ids])
    for a in range(len(ids)):
        for b in range(len(ids)):
            np.testing.assert_allclose(correlation(stored[a], stored[b]), correlation(exact[a], exact[b]), atol=1e-3)


def test_folders_and_broken_links_named_like_images_are_listed_as_skipped(tmp_path, copy_photos, tiny_build):
    source = tmp_path / "photos"
    copy_photos(source, 2)
    (source / "album.jpg").mkdir()
    copy_photos(source / "album.jpg", 1)  # its contents are still indexed
    (source / "gone.png").symlink_to(tmp_path / "nowhere.png")
    summary = tiny_build(source, tmp_path / "s.index")
    assert (summary.images, summary.skipped, summary.skipped_total) == (3, 2, 2)
    rows = dict(line.split("\t") for line in Path(summary.report).read_text().splitlines()[1:])
    assert set(rows) == {str(source.resolve() / "album.jpg"), str(source.resolve() / "gone.png")}
    assert "folder" in rows[str(source.resolve() / "album.jpg")] and "broken link" in rows[str(source.resolve() / "gone.png")]
    again = tiny_build(source, tmp_path / "s.index")
    assert (again.skipped, again.skipped_total, again.images) == (0, 2, 3)
    (source / "gone.png").unlink()
    assert tiny_build(source, tmp_path / "s.index").skipped_total == 1  # forgotten once gone
