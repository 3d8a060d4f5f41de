"""The neighbour graph, duplicate grouping (by similarity, and by verified pairs with a stand-in verifier),
outlier scores and clusters on synthetic descriptors."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.curation.clusters import kmeans_clusters
from refsearch.curation.duplicates import copy_groups, exact_duplicate_groups, similarity_groups
from refsearch.curation.neighbours import neighbour_graph
from refsearch.curation.outliers import outlier_scores
from refsearch.curation.results import CopyCheck
from refsearch.store import RecordColumns


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _table(n: int, pixels=None, digests=None) -> RecordColumns:
    return RecordColumns(ids=np.arange(100, 100 + n), digests=np.array(digests or [b""] * n, "S32"),
                       labels=np.zeros(n, np.int16), predictions=np.zeros(n, np.int16),
                       confidences=np.ones(n, np.float32), predicted_labels=np.zeros(n, bool),
                       pixels=np.array(pixels or [100] * n, np.int64), file_sizes=np.full(n, 10, np.int64))


def _global_only(vectors):
    return lambda a, b: np.einsum("ij,ij->i", vectors[a], vectors[b])


@pytest.fixture(scope="module")
def planted_vectors():
    """600 vectors in 30 look-alike families; rows 0-9 have copies at rows 600-619 (two each)."""
    rng = np.random.default_rng(1)
    families = rng.standard_normal((30, 32))
    vectors = families[rng.integers(0, 30, 600)] + rng.standard_normal((600, 32))
    copies = np.repeat(vectors[:10], 2, axis=0) + 0.15 * rng.standard_normal((20, 32))
    return _unit(np.concatenate([vectors, copies]))


def test_the_graph_lists_nearest_others_in_order(planted_vectors):
    graph = neighbour_graph(np.arange(len(planted_vectors)), planted_vectors, 5)
    rows = np.arange(len(planted_vectors))[:, None]
    assert not (graph.neighbours == rows).any()
    assert (np.diff(graph.similarities, axis=1) <= 1e-6).all()
    full = planted_vectors @ planted_vectors.T
    np.fill_diagonal(full, -np.inf)
    np.testing.assert_allclose(graph.similarities[:, 0], full.max(axis=1), atol=1e-5)


def test_identical_vectors_do_not_hide_each_other():
    vectors = _unit(np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32))
    graph = neighbour_graph(np.arange(4), vectors, 2)
    assert set(graph.neighbours[0]) == {1, 2}
    assert not (graph.neighbours == np.arange(4)[:, None]).any()


def test_the_approximate_graph_finds_the_planted_copies(planted_vectors):
    graph = neighbour_graph(np.arange(len(planted_vectors)), planted_vectors, 2, exact_limit=100, nprobe=2)
    assert graph.approximate
    source = np.repeat(np.arange(10), 2)
    sibling = np.arange(600, 620) ^ 1
    found = [set(row) == {s, t} for row, s, t in zip(graph.neighbours[600:].tolist(), source, sibling)]
    assert np.mean(found) >= 0.9


def test_a_tiny_collection_has_as_many_neighbours_as_it_can():
    graph = neighbour_graph(np.arange(3), _unit(np.eye(3, dtype=np.float32)), 10)
    assert graph.k == 2
    single = neighbour_graph(np.arange(1), _unit(np.ones((1, 3), np.float32)), 10)
    assert single.k == 0 and single.edges(0.0)[0].size == 0
    alone = outlier_scores(single, 5, np.arange(1))
    assert alone.scores.tolist() == [0.0] and alone.nearest.tolist() == [-1]


def test_similarity_groups_are_the_planted_copies(planted_vectors):
    graph = neighbour_graph(np.arange(len(planted_vectors)), planted_vectors, 5)
    groups = similarity_groups(graph, _table(len(planted_vectors)), 0.9, _global_only(planted_vectors))
    found = sorted(sorted(g.rows.tolist()) for g in groups)
    assert found == [[i, 600 + 2 * i, 601 + 2 * i] for i in range(10)]


def test_a_group_is_led_by_its_largest_image_and_holds_only_its_copies():
    # b is a copy of a and of c, but a and c are not copies of each other: the chain a-b-c is split.
    a, c = np.array([1.0, 0.0]), np.array([np.cos(0.5), np.sin(0.5)])
    vectors = _unit(np.array([a, (a + c) / 2, c, [-1.0, 0.0]], np.float32))
    graph = neighbour_graph(np.arange(4), vectors, 2)
    table = _table(4, pixels=[100, 50, 400, 100])
    similarity = _global_only(vectors)
    groups = similarity_groups(graph, table, 0.95, similarity)
    assert [g.rows.tolist() for g in groups] == [[2, 1]]  # c is largest and takes b; a is left alone
    assert groups[0].similarities[0] == 1.0
    assert groups[0].similarities[1] == pytest.approx(np.cos(0.25), abs=1e-6)


class StandInVerifier:
    """Verifies the row pairs listed as copies (either way round) and records every pair it is asked."""

    def __init__(self, copies, unreadable=()):
        self.copies = {frozenset(pair) for pair in copies}
        self.unreadable = set(unreadable)
        self.asked: list[tuple[int, int]] = []

    def __call__(self, first, second):
        checks = []
        for a, b in zip(first.tolist(), second.tolist()):
            self.asked.append((a, b))
            broken = {a, b} & self.unreadable
            reason = f"cannot read {min(broken)}" if broken else "stand-in"
            checks.append(CopyCheck(a, b, not broken and frozenset((a, b)) in self.copies, reason,
                                    unreadable=bool(broken)))
        return checks


def test_only_verified_candidates_group_however_similar():
    # 0, 1 and 2 are equally close; only 0-1 are copies, and 3 is far from everything.
    vectors = _unit(np.array([[1, 0.01, 0], [1, 0, 0.01], [1, 0.01, 0.01], [0, 0, 1]], np.float32))
    graph = neighbour_graph(np.arange(4), vectors, 3)
    verifier = StandInVerifier([(0, 1)])
    found = copy_groups(graph, _table(4, pixels=[100, 50, 80, 100]), 0.9, _global_only(vectors), verifier)
    assert [g.rows.tolist() for g in found.groups] == [[0, 1]]
    assert found.groups[0].checks[0] is None and found.groups[0].checks[1].verified
    assert found.candidate_pairs == 3 and sorted(verifier.asked) == [(0, 1), (0, 2), (2, 1)]  # keeper first


def test_a_chain_of_verified_pairs_is_split_around_its_keeper():
    # 0 (largest) is a copy of 1, and 1 of 2, but 2 is not verified a copy of 0: 0 keeps 1, and 2 stays alone.
    vectors = _unit(np.array([[1, 0, 0], [1, 0.01, 0], [1, 0.02, 0]], np.float32))
    graph = neighbour_graph(np.arange(3), vectors, 1)  # 0-1 and 1-2 are linked, 0-2 is not
    verifier = StandInVerifier([(0, 1), (1, 2)])
    found = copy_groups(graph, _table(3, pixels=[300, 200, 100]), 0.9, _global_only(vectors), verifier)
    assert [g.rows.tolist() for g in found.groups] == [[0, 1]]
    assert (0, 2) in verifier.asked  # the keeper was checked against the member it was not linked to


def test_identical_files_are_candidates_and_members_reached_through_others_meet_the_keeper():
    # 0 is unlike 1 and 2 by its descriptor, yet all three are copies; 0 and 2 are identical files.
    vectors = _unit(np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0.01]], np.float32))
    graph = neighbour_graph(np.arange(3), vectors, 1)
    verifier = StandInVerifier([(0, 1), (0, 2), (1, 2)])
    found = copy_groups(graph, _table(3, pixels=[300, 200, 100]), 0.9, _global_only(vectors), verifier)
    assert [g.rows.tolist() for g in found.groups] == [[1, 2]]  # 0 is no candidate by its descriptor
    identical = copy_groups(graph, _table(3, pixels=[300, 200, 100], digests=[b"d", b"", b"d"]), 0.9,
                            _global_only(vectors), verifier)
    assert [g.rows.tolist() for g in identical.groups] == [[0, 1, 2]]
    assert verifier.asked[-1] == (0, 1)  # linked to 0 only through 2, then checked against it


def test_pairs_with_an_unreadable_file_are_reported():
    vectors = _unit(np.array([[1, 0, 0], [1, 0.01, 0], [0, 0, 1]], np.float32))
    graph = neighbour_graph(np.arange(3), vectors, 1)
    verifier = StandInVerifier([(0, 1)], unreadable={1})
    found = copy_groups(graph, _table(3), 0.9, _global_only(vectors), verifier)
    assert found.groups == []
    assert [(c.first, c.second, c.reason) for c in found.unreadable] == [(0, 1, "cannot read 1")]


def test_exact_duplicate_groups_follow_the_digests():
    table = _table(5, pixels=[1, 9, 1, 1, 1], digests=[b"x", b"y", b"x", b"", b"y"])
    groups = exact_duplicate_groups(table)
    assert sorted(g.rows.tolist() for g in groups) == [[0, 2], [1, 4]]  # unknown digests never match


def test_an_isolated_vector_scores_highest():
    rng = np.random.default_rng(2)
    crowd = _unit(rng.standard_normal((200, 16)) + 3 * np.eye(1, 16, 0))
    vectors = np.concatenate([crowd[:120], -np.eye(1, 16, 0, dtype=np.float32), crowd[120:]])
    graph = neighbour_graph(np.arange(len(vectors)), vectors, 10)
    scored = outlier_scores(graph, 5, np.arange(len(vectors)))
    assert np.argmax(scored.scores) == 120


def test_copies_are_not_counted_as_neighbours_of_an_outlier():
    rng = np.random.default_rng(3)
    crowd = _unit(rng.standard_normal((50, 8)) + 4 * np.eye(1, 8, 0))
    loner = _unit(np.eye(1, 8, 7) * 4 + rng.standard_normal((1, 8)) * 0.1)
    copy = _unit(loner + rng.standard_normal((1, 8)) * 0.01)
    vectors = np.concatenate([crowd, loner, copy])
    graph = neighbour_graph(np.arange(52), vectors, 6)
    groups = np.arange(52)
    without = outlier_scores(graph, 3, groups).scores[50]
    groups[51] = 50
    with_copies_left_out = outlier_scores(graph, 3, groups)
    assert with_copies_left_out.scores[50] > without
    assert with_copies_left_out.nearest[50] != 51


def test_clusters_split_separated_families():
    rng = np.random.default_rng(4)
    centres = 10 * np.eye(3, 16)
    vectors = _unit(np.concatenate([c + rng.standard_normal((40, 16)) for c in centres]))
    assignment = kmeans_clusters(vectors, 3)
    families = sorted(sorted({m // 40 for m in members.tolist()}) for members in assignment.members)
    assert families == [[0], [1], [2]]
    for members in assignment.members:  # nearest the centre first
        centre = _unit(vectors[members].mean(axis=0))
        similarity = vectors[members] @ centre
        assert similarity[0] == pytest.approx(similarity.max(), abs=1e-3)


def test_faiss_runs_on_a_gpu_only_when_faiss_gpu_sees_one_and_k_fits_its_limit(monkeypatch):
    import faiss

    from refsearch import faiss_gpu

    assert not faiss_gpu.use_gpu()  # faiss-cpu here: it sees no GPU
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    assert faiss_gpu.use_gpu() and faiss_gpu.use_gpu(faiss_gpu.GPU_MAX_K)
    assert not faiss_gpu.use_gpu(faiss_gpu.GPU_MAX_K + 1)


@pytest.fixture
def fake_gpu(monkeypatch):
    """faiss "sees" a GPU, and an index moved there stays where it is (this machine has none); returns
    what was moved: (index type, whether it was trained) from faiss_gpu.to_gpu, (index type, GPUs) from
    faiss's own move, which its k-means uses."""
    import faiss

    from refsearch import faiss_gpu

    moved = []

    def to_gpu(index):
        moved.append((type(index).__name__, index.is_trained))
        return index

    def index_cpu_to_all_gpus(index, ngpu=-1):
        moved.append((type(index).__name__, ngpu))
        return index

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss.extra_wrappers, "get_num_gpus", lambda: 1)  # the name faiss.Kmeans reads
    monkeypatch.setattr(faiss_gpu, "to_gpu", to_gpu)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", index_cpu_to_all_gpus)
    return moved


def test_with_a_gpu_the_graph_is_searched_and_its_inverted_file_trained_there(planted_vectors, fake_gpu):
    ids = np.arange(len(planted_vectors))
    exact = neighbour_graph(ids, planted_vectors, 5)
    approximate = neighbour_graph(ids, planted_vectors, 2, exact_limit=100, nprobe=2)
    assert fake_gpu == [("IndexFlatIP", True), ("IndexIVFFlat", False)]  # the IVF goes there untrained
    assert not exact.approximate and approximate.approximate
    copies = np.repeat(np.arange(10), 2)
    assert all(row in found for row, found in zip(copies, exact.neighbours[600:].tolist()))
    assert np.mean([row in found for row, found in zip(copies, approximate.neighbours[600:].tolist())]) >= 0.9
    fake_gpu.clear()
    kmeans_clusters(planted_vectors, 3)
    assert fake_gpu == [("IndexFlatIP", 1)]  # k-means assigns through an index on the GPU
