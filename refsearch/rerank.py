"""The paper's local re-rank: nearest-cell semantic distance plus luminance-histogram distance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .luminance import correlation


@dataclass(frozen=True)
class LocalScores:
    semantic: np.ndarray  # d_sem per candidate
    luminance: np.ndarray  # d_lum per candidate
    matched_cells: np.ndarray  # (candidates, cells): the candidate cell each query cell matched

    def combined(self, luminance_weight: float) -> np.ndarray:
        return self.semantic + luminance_weight * self.luminance


def local_scores(query_cells: np.ndarray, query_histograms: np.ndarray, candidate_cells: np.ndarray,
                 candidate_histograms: np.ndarray) -> LocalScores:
    """Score candidates against one query.

    query_cells (cells, dim) and candidate_cells (n, cells, dim) are L2-normalised; histograms are
    (cells, bins) and (n, cells, bins). For each query cell the most similar candidate cell gives
    d_sem = 1 - mean(max(0, best cosine)); the histograms of those matched cells give
    d_lum = (1 + mean(1 - correlation)) / 2.
    """
    n, cells, dim = candidate_cells.shape
    # One matrix product, (query cell, candidate, candidate cell): each query cell's best match is then a
    # reduction over contiguous memory.
    similarity = (query_cells @ candidate_cells.reshape(n * cells, dim).T).reshape(len(query_cells), n, cells)
    matched = similarity.argmax(axis=2).T  # (n, query cell)
    best = similarity.max(axis=2).T
    semantic = 1.0 - np.maximum(best, 0.0).mean(axis=1)
    matched_histograms = np.take_along_axis(candidate_histograms, matched[:, :, None], axis=1)
    corr = correlation(query_histograms[None], matched_histograms)
    luminance = (1.0 + (1.0 - corr).mean(axis=1)) / 2.0
    return LocalScores(semantic.astype(np.float32), luminance.astype(np.float32), matched)
