"""The LMDB metadata store: packed records, generations, the path and digest maps, skipped files."""
from __future__ import annotations

from pathlib import Path

import pytest

from refsearch.errors import NotFoundError
from refsearch.store import ImageRecord, MetadataReader, MetadataWriter, SkippedFile

ROOT = Path("/photos")


def _record(record_id: int, name: str, digest: str = "", **changes) -> ImageRecord:
    values = dict(id=record_id, path=str(ROOT / name), label="n01440764", label_source="filename",
                  prediction="n02123045", confidence=0.9, width=640, height=480,
                  digest=digest or f"{record_id:032x}", file_size=1000 + record_id, mtime_ns=10 ** 18 + record_id)
    values.update(changes)
    return ImageRecord(**values)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "metadata.lmdb"


def test_records_round_trip_exactly_with_paths_relative_to_the_root(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    records = [_record(3, "a/x.jpg"), _record(4, "b.png", label_source="predicted", label="n02123045"),
               _record(9, "c d/é.jpg", digest="")]
    records[2] = ImageRecord(**{**records[2].__dict__, "digest": ""})
    writer.add(records, 1, {"next_id": 10})
    assert writer.get_many([3, 4, 9]) == records
    assert list(writer.records()) == records
    assert writer.info("next_id") == 10
    writer.close()
    raw = path / "data.mdb"
    assert raw.stat().st_size < 64 * 1024 and b"/photos" not in raw.read_bytes()  # stored relative


def test_a_reader_sees_only_the_generation_it_opened(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    writer.add([_record(0, "old.jpg"), _record(1, "gone.jpg")], 1, {})
    writer.generation = 2
    writer.add([_record(2, "new.jpg")], 2, {})
    removed = writer.mark_removed([1, 55], 2)
    assert [r.id for r in removed] == [1]
    first = MetadataReader(path, ROOT, generation=1)
    second = MetadataReader(path, ROOT, generation=2)
    assert [r.id for r in first.records()] == [0, 1]
    assert [r.id for r in second.records()] == [0, 2]
    assert first.get(1).path == "/photos/gone.jpg"
    with pytest.raises(NotFoundError, match="no image with id 1"):
        second.get(1)
    with pytest.raises(NotFoundError):
        first.get(2)
    assert first.id_of_path("/photos/gone.jpg") == 1 and second.id_of_path("/photos/gone.jpg") is None
    assert list(second.columns().ids) == [0, 2]
    for opened in (first, second, writer):
        opened.close()


def test_a_changed_file_maps_its_path_to_the_generation_s_record(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    writer.add([_record(0, "p.jpg", digest="ab" * 16)], 1, {})
    writer.generation = 2
    writer.mark_removed([0], 2)
    writer.add([_record(1, "p.jpg", digest="ab" * 16)], 2, {})
    old, new = MetadataReader(path, ROOT, 1), MetadataReader(path, ROOT, 2)
    assert old.id_of_path("/photos/p.jpg") == 0 and new.id_of_path("/photos/p.jpg") == 1
    assert old.ids_with_digest("ab" * 16) == [0] and new.ids_with_digest("ab" * 16) == [1]
    assert new.file_states()["/photos/p.jpg"].id == 1
    for opened in (old, new, writer):
        opened.close()


def test_purged_records_leave_the_maps(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    writer.add([_record(0, "p.jpg", digest="cd" * 16)], 1, {})
    writer.purge([0])
    assert list(writer.records()) == [] and writer.ids_with_digest("cd" * 16) == []
    assert writer.id_of_path("/photos/p.jpg") is None
    writer.close()


def test_skipped_files_and_pending_removals(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    writer.mark_skipped([SkippedFile("/photos/bad.jpg", "empty file", 0, 5)])
    assert writer.skipped() == [SkippedFile("/photos/bad.jpg", "empty file", 0, 5)]
    writer.add([_record(0, "bad.jpg")], 1, {})  # a repaired file leaves the skipped list
    assert writer.skipped() == []
    writer.mark_removed([0], 1)
    assert writer.pending_removals().tolist() == [0]
    writer.forget_pending()
    assert writer.pending_removals().tolist() == []
    writer.close()


def test_readers_and_the_writer_of_one_file_share_its_environment(path):
    writer = MetadataWriter(path, ROOT, generation=1, create=True)
    reader = MetadataReader(path, ROOT, generation=1)
    assert reader.env is writer.env
    writer.add([_record(0, "a.jpg")], 1, {})
    reader.close()
    writer.add([_record(1, "b.jpg")], 1, {})  # still open for the writer
    assert [r.id for r in writer.records()] == [0, 1]
    writer.close()
    again = MetadataReader(path, ROOT, generation=1)
    assert len(list(again.records())) == 2
    again.close()


def test_a_missing_store_is_damage_and_no_reader_or_writer_creates_it(tmp_path):
    from refsearch.errors import IndexDamagedError

    store = tmp_path / "metadata.lmdb"
    with pytest.raises(IndexDamagedError, match=r"metadata.lmdb/data.mdb is missing"):
        MetadataReader(store, ROOT, 1)
    store.mkdir()
    with pytest.raises(IndexDamagedError, match=r"metadata.lmdb/data.mdb is missing"):
        MetadataWriter(store, ROOT, 1, create=False)
    assert list(store.iterdir()) == []
