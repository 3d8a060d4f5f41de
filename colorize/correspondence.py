"""Dense semantic correspondence between a gray target and a colour reference, both seen as luminance:
the backbone's multi-level features, cosine similarity, a softmax-weighted warp of the reference's
chroma, and the best similarity, checked backwards, as confidence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from refsearch.network_protocol import Network


@dataclass(frozen=True)
class MatchSettings:
    stride: int = 8                  # the correspondence grid, in working-resolution pixels
    min_feature_stride: int = 4      # finer feature maps see texture, not meaning
    temperature: float = 0.01        # softmax temperature on cosine similarity
    cycle_temperature: float = 0.05  # how fast confidence falls when the match prefers another target point
    confidence_blur: float = 1.5     # Gaussian sigma, in grid cells, pooling confidence over neighbours


@dataclass(frozen=True)
class DenseFeatures:
    """Unit-length descriptors (gh * gw, C) on a grid of (gh, gw) cells, the same levels before
    normalisation (C, gh, gw), and the image's global descriptor (D,)."""

    vectors: torch.Tensor
    grid: tuple[int, int]
    levels: torch.Tensor
    global_descriptor: torch.Tensor


@dataclass(frozen=True)
class Warp:
    """A reference's chroma carried onto the target's grid (gh, gw, 2), with confidence (gh, gw) and the
    mean chroma magnitude of the reference cells it was averaged from (gh, gw)."""

    ab: np.ndarray
    confidence: np.ndarray
    magnitude: np.ndarray


@dataclass(frozen=True)
class Fused:
    """Several references' warps fused per cell: chroma (gh, gw, 2), confidence, the most confident
    reference and the mean chroma magnitude (gh, gw each)."""

    ab: np.ndarray
    confidence: np.ndarray
    source: np.ndarray
    magnitude: np.ndarray


def dense_features(network: Network, luma: np.ndarray, settings: MatchSettings) -> DenseFeatures:
    """Each feature map at least `min_feature_stride` coarse, resampled to the grid, unit-normalised per cell
    and concatenated with equal weight per level."""
    height, width = luma.shape
    grid = (max(1, -(-height // settings.stride)), max(1, -(-width // settings.stride)))
    output = network.extract(np.array(luma[None]), feature_maps=True)
    device = torch.device(network.device)  # on a GPU, the matching runs there too
    levels = [F.interpolate(torch.from_numpy(feature_map).to(device), size=grid, mode="bilinear",
                            align_corners=False, antialias=feature_map.shape[2] > grid[0])
              for feature_map in output.feature_maps
              if height / feature_map.shape[2] >= settings.min_feature_stride * 0.75]
    stacked = torch.cat([F.normalize(level, dim=1) for level in levels], dim=1) / len(levels) ** 0.5
    return DenseFeatures(stacked[0].flatten(1).T.contiguous(), grid, torch.cat(levels, dim=1)[0],
                         torch.from_numpy(output.global_descriptor[0]).to(device))


def warp_reference(target: DenseFeatures, reference: DenseFeatures, reference_ab: np.ndarray,
                   settings: MatchSettings) -> Warp:
    """`reference_ab` is the reference's chroma on its own grid (rh, rw, 2)."""
    similarity = target.vectors @ reference.vectors.T
    best, best_index = similarity.max(dim=1)
    weights = torch.softmax(similarity / settings.temperature, dim=1)
    colours = torch.from_numpy(np.ascontiguousarray(reference_ab).reshape(-1, 2)).to(weights)
    ab = weights @ colours
    magnitude = weights @ colours.norm(dim=1)
    # Backward check: if the reference point this target point likes best is liked much more by some other
    # target point, the match is likely false (a hub that everything drifts to), so trust it less.
    best_backward = similarity.max(dim=0).values[best_index]
    consistency = torch.exp((best - best_backward) / settings.cycle_temperature)
    confidence = (best.clamp(min=0.0) * consistency).reshape(target.grid).cpu().numpy()
    if settings.confidence_blur:
        confidence = gaussian_filter(confidence, settings.confidence_blur, mode="nearest")
    grid = target.grid
    return Warp(ab.reshape(grid + (2,)).cpu().numpy(), confidence, magnitude.reshape(grid).cpu().numpy())


def fuse(warps: list[Warp], temperature: float) -> Fused:
    """Per cell, a softmax over references of their confidence weights their chroma; the source is the most
    confident reference."""
    confidence = np.stack([w.confidence for w in warps])
    logits = confidence / temperature
    weights = np.exp(logits - logits.max(axis=0, keepdims=True))
    weights /= weights.sum(axis=0, keepdims=True)

    def weighted(values: np.ndarray) -> np.ndarray:
        return (weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim)) * values).sum(axis=0)

    return Fused(weighted(np.stack([w.ab for w in warps])), weighted(confidence), confidence.argmax(axis=0),
                 weighted(np.stack([w.magnitude for w in warps])))
