"""FAISS over the segments: class-restricted exact search, all-class search exact and by class means,
stacked segments, tombstones."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.projection import l2_normalize
from refsearch.vector_index import ClassStats, GlobalIndex, write_class_partitioned

NUM_CLASSES = 1000


def _data(n=30, dim=16, seed=0, first_id=7):
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.normal(size=(n, dim)))
    ids = np.arange(n, dtype=np.int64) * 10 + first_id  # sparse ids, as after compaction
    classes = np.array([5, 17, 999])[np.arange(n) % 3]
    return ids, vectors, classes


def _index(tmp_path, parts, tombstones=()):
    paths, stats = [], ClassStats.empty(NUM_CLASSES, parts[0][1].shape[1])
    for number, (ids, vectors, classes) in enumerate(parts):
        path = tmp_path / f"segment{number}.faiss"
        write_class_partitioned(path, vectors, ids, classes, NUM_CLASSES)
        paths.append((path, len(ids)))
        stats.add(vectors, classes)
    return GlobalIndex(paths, stats, np.array(tombstones, np.int64), parts[0][1].shape[1])


@pytest.fixture
def exact(tmp_path):
    ids, vectors, classes = _data()
    return _index(tmp_path, [(ids, vectors, classes)]), ids, vectors, classes


def test_class_sizes_and_totals(exact):
    index, ids, vectors, _ = exact
    assert index.ntotal == 30 and index.dim == 16
    sizes = index.class_sizes()
    assert sizes.shape == (NUM_CLASSES,)
    assert sizes[5] == sizes[17] == sizes[999] == 10 and sizes.sum() == 30


def test_search_inside_classes_returns_only_their_images_in_exact_cosine_order(exact):
    index, ids, vectors, classes = exact
    query = vectors[4][None]  # id 47, class 17
    sims, found = index.search(query, 5, [17])
    members = ids[classes == 17]
    expected = members[np.argsort(-(vectors[classes == 17] @ vectors[4]))][:5]
    np.testing.assert_array_equal(found[0], expected)
    assert found[0, 0] == 47 and sims[0, 0] == pytest.approx(1.0, abs=1e-3)  # stored as float16
    _, found = index.search(query, 20, [5, 17])
    assert set(found[0]) == set(ids[classes != 999])


def test_search_of_all_classes_finds_everything(exact):
    index, ids, vectors, _ = exact
    _, found = index.search(vectors, 1, None)
    np.testing.assert_array_equal(found[:, 0], ids)
    _, found = index.search(vectors[:1], 30, None)
    assert set(found[0]) == set(ids)


def test_fewer_images_than_k_pad_with_minus_one(exact):
    index, _, vectors, _ = exact
    sims, found = index.search(vectors[:1], 15, [5])
    assert (found[0, :10] >= 0).all() and (found[0, 10:] == -1).all() and np.isinf(sims[0, 10:]).all()


def test_stacked_segments_answer_as_one_index(tmp_path):
    a, b = _data(30, seed=1, first_id=0), _data(21, seed=2, first_id=1000)
    (tmp_path / "two").mkdir()
    stacked = _index(tmp_path / "two", [a, b])
    merged = _index(tmp_path, [tuple(np.concatenate(x) for x in zip(a, b))])
    queries = l2_normalize(np.random.default_rng(3).normal(size=(5, 16)))
    for classes in ([5], [17, 999], None):
        got_sims, got = stacked.search(queries, 8, classes)
        want_sims, want = merged.search(queries, 8, classes)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_sims, want_sims, atol=1e-6)
    ids, vectors = stacked.vectors()
    assert list(ids) == sorted(np.concatenate([a[0], b[0]]).tolist())
    np.testing.assert_allclose(vectors[list(ids).index(1010)], b[1][1], atol=1e-3)
    np.testing.assert_allclose(stacked.vectors_of([1010, 10], [17, 17]), [b[1][1], a[1][1]], atol=1e-3)


def test_tombstones_are_never_returned(tmp_path):
    ids, vectors, classes = _data()
    index = _index(tmp_path, [(ids, vectors, classes)], tombstones=[47, 7])
    _, found = index.search(vectors[4][None], 30, [17])
    assert 47 not in found[0] and (found[0] >= 0).sum() == 9
    _, found = index.search(vectors, 30, None)
    assert not np.isin(found, [47, 7]).any()
    _, found = index.search(vectors, 30, None, probes=2)
    assert not np.isin(found, [47, 7]).any()
    assert 47 not in index.vectors()[0]


def test_probing_the_nearest_class_means_finds_a_query_s_class(tmp_path):
    rng = np.random.default_rng(0)
    centres = l2_normalize(rng.normal(size=(50, 32)))
    classes = np.repeat(np.arange(50), 20)
    vectors = l2_normalize(centres[classes] + 0.15 * rng.normal(size=(1000, 32)))
    ids = np.arange(1000, dtype=np.int64)
    index = _index(tmp_path, [(ids, vectors, classes)])
    exact_sims, exact = index.search(vectors[::50], 10, None)
    probed_sims, probed = index.search(vectors[::50], 10, None, probes=3)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, probed)])
    assert recall > 0.95
    _, one = index.search(vectors[::50], 10, None, probes=1)
    assert np.isin(one, ids[np.isin(classes, classes[::50])]).all()  # one probe: the query's own class


def test_class_stats_round_trip_and_centroids(tmp_path):
    stats = ClassStats.empty(NUM_CLASSES, 4)
    stats.add(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32), np.array([3, 3]))
    stats.add(np.array([[0, 1, 0, 0]], np.float32), np.array([3]), sign=-1)
    record = stats.save(tmp_path / "s.npy")
    loaded = ClassStats.load(tmp_path / "s.npy", record)
    assert loaded.counts[3] == 1 and loaded.counts.sum() == 1
    np.testing.assert_allclose(loaded.centroids()[3], [1, 0, 0, 0])
    assert not loaded.centroids()[4].any()


def test_an_index_without_segments_finds_nothing():
    index = GlobalIndex([], ClassStats.empty(NUM_CLASSES, 8), np.empty(0, np.int64), 8)
    sims, found = index.search(np.ones((1, 8), np.float32), 3, None)
    assert (found == -1).all() and index.ntotal == 0 and len(index.vectors()[0]) == 0
