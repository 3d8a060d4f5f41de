"""What a chroma-predicting method gives at working resolution: the chroma, how sure it is, where each
colour came from, and the colours it found likely (for suggesting colours to a user placing hints)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Palette:
    """Colours a method found likely, per cell of a grid laid evenly over the working image: each
    reference's colour matched onto the cells `reference_ab` (R, gh, gw, 2) with its match confidence
    `reference_confidence` (R, gh, gw), and, for a learned prior, its distribution over the colours
    `prior_centres` (Q, 2) per cell `prior_probabilities` (gh', gw', Q)."""

    reference_ab: np.ndarray
    reference_confidence: np.ndarray
    prior_centres: np.ndarray | None = None
    prior_probabilities: np.ndarray | None = None


@dataclass
class ChromaPrediction:
    """Working-resolution chroma (h, w, 2) in Lab a and b, confidence (h, w) in [0, 1], the index of
    the reference each pixel's chroma came from (h, w), -1 for none, notes for the user, and optionally
    the colours the method found likely."""

    ab: np.ndarray
    confidence: np.ndarray
    source: np.ndarray
    notes: list[str] = field(default_factory=list)
    palette: Palette | None = None
