"""Dense semantic correspondence between a gray target and a colour reference, both seen as luminance:
the backbone's multi-level features, cosine similarity, a softmax-weighted warp of the reference's
chroma, and the best similarity, checked backwards, as confidence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from refsearch.backbones import Backbone


@dataclass(frozen=True)
class MatchSettings:
    stride: int = 8                 # the correspondence grid, in working-resolution pixels
    min_feature_stride: int = 4     # finer feature maps see texture, not meaning
    temperature: float = 0.01       # softmax temperature on cosine similarity
    cycle_temperature: float = 0.05  # how fast confidence falls when the match prefers another target point


@dataclass(frozen=True)
class DenseFeatures:
    """Unit-length descriptors (gh * gw, C) on a grid of (gh, gw) cells."""

    vectors: torch.Tensor
    grid: tuple[int, int]


@dataclass(frozen=True)
class Warp:
    """A reference's chroma carried onto the target's grid (gh, gw, 2), with confidence (gh, gw)."""

    ab: np.ndarray
    confidence: np.ndarray


def dense_features(backbone: Backbone, luma: np.ndarray, settings: MatchSettings) -> DenseFeatures:
    """Each feature map at least `min_feature_stride` coarse, resampled to the grid, centred over the image
    (so cosine compares what distinguishes places, not what all of them share), unit-normalised per cell,
    and concatenated with equal weight per level."""
    height, width = luma.shape
    grid = (max(1, -(-height // settings.stride)), max(1, -(-width // settings.stride)))
    maps = backbone.extract(luma[None], feature_maps=True).feature_maps
    levels = []
    for feature_map in maps:
        if height / feature_map.shape[2] < settings.min_feature_stride * 0.75:
            continue
        on_grid = F.interpolate(feature_map.float(), size=grid, mode="bilinear", align_corners=False,
                                antialias=feature_map.shape[2] > grid[0])
        on_grid = on_grid - on_grid.mean(dim=(2, 3), keepdim=True)
        levels.append(F.normalize(on_grid, dim=1))
    stacked = torch.cat(levels, dim=1) / len(levels) ** 0.5
    return DenseFeatures(stacked[0].flatten(1).T.contiguous(), grid)


def warp_reference(target: DenseFeatures, reference: DenseFeatures, reference_ab: np.ndarray,
                   settings: MatchSettings) -> Warp:
    """`reference_ab` is the reference's chroma on its own grid (rh, rw, 2)."""
    similarity = target.vectors @ reference.vectors.T
    best, best_index = similarity.max(dim=1)
    weights = torch.softmax(similarity / settings.temperature, dim=1)
    ab = weights @ torch.from_numpy(reference_ab.reshape(-1, 2)).to(weights)
    # Backward check: if the reference point this target point likes best is liked much more by some other
    # target point, the match is likely false (a hub that everything drifts to), so trust it less.
    best_backward = similarity.max(dim=0).values[best_index]
    consistency = torch.exp((best - best_backward) / settings.cycle_temperature)
    confidence = best.clamp(min=0.0) * consistency
    grid = target.grid
    return Warp(ab.reshape(grid + (2,)).cpu().numpy(), confidence.reshape(grid).cpu().numpy())
