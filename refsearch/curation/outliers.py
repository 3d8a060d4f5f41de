"""Images unlike their neighbours, and images whose label their neighbours or the network dispute."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbours import NeighbourGraph


@dataclass(frozen=True)
class OutlierScores:
    scores: np.ndarray  # per row: 1 - mean similarity to its nearest neighbours that are not its copies
    nearest: np.ndarray  # per row: the row of its nearest such neighbour, -1 when it has none
    nearest_similarity: np.ndarray


def outlier_scores(graph: NeighbourGraph, k: int, copy_group: np.ndarray) -> OutlierScores:
    """Score each row by its first k neighbours outside its own `copy_group` (one number per row; rows
    sharing it are copies of one picture): an unusual photo with a copy or two is still unusual. A row
    whose whole neighbour list is copies is scored on them."""
    if not graph.k:
        nothing = np.zeros(len(graph), np.float32)
        return OutlierScores(nothing, np.full(len(graph), -1), nothing)
    present = graph.neighbours >= 0
    distinct = present & (copy_group[np.maximum(graph.neighbours, 0)] != copy_group[:, None])
    only_copies = ~distinct.any(axis=1)
    distinct[only_copies] = present[only_copies]
    used = distinct & (np.cumsum(distinct, axis=1) <= k)
    counts = used.sum(axis=1)
    means = np.where(used, graph.similarities, 0).sum(axis=1) / np.maximum(counts, 1)
    scores = np.where(counts > 0, 1.0 - means, 0.0).astype(np.float32)
    rows, column, scored = np.arange(len(graph)), np.argmax(used, axis=1), counts > 0
    nearest = np.where(scored, graph.neighbours[rows, column], -1)
    similarity = np.where(scored, graph.similarities[rows, column], 0.0).astype(np.float32)
    return OutlierScores(scores, nearest, similarity)


@dataclass(frozen=True)
class LabelEvidence:
    rows: np.ndarray  # rows whose label is disputed, strongest evidence first
    suggested: np.ndarray  # class index the evidence points to
    by_prediction: np.ndarray  # bool: the network confidently predicts another class
    by_neighbours: np.ndarray  # bool: most of the neighbours carry another label
    agreement: np.ndarray  # share of the neighbours carrying `suggested`


def disputed_labels(graph: NeighbourGraph, labels: np.ndarray, predictions: np.ndarray,
                    confidences: np.ndarray, predicted_labels: np.ndarray, *, k: int,
                    min_confidence: float, min_agreement: float) -> LabelEvidence:
    """Rows whose label differs from a prediction of at least `min_confidence`, or from the label that
    at least `min_agreement` of their k nearest neighbours carry. A label that is itself the prediction
    is disputed by neighbours only. The suggestion is the neighbours' label when they dispute it, else
    the prediction."""
    graph = graph.first(k)
    present = graph.neighbours >= 0
    neighbour_labels = np.where(present, labels[np.maximum(graph.neighbours, 0)], -1)
    counts = np.maximum(present.sum(axis=1), 1)
    # Votes for each column's label: how many columns of the row carry the same one.
    votes = np.zeros(neighbour_labels.shape, np.int64)
    for column in range(graph.k):
        votes[:, column] = (neighbour_labels == neighbour_labels[:, column:column + 1]).sum(axis=1)
    votes[~present] = 0
    rows = np.arange(len(labels))
    majority = neighbour_labels[rows, votes.argmax(axis=1)] if graph.k else np.full(len(labels), -1)
    majority_share = votes.max(axis=1, initial=0) / counts
    by_neighbours = (majority >= 0) & (majority != labels) & (majority_share >= min_agreement)
    by_prediction = ~predicted_labels & (predictions != labels) & (confidences >= min_confidence)
    disputed = np.flatnonzero(by_neighbours | by_prediction)
    suggested = np.where(by_neighbours, majority, predictions)[disputed]
    agreement = (neighbour_labels[disputed] == suggested[:, None]).sum(axis=1) / counts[disputed]
    strength = np.maximum(np.where(by_prediction[disputed], confidences[disputed], 0.0),
                          np.where(by_neighbours[disputed], agreement, 0.0))
    order = np.argsort(-strength, kind="stable")
    disputed = disputed[order]
    return LabelEvidence(disputed, suggested[order], by_prediction[disputed], by_neighbours[disputed],
                         agreement[order])
