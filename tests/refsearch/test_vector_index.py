"""FAISS over the global descriptors: class-restricted exact search, all-class search, save and load."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.projection import l2_normalize
from refsearch.vector_index import GlobalIndex

NUM_CLASSES = 1000


def _data(n=30, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.normal(size=(n, dim)))
    ids = np.arange(n, dtype=np.int64) * 10 + 7  # sparse ids, as after deletions
    classes = np.array([5, 17, 999])[np.arange(n) % 3]
    return ids, vectors, classes


@pytest.fixture
def exact():
    ids, vectors, classes = _data()
    index = GlobalIndex.build(ids, vectors, classes, NUM_CLASSES, exact_limit=1000, nprobe=32)
    return index, ids, vectors, classes


def test_class_sizes_and_totals(exact):
    index, ids, vectors, _ = exact
    assert index.kind == "exact" and index.ntotal == 30 and index.dim == 16
    sizes = index.class_sizes()
    assert sizes.shape == (NUM_CLASSES,)
    assert sizes[5] == sizes[17] == sizes[999] == 10 and sizes.sum() == 30


def test_search_inside_classes_returns_only_their_images_in_exact_cosine_order(exact):
    index, ids, vectors, classes = exact
    query = vectors[4][None]  # id 47, class 17
    sims, found = index.search(query, 5, [17])
    assert set(found[0]) <= set(ids[classes == 17])
    assert found[0, 0] == 47 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    members = ids[classes == 17]
    expected = members[np.argsort(-(vectors[classes == 17] @ vectors[4]))][:5]
    np.testing.assert_array_equal(found[0], expected)
    assert np.all(np.diff(sims[0]) <= 1e-6)
    # two classes: the union of both, and nothing of the third
    _, found = index.search(query, 20, [5, 17])
    assert set(found[0]) == set(ids[classes != 999])


def test_search_of_all_classes_finds_everything(exact):
    index, ids, vectors, _ = exact
    sims, found = index.search(vectors, 1, None)
    np.testing.assert_array_equal(found[:, 0], ids)
    _, found = index.search(vectors[:1], 30, None)
    assert set(found[0]) == set(ids)


def test_fewer_images_than_k_pad_with_minus_one(exact):
    index, _, vectors, _ = exact
    _, found = index.search(vectors[:1], 15, [999])
    assert (found[0] >= 0).sum() == 10 and (found[0, 10:] == -1).all()
    sims, found = index.search(vectors[:2], 3, [])
    assert (found == -1).all() and np.isneginf(sims).all()
    _, found = index.search(vectors[:1], 3, [123])  # an empty class
    assert (found == -1).all()


def test_empty_index_searches_to_nothing():
    index = GlobalIndex.build(np.empty(0, np.int64), np.empty((0, 8), np.float32), np.empty(0, np.int64),
                              NUM_CLASSES, exact_limit=1000, nprobe=32)
    assert index.ntotal == 0 and index.class_sizes().sum() == 0
    _, found = index.search(np.zeros((1, 8), np.float32), 3, None)
    assert (found == -1).all()


def test_save_and_load_round_trip(tmp_path, exact):
    index, ids, vectors, _ = exact
    files = index.save(tmp_path, generation=3)
    assert files == {"by_class": "global-by-class.3.faiss", "all_classes": None}
    assert (tmp_path / files["by_class"]).is_file()
    assert not list(tmp_path.glob("*.tmp"))
    loaded = GlobalIndex.load(tmp_path, files, nprobe=32)
    np.testing.assert_array_equal(loaded.class_sizes(), index.class_sizes())
    for classes in ([5], [5, 999], None):
        np.testing.assert_array_equal(loaded.search(vectors, 4, classes)[1],
                                      index.search(vectors, 4, classes)[1])


def test_large_collections_search_all_classes_with_an_ivf_index(tmp_path):
    ids, vectors, classes = _data(n=300, dim=16)
    index = GlobalIndex.build(ids, vectors, classes, NUM_CLASSES, exact_limit=100, nprobe=1000)
    assert index.kind == "ivf"
    sims, found = index.search(vectors[:50], 1, None)
    np.testing.assert_array_equal(found[:, 0], ids[:50])  # every list probed: only SQ8 error remains
    assert np.all(sims[:, 0] > 0.98)
    # class-restricted searches stay exact
    _, found = index.search(vectors[:1], 3, [17])
    assert set(found[0]) <= set(ids[classes == 17])
    files = index.save(tmp_path, generation=1)
    assert files["all_classes"] == "global-all.1.faiss"
    loaded = GlobalIndex.load(tmp_path, files, nprobe=1000)
    assert loaded.kind == "ivf"
    np.testing.assert_array_equal(loaded.search(vectors[:50], 1, None)[1][:, 0], ids[:50])


def test_ivf_with_fewer_vectors_than_the_list_count_still_builds():
    ids, vectors, classes = _data(n=6, dim=16)
    index = GlobalIndex.build(ids, vectors, classes, NUM_CLASSES, exact_limit=3, nprobe=32)
    _, found = index.search(vectors, 1, None)
    np.testing.assert_array_equal(found[:, 0], ids)
