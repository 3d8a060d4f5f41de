"""The default colorizer, after the two halves of He et al. (2018) without their training: dense semantic
correspondence stands in for the similarity sub-net, and confidence-weighted, luminance-guided filtering
and propagation stand in for the colorization sub-net."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from refsearch.backbones import Backbone, create_backbone, forward_streams

from .chroma import DEFAULT_WORKING_SHORT_SIDE, ChromaColorizer, ChromaPrediction, WorkingImage
from .correspondence import MatchSettings, Warp, dense_features, warp_reference
from .refine import guided_filter, propagate
from .resample import nearest_indices, resize

DEFAULT_BACKBONE = "efficientnet-lite2"


@dataclass(frozen=True)
class ExemplarSettings:
    match: MatchSettings = field(default_factory=MatchSettings)
    fusion_temperature: float = 0.05  # softmax over references of their per-pixel confidence
    guided_radius: int = 4            # working-resolution pixels
    guided_eps: float = 1e-3
    smoothness: float = 2.0           # weight of the propagation's smoothness term against the data term
    edge_sigma: float = 0.05          # luminance difference (0-1 scale) across which colour stops spreading
    max_saturation_gain: float = 2.0  # the most the chroma may be scaled back up (see restore_saturation)


@dataclass(frozen=True)
class Fused:
    ab: np.ndarray
    confidence: np.ndarray
    source: np.ndarray
    magnitude: np.ndarray


@lru_cache(maxsize=1)
def default_backbone() -> Backbone:
    return create_backbone(DEFAULT_BACKBONE)


class ExemplarColorizer(ChromaColorizer):
    name = "exemplar"
    description = ("dense feature correspondence with every reference, fused by confidence, refined and "
                   "propagated along the target's edges (He et al. 2018, untrained)")

    def __init__(self, backbone: Backbone | None = None, settings: ExemplarSettings | None = None,
                 working_short_side: int = DEFAULT_WORKING_SHORT_SIDE):
        super().__init__(working_short_side)
        self.backbone = backbone
        self.settings = settings or ExemplarSettings()

    def predict_chroma(self, target: WorkingImage, references: list[WorkingImage]) -> ChromaPrediction:
        settings = self.settings
        backbone = self.backbone or default_backbone()
        images = [target.luma] + [reference.luma for reference in references]
        with ThreadPoolExecutor(min(len(images), forward_streams(backbone.device.type))) as pool:
            target_features, *features = pool.map(
                lambda luma: dense_features(backbone, luma, settings.match), images)
        warps = []
        for reference, reference_features in zip(references, features):
            reference_ab = resize(reference.lab[..., 1:], *reference_features.grid)
            warps.append(warp_reference(target_features, reference_features, reference_ab, settings.match))
        fused = fuse(warps, settings.fusion_temperature)

        height, width = target.shape
        ab = resize(fused.ab, height, width)
        confidence = np.clip(resize(fused.confidence, height, width), 0.0, 1.0)
        source = fused.source[nearest_indices(fused.source.shape[0], height)][
            :, nearest_indices(fused.source.shape[1], width)]
        guide = target.luma.astype(np.float32) / 255.0
        weighted = guided_filter(guide, np.concatenate([ab * confidence[..., None], confidence[..., None]],
                                                       axis=-1), settings.guided_radius, settings.guided_eps)
        ab = weighted[..., :2] / np.maximum(weighted[..., 2:], 1e-3)
        ab = propagate(guide, ab, confidence, settings.smoothness, settings.edge_sigma)
        ab = restore_saturation(ab, float(fused.magnitude.mean()), settings.max_saturation_gain)
        return ChromaPrediction(ab, confidence, source.astype(np.int8))


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


def restore_saturation(ab: np.ndarray, reference_magnitude: float, max_gain: float) -> np.ndarray:
    """Averaging chroma vectors (the softmax warp, the fusion, the smoothing) shortens them where they
    disagree, which drains colour; scale the result so its mean chroma magnitude is again that of the
    reference colours it was drawn from, by at most `max_gain`."""
    magnitude = float(np.linalg.norm(ab, axis=-1).mean())
    if magnitude < 1e-3:
        return ab
    return ab * min(max_gain, max(1.0, reference_magnitude / magnitude))
