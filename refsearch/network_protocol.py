"""What every network gives, whichever runtime runs it: `Network`, and its passes' `NetworkOutput`.

A torch backbone (`refsearch.backbones.torch_network.TorchNetwork`) and an exported graph on the
inference runtime (`refsearch.runtime.RuntimeNetwork`) are both Networks: everything that runs the
network (builds, queries, batch queries, colorize) takes one and never asks which it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class NetworkOutput:
    """A pass over a batch, as float32 numpy arrays: logits (B, 1000), global descriptor (B, global_dim),
    cells (B, cell_dim, grid, grid) and, when asked for, the feature maps from fine to coarse, each
    (B, C, h, w)."""

    logits: np.ndarray
    global_descriptor: np.ndarray
    cells: np.ndarray
    feature_maps: list[np.ndarray] = field(default_factory=list)


class Network(Protocol):
    """A backbone ready to run: what it is (name, weights fingerprint, input size, grid, descriptor
    sizes), where (`device`: "cpu" or "cuda..."), on what (`runtime`: "torch" or the inference runtime's
    name, `runtime_version`), and `note`: what the user should hear about how it was obtained (empty
    when nothing)."""

    name: str
    fingerprint: str
    input_size: int
    grid: int
    global_dim: int
    cell_dim: int
    device: str
    runtime: str
    runtime_version: str
    note: str

    def extract(self, luminance: np.ndarray, feature_maps: bool = False) -> NetworkOutput:
        """Run on a (B, H, W) uint8 batch of luminance images (any H, W; `input_size` for retrieval)."""
