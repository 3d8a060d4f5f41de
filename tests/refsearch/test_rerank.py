"""The local re-rank on hand-built cell vectors: d_sem, the matched cells, d_lum at them, the ordering."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.rerank import local_scores

E = np.eye(4, dtype=np.float32)  # four orthonormal 4-d cell descriptors


def _hist(*bins_per_cell: int, bins: int = 5) -> np.ndarray:
    """One-hot-ish histograms: cell i peaks in bin bins_per_cell[i] (0.6), with 0.1 elsewhere."""
    out = np.full((len(bins_per_cell), bins), 0.4 / (bins - 1), np.float32)
    for cell, b in enumerate(bins_per_cell):
        out[cell, b] = 0.6
    return out


QUERY_CELLS = E.copy()  # query cell i is e_i
QUERY_HIST = _hist(0, 1, 2, 3)


def test_identical_candidate_matches_cell_for_cell():
    scores = local_scores(QUERY_CELLS, QUERY_HIST, QUERY_CELLS[None], QUERY_HIST[None])
    np.testing.assert_array_equal(scores.matched_cells, [[0, 1, 2, 3]])
    assert scores.semantic[0] == pytest.approx(0.0, abs=1e-6)
    # correlation 1 everywhere: d_lum = (1 + mean(1 - 1)) / 2 = 0.5, the smallest possible
    assert scores.luminance[0] == pytest.approx(0.5, abs=1e-6)


def test_permuted_candidate_matches_each_query_cell_to_where_it_moved():
    permutation = [2, 0, 3, 1]  # candidate cell j holds query cell permutation[j]
    cells = QUERY_CELLS[permutation]
    hist = QUERY_HIST[permutation]
    scores = local_scores(QUERY_CELLS, QUERY_HIST, cells[None], hist[None])
    # query cell 0 is at candidate cell 1, 1 at 3, 2 at 0, 3 at 2
    np.testing.assert_array_equal(scores.matched_cells, [[1, 3, 0, 2]])
    assert scores.semantic[0] == pytest.approx(0.0, abs=1e-6)
    # d_lum compares each query cell with its *matched* cell's histogram, not the cell at the same place
    assert scores.luminance[0] == pytest.approx(0.5, abs=1e-6)


def test_semantic_distance_by_hand_with_negative_cosines_clipped():
    c60 = np.array([0.5, np.sqrt(3) / 2, 0, 0], np.float32)  # cos 0.5 to e0
    candidate = np.stack([
        c60,  # best for query cell 0: cos 0.5
        E[1],  # query cell 1: cos 1
        -E[2] * 0.6 - E[3] * 0.8,  # negative to query cells 2 and 3
        -E[2] * 0.8 + E[3] * 0.6,  # cos -0.8 to e2, 0.6 to e3
    ]).astype(np.float32)
    # best cosines per query cell: e0 -> 0.5 (cell 0), e1 -> max(0.866, 1) = 1 (cell 1),
    # e2 -> max(0, 0, -0.6, -0.8) = 0 (cell 0 or 1; clipped anyway), e3 -> 0.6 (cell 3)
    scores = local_scores(QUERY_CELLS, QUERY_HIST, candidate[None], QUERY_HIST[None])
    assert scores.semantic[0] == pytest.approx(1 - (0.5 + 1.0 + 0.0 + 0.6) / 4, abs=1e-6)
    assert scores.matched_cells[0, [0, 1, 3]].tolist() == [0, 1, 3]


def test_all_negative_candidate_has_semantic_distance_one():
    scores = local_scores(QUERY_CELLS, QUERY_HIST, -QUERY_CELLS[None], QUERY_HIST[None])
    assert scores.semantic[0] == pytest.approx(1.0, abs=1e-6)


def test_luminance_distance_at_matched_cells_by_hand():
    # Candidate: same cells (so matches are 0..3), histograms: cell 0 identical (corr 1), cell 1 the
    # query's cell 1 reversed, cells 2 and 3 flat.
    hist = QUERY_HIST.copy()
    hist[1] = QUERY_HIST[1][::-1]
    hist[2] = hist[3] = np.full(5, 0.2, np.float32)
    # cell 1: query (0.1, 0.6, 0.1, 0.1, 0.1) vs (0.1, 0.1, 0.1, 0.6, 0.1): centred (-.1, .4, -.1, -.1, -.1)
    # and (-.1, -.1, -.1, .4, -.1): dot = .01 - .04 + .01 - .04 + .01 = -.05, norms^2 = .2 -> corr -0.25
    # flat cells correlate 1 (OpenCV's convention); d_lum = (1 + (0 + 1.25 + 0 + 0) / 4) / 2
    scores = local_scores(QUERY_CELLS, QUERY_HIST, QUERY_CELLS[None], hist[None])
    assert scores.luminance[0] == pytest.approx((1 + 1.25 / 4) / 2, abs=1e-6)


def test_luminance_follows_the_semantic_match_not_the_position():
    # The candidate's cells are swapped (0 <-> 1) but its histograms are not: query cell 0 matches
    # candidate cell 1, whose histogram peaks in bin 1, not bin 0.
    cells = QUERY_CELLS[[1, 0, 2, 3]]
    scores = local_scores(QUERY_CELLS, QUERY_HIST, cells[None], QUERY_HIST[None])
    np.testing.assert_array_equal(scores.matched_cells, [[1, 0, 2, 3]])
    # corr of peaks in different bins: centred (.4, -.1, -.1, -.1, -.1) and (-.1, .4, -.1, -.1, -.1):
    # dot = -.04 - .04 + .03 = -.05 over .2 -> -0.25, for two of the four cells
    assert scores.luminance[0] == pytest.approx((1 + (1.25 + 1.25) / 4) / 2, abs=1e-6)


def test_several_candidates_scored_independently_and_combined_ordering():
    # A: same semantics, worst luminance; B: slightly worse semantics, same luminance.
    worst_hist = QUERY_HIST[:, ::-1].copy()
    a_cells = QUERY_CELLS
    b_cells = (QUERY_CELLS + 0.3 * np.roll(QUERY_CELLS, 1, axis=1))
    b_cells /= np.linalg.norm(b_cells, axis=1, keepdims=True)
    cells = np.stack([a_cells, b_cells]).astype(np.float32)
    hists = np.stack([worst_hist, QUERY_HIST])
    scores = local_scores(QUERY_CELLS, QUERY_HIST, cells, hists)
    assert scores.semantic.shape == scores.luminance.shape == (2,)
    assert scores.matched_cells.shape == (2, 4)
    assert scores.semantic[0] < scores.semantic[1]
    assert scores.luminance[0] > scores.luminance[1]
    # b's best cosine per cell is 1 / sqrt(1.09)
    assert scores.semantic[1] == pytest.approx(1 - 1 / np.sqrt(1.09), abs=1e-6)
    np.testing.assert_allclose(scores.combined(0.25), scores.semantic + 0.25 * scores.luminance, rtol=1e-6)
    # Without the luminance term, A ranks first; with enough weight on it, B does.
    assert np.argsort(scores.combined(0.0)).tolist() == [0, 1]
    assert np.argsort(scores.combined(1.0)).tolist() == [1, 0]
    single = local_scores(QUERY_CELLS, QUERY_HIST, cells[1:], hists[1:])
    assert single.semantic[0] == pytest.approx(scores.semantic[1]) and single.luminance[0] == pytest.approx(
        scores.luminance[1])
