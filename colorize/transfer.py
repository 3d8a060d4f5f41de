"""The baseline: global Lab statistics transfer from the best reference (Reinhard et al. 2001).

Each Lab channel of the target is shifted and scaled to the reference's mean and standard deviation. The
target is gray, so its a and b have no spread and the transfer gives every pixel the reference's mean
chroma; L stays the target's. That is what the method does for a gray photo, so that is the baseline.
"""
from __future__ import annotations

import numpy as np

from refsearch.network_protocol import Network

from .chroma import DEFAULT_WORKING_SHORT_SIDE, ChromaColorizer, ChromaPrediction, WorkingImage

_FLAT = 1e-6


class TransferColorizer(ChromaColorizer):
    name = "transfer"
    description = "global Lab statistics transfer from the best reference (Reinhard et al. 2001); a baseline"

    def __init__(self, backbone: Network | None = None,
                 working_short_side: int = DEFAULT_WORKING_SHORT_SIDE):
        # Global statistics need no network; `backbone` is accepted because every method is offered one.
        super().__init__(working_short_side)

    def predict_chroma(self, target: WorkingImage, references: list[WorkingImage]) -> ChromaPrediction:
        source_ab = references[0].lab[..., 1:].reshape(-1, 2)
        target_ab = target.lab[..., 1:]
        target_mean = target_ab.reshape(-1, 2).mean(axis=0)
        target_std = target_ab.reshape(-1, 2).std(axis=0)
        gain = np.where(target_std > _FLAT, source_ab.std(axis=0) / np.maximum(target_std, _FLAT), 0.0)
        ab = (target_ab - target_mean) * gain + source_ab.mean(axis=0)
        shape = target.shape
        # A global method has no per-pixel evidence: every pixel's colour comes, whole, from reference 0.
        return ChromaPrediction(ab.astype(np.float32), np.ones(shape, np.float32), np.zeros(shape, np.int8))
