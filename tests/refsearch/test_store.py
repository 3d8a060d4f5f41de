"""The LMDB record store: records, descriptors, the path and digest maps, skipped files, ids."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.store import ImageRecord, RecordStore, SkippedFile

CELLS, CELL_DIM, BINS, DIM = 4, 3, 5, 6


def _record(record_id: int, path: str, digest: str = "", **changes) -> ImageRecord:
    values = dict(id=record_id, path=path, label="n01440764", label_source="filename", prediction="n01440764",
                  confidence=0.9, width=640, height=480, digest=digest or f"digest-{record_id}",
                  file_size=1000 + record_id, mtime_ns=10 ** 18 + record_id)
    values.update(changes)
    return ImageRecord(**values)


def _vectors(ids, seed=0):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return (rng.normal(size=(n, DIM)).astype(np.float32),
            rng.normal(size=(n, CELLS, CELL_DIM)).astype(np.float32),
            rng.random((n, CELLS, BINS)).astype(np.float32))


@pytest.fixture
def store(tmp_path):
    opened = RecordStore(tmp_path / "records.lmdb", write=True)
    yield opened
    opened.close()


def test_add_then_read_back_records_and_descriptors(store):
    records = [_record(i, f"/photos/{i}.jpg") for i in (3, 7, 11)]
    global_, cells, hist = _vectors(records)
    store.add(records, global_, cells, hist)
    assert len(store) == 3
    assert store.get(7) == records[1]
    assert store.get_many([11, 3]) == [records[2], records[0]]
    assert list(store.records()) == records  # in id order
    ids, vectors = store.global_vectors(DIM)
    np.testing.assert_array_equal(ids, [3, 7, 11])
    np.testing.assert_array_equal(vectors, global_)
    np.testing.assert_array_equal(store.global_vectors_of([11, 3], DIM), global_[[2, 0]])
    got_cells, got_hist = store.local_features([7, 3], CELLS, CELL_DIM, BINS)
    assert got_cells.dtype == np.float32 and got_cells.shape == (2, CELLS, CELL_DIM)
    # cells are stored as float16
    np.testing.assert_allclose(got_cells, cells[[1, 0]], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(got_hist, hist[[1, 0]])
    states = store.file_states()
    assert states["/photos/7.jpg"].id == 7 and states["/photos/7.jpg"].file_size == 1007


def test_missing_ids_raise_key_error_naming_the_id(store):
    store.add([_record(1, "/a.jpg")], *_vectors([1]))
    with pytest.raises(KeyError, match="42"):
        store.get(42)
    with pytest.raises(KeyError, match="42"):
        store.get_many([1, 42])


def test_digests_map_to_every_record_with_that_content(store):
    records = [_record(1, "/a.jpg", "same"), _record(2, "/copy-of-a.jpg", "same"),
               _record(3, "/b.jpg", "other")]
    store.add(records, *_vectors(records))
    assert sorted(store.ids_with_digest("same")) == [1, 2]
    assert store.ids_with_digest("other") == [3]
    assert store.ids_with_digest("unknown") == []
    assert store.delete([1]) == 1
    assert store.ids_with_digest("same") == [2]


def test_delete_removes_everything_of_a_record_and_ignores_unknown_ids(store):
    records = [_record(i, f"/{i}.jpg") for i in range(4)]
    store.add(records, *_vectors(records))
    assert store.delete([1, 2, 99]) == 2
    assert len(store) == 2
    assert [r.id for r in store.records()] == [0, 3]
    ids, _ = store.global_vectors(DIM)
    np.testing.assert_array_equal(ids, [0, 3])
    assert set(store.file_states()) == {"/0.jpg", "/3.jpg"}
    with pytest.raises(KeyError):
        store.get(1)


def test_skipped_files_are_remembered_forgotten_and_cleared_when_the_file_is_added(store):
    store.mark_skipped([SkippedFile("/bad.jpg", "empty file", 0, 5),
                        SkippedFile("/worse.jpg", "not an image", 3, 6)])
    reasons = {s.path: s.reason for s in store.skipped()}
    assert reasons == {"/bad.jpg": "empty file", "/worse.jpg": "not an image"}
    store.forget_skipped(["/worse.jpg"])
    assert [s.path for s in store.skipped()] == ["/bad.jpg"]
    # once the file is fixed and indexed, it is no longer listed as skipped
    store.add([_record(5, "/bad.jpg")], *_vectors([5]))
    assert store.skipped() == []


def test_reserved_ids_are_never_reused_even_after_delete_and_reopen(tmp_path):
    path = tmp_path / "records.lmdb"
    store = RecordStore(path, write=True)
    assert store.reserve_ids(3) == 0
    assert store.reserve_ids(2) == 3
    store.add([_record(4, "/x.jpg")], *_vectors([4]))
    store.delete([4])
    store.close()
    store = RecordStore(path, write=True)
    assert store.reserve_ids(1) == 5
    store.close()


def test_read_only_store_reads_what_was_written_and_refuses_a_missing_one(tmp_path):
    path = tmp_path / "records.lmdb"
    writer = RecordStore(path, write=True)
    records = [_record(0, "/a.jpg")]
    writer.add(records, *_vectors(records))
    writer.close()
    reader = RecordStore(path)
    try:
        assert reader.get(0) == records[0]
    finally:
        reader.close()
    with pytest.raises(FileNotFoundError):
        RecordStore(tmp_path / "nothing.lmdb")


def test_adding_a_record_again_under_the_same_id_replaces_it(store):
    store.add([_record(1, "/a.jpg", confidence=0.1)], *_vectors([1], seed=1))
    global_, cells, hist = _vectors([1], seed=2)
    store.add([_record(1, "/a.jpg", confidence=0.7)], global_, cells, hist)
    assert len(store) == 1
    assert store.get(1).confidence == 0.7
    np.testing.assert_array_equal(store.global_vectors_of([1], DIM), global_)
