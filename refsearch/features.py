"""Images to descriptors: decode and resize (CPU, thread-safe), the network's pass, the PCA projections."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .config import IndexConfig
from .images import DecodedImage, ImageSource, decode, to_luminance
from .luminance import cell_histograms
from .projection import Projections

if TYPE_CHECKING:
    from .network_protocol import Network


@dataclass(frozen=True)
class PreparedImage:
    """What the network and the histograms need of one image: its luminance at the network's input
    size, and its cell histograms."""

    network_input: np.ndarray
    histograms: np.ndarray
    original_size: tuple[int, int]
    digest: str | None


@dataclass(frozen=True)
class RawFeatures:
    logits: np.ndarray  # (n, 1000)
    global_: np.ndarray  # (n, backbone.global_dim)
    cells: np.ndarray  # (n, grid*grid, backbone.cell_dim)
    histograms: np.ndarray  # (n, grid*grid, bins)

    def __len__(self) -> int:
        return len(self.logits)


@dataclass(frozen=True)
class Descriptors:
    """Stored (and searched) form: PCA-reduced, L2-normalised global and cell descriptors."""

    probabilities: np.ndarray  # (n, 1000)
    global_: np.ndarray  # (n, global_dim)
    cells: np.ndarray  # (n, grid*grid, cell_dim)
    histograms: np.ndarray


def prepare(decoded: DecodedImage, config: IndexConfig, input_size: int) -> PreparedImage:
    luminance = to_luminance(decoded.image)
    if config.crop == "center":
        side = min(luminance.size)
        left, top = (luminance.width - side) // 2, (luminance.height - side) // 2
        luminance = luminance.crop((left, top, left + side, top + side))
    network_input = np.asarray(luminance.resize((input_size, input_size), Image.BILINEAR))
    histograms = cell_histograms(luminance, config.grid, config.hist_bins, config.hist_short_side,
                                 config.hist_border)
    return PreparedImage(network_input, histograms, decoded.original_size, decoded.digest)


def load_prepared(source: ImageSource, config: IndexConfig, input_size: int) -> PreparedImage:
    decoded = decode(source, min_short_side=max(config.hist_short_side, input_size), luminance=True)
    return prepare(decoded, config, input_size)


def extract(network: Network, images: list[PreparedImage]) -> RawFeatures:
    output = network.extract(np.stack([image.network_input for image in images]))
    batch, channels = output.cells.shape[:2]
    return RawFeatures(
        logits=output.logits,
        global_=output.global_descriptor,
        cells=np.ascontiguousarray(output.cells.reshape(batch, channels, -1).transpose(0, 2, 1)),
        histograms=np.stack([image.histograms for image in images]),
    )


def describe(raw: RawFeatures, projections: Projections) -> Descriptors:
    n, cells, dim = raw.cells.shape
    exponentials = np.exp(raw.logits - raw.logits.max(axis=1, keepdims=True))
    probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
    return Descriptors(
        probabilities=probabilities,
        global_=projections.global_(raw.global_),
        cells=projections.cells(raw.cells.reshape(n * cells, dim)).reshape(n, cells, -1),
        histograms=raw.histograms,
    )
