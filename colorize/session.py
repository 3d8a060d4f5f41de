"""A colorization prepared once and rendered with colour hints any number of times.

Everything that depends only on the photo and its references (the method's chroma at working resolution,
the colours it found likely, the photo's structure for the propagation) is computed once; a render with
other points only spreads the points (colorize.propagation) and brings the chroma to full size, so the
page can show each change in a fraction of a second."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from refsearch.errors import InvalidArgumentError

from .base import ColorizeResult, Reference
from .hints import Hint, Hints, HintSource
from .lab import colorize_gray, rgb_to_lab
from .prediction import ChromaPrediction, Palette
from .propagation import HintPropagator, HintSettings
from .resample import compose_full_size, resize_matrix, scale_chroma

# Where the prior puts its probability, colours within this many ab units of a peak count as one choice.
SUGGESTION_RADIUS = 15.0
MIN_SUGGESTION_SHARE = 0.05
# Where points govern a pixel's colour more than this, no reference is named as its source.
POINT_SOURCE_INFLUENCE = 0.5


@dataclass(frozen=True)
class Suggestion:
    """A colour likely at a point: `color` ("#rrggbb") is the chroma at the point's own gray level, `share`
    how likely it is (the prior's probability near it, a reference's match confidence), and `source` where
    it comes from ("prior", "reference N: name", "no colour")."""

    color: str
    share: float
    source: str

    def to_dict(self) -> dict:
        return {"color": self.color, "share": round(self.share, 4), "source": self.source}


class ColorizeSession:
    """One photo and its references, colorized by one method, ready to render with any hints.

    Made by `colorize.colorize_session` (or a ChromaColorizer's `prepare`). A method that predicts chroma
    (every built-in one) uses the hints; any other gives its one result, with a note when hints were
    given. One thread at a time: a render keeps what it solved for the next."""

    def __init__(self, target: Image.Image, method: str, *, prediction: ChromaPrediction | None = None,
                 result: ColorizeResult | None = None, settings: HintSettings | None = None):
        if (prediction is None) == (result is None):
            raise ValueError("a session holds either a chroma prediction or a finished result")
        self.target = target
        self.method = method
        self.prediction = prediction
        self.references: list[Reference] = []
        self.notes: list[str] = list(prediction.notes if prediction is not None else result.notes)
        self.settings = settings or HintSettings()
        self._result = result
        self._propagator: HintPropagator | None = None
        self._work_luma: np.ndarray | None = None
        self._resampling: tuple | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.target.size

    @property
    def uses_hints(self) -> bool:
        return self.prediction is not None

    @classmethod
    def of_prediction(cls, target: Image.Image, work_luma: np.ndarray, prediction: ChromaPrediction,
                      method: str, settings: HintSettings | None = None) -> ColorizeSession:
        session = cls(target, method, prediction=prediction, settings=settings)
        session._work_luma = work_luma
        return session

    @classmethod
    def of_result(cls, target: Image.Image, result: ColorizeResult) -> ColorizeSession:
        return cls(target, result.method, result=result)

    # -- rendering ----------------------------------------------------------------------------------------
    def render(self, hints: Hints | list[HintSource] | None = None,
               saturation: float = 1.0) -> ColorizeResult:
        """The photo at its full size with `hints` applied (each point's chroma at its centre, spread along
        the photo's structure, the method's colours weighed by how well the points confirm them) and the
        method's chroma scaled by `saturation` (the points' own colours are not scaled). The gray levels
        are the target's, exactly."""
        started = time.perf_counter()
        hints = Hints.of(hints)
        hints.check(self.size)
        notes = list(self.notes)
        gray = np.asarray(self.target)
        if self.prediction is None:
            result = replace(self._result, image=self._result.image.copy(), notes=notes)
            if hints:
                notes.append(f"method {self.method!r} cannot use colour hints: the {len(hints)} points were "
                             "left out")
        else:
            if hints:
                ab, confidence, source, trust = self._with_hints(hints, saturation)
                notes.append(f"{len(hints)} colour point{'s' if len(hints) > 1 else ''}; where none governs, "
                             f"the method's colours at {trust:.2f} of their strength")
            else:
                prediction = self.prediction
                ab, confidence, source = prediction.ab, prediction.confidence, prediction.source
            full = compose_full_size(gray, ab, confidence, source)
            result = ColorizeResult(Image.fromarray(full.rgb, "RGB"), full.confidence, full.source,
                                    self.method, notes=notes,
                                    hints=hints.with_size(self.size) if hints else Hints())
        if saturation != 1.0 and not (hints and self.uses_hints):  # with points, scaled before them
            result.image = Image.fromarray(scale_chroma(np.array(result.image), gray, saturation), "RGB")
        result.references = list(self.references)
        result.seconds = time.perf_counter() - started
        return result

    def _with_hints(self, hints: Hints,
                    saturation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Working-resolution chroma, confidence and source with the points applied, and the trust."""
        prediction = self.prediction
        base = prediction.ab * np.float32(saturation)
        propagator = self._propagator_for()
        footprints = [self._footprint(hint.x, hint.y) for hint in hints]
        targets = rgb_to_lab(np.array([hint.rgb for hint in hints], np.float64))[:, 1:]
        base_at = np.array([np.einsum("ij,ijc->c", weights, base[rows][:, columns])
                            for rows, columns, weights in footprints])
        centres = [propagator.cell(*_centre(rows, columns, weights)) for rows, columns, weights in footprints]
        propagated = propagator.solve(centres, targets, base_at)
        ab = propagated.trust * base + propagated.correction
        # The full-size pixel at a point's centre is interpolated from these working pixels alone: giving
        # them the chroma that lands on the point's at that pixel's gray level puts it there.
        gray = np.asarray(self.target)
        landing = chroma_landing_on(np.array([gray[hint.y, hint.x] for hint in hints]), targets)
        for (rows, columns, _), chroma in zip(footprints, landing):
            ab[np.ix_(rows, columns)] = chroma
        confidence = np.maximum(prediction.confidence, propagated.influence)
        governed = propagated.influence > POINT_SOURCE_INFLUENCE
        source = np.where(governed, -1, prediction.source).astype(np.int8)
        return ab.astype(np.float32), confidence.astype(np.float32), source, propagated.trust

    def _propagator_for(self) -> HintPropagator:
        if self._propagator is None:
            self._propagator = HintPropagator(self._work_luma, self.settings)
        return self._propagator

    def _footprint(self, x: int, y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The working-resolution rows and columns that full-size pixel (x, y) is resampled from, and their
        (rows, columns) weights."""
        if self._resampling is None:
            (work_h, work_w), (width, height) = self.prediction.confidence.shape, self.size
            self._resampling = (resize_matrix(work_h, height), resize_matrix(work_w, width))
        row_matrix, column_matrix = self._resampling
        rows, row_weights = _taps(row_matrix, y)
        columns, column_weights = _taps(column_matrix, x)
        weights = np.outer(row_weights, column_weights)
        return rows, columns, weights / weights.sum()

    # -- suggestions --------------------------------------------------------------------------------------
    def suggest(self, x: int, y: int, count: int = 6) -> list[Suggestion]:
        """Up to `count` colours likely at pixel (x, y): the peaks of the prior's distribution there, then
        each reference's colour matched there, then no colour (gray); for a method that gives neither, its
        own colour there."""
        Hints((Hint(x, y, "#000000"),)).check(self.size)
        if count < 1:
            raise InvalidArgumentError(f"count must be at least 1, got {count}")
        gray_level = int(np.asarray(self.target)[y, x])
        palette = self.prediction.palette if self.prediction is not None else None
        likely = self._from_palette(palette, x, y) if palette is not None else []
        if not likely:
            likely = [(self._colour_at(x, y), 1.0, "this method's colour")]
        chosen = likely[:count - 1] + [(np.zeros(2), 0.0, "no colour")]
        return [Suggestion(_hex(gray_level, ab), share, source) for ab, share, source in chosen]

    def _from_palette(self, palette: Palette, x: int, y: int) -> list[tuple[np.ndarray, float, str]]:
        width, height = self.size
        found = []
        if palette.prior_probabilities is not None:
            rows, columns = palette.prior_probabilities.shape[:2]
            probabilities = palette.prior_probabilities[_cell(y, height, rows), _cell(x, width, columns)]
            found += [(ab, share, "prior") for ab, share in _peaks(palette.prior_centres, probabilities)]
        rows, columns = palette.reference_confidence.shape[1:]
        row, column = _cell(y, height, rows), _cell(x, width, columns)
        order = np.argsort(-palette.reference_confidence[:, row, column], kind="stable")
        for number in order:
            label = f"reference {number + 1}"
            name = self.references[number].name if number < len(self.references) else label
            label += f": {name}" if name != label else ""
            found.append((palette.reference_ab[number, row, column],
                          float(np.clip(palette.reference_confidence[number, row, column], 0, 1)), label))
        return found

    def _colour_at(self, x: int, y: int) -> np.ndarray:
        if self.prediction is not None:
            rows, columns, weights = self._footprint(x, y)
            return np.einsum("ij,ijc->c", weights, self.prediction.ab[rows][:, columns])
        return rgb_to_lab(np.asarray(self._result.image)[y, x].astype(np.float64))[1:]


def chroma_landing_on(gray_levels: np.ndarray, ab: np.ndarray, steps: int = 4) -> np.ndarray:
    """(k, 2): the chroma to put on each of the (k,) `gray_levels` (colorize_gray) for the pixel to come out
    with the (k, 2) chroma `ab`. Keeping a pixel's luma moves its Lab lightness, and with it its a and b, a
    little (a few units for saturated colours); a few fixed-point steps take that back. A chroma that the
    gamut does not hold at that gray level stays as near as the gamut allows."""
    wanted = np.asarray(ab, np.float64).reshape(1, -1, 2)
    given = wanted.copy()
    pixels = np.asarray(gray_levels, np.uint8).reshape(1, -1)
    for _ in range(steps):
        miss = wanted - rgb_to_lab(colorize_gray(pixels, given))[..., 1:]
        if np.abs(miss).max() < 0.25:
            break
        given = np.clip(given + miss, -128.0, 127.0)
    return given[0].astype(np.float32)


def _taps(matrix, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The source positions with a weight in row `index` of a resampling matrix, and their weights."""
    start, end = matrix.indptr[index], matrix.indptr[index + 1]
    indices, weights = matrix.indices[start:end], matrix.data[start:end]
    keep = weights > 0
    return indices[keep], weights[keep].astype(np.float64)


def _centre(rows: np.ndarray, columns: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    return float(weights.sum(axis=1) @ rows), float(weights.sum(axis=0) @ columns)


def _cell(position: int, size: int, cells: int) -> int:
    return min(cells - 1, int((position + 0.5) * cells / size))


def _peaks(centres: np.ndarray, probabilities: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The distribution's peaks, most likely first: each the probability-weighted mean of the colours within
    SUGGESTION_RADIUS of its bin, with their total probability; none within twice that radius of a likelier
    one, so that the choices differ visibly."""
    taken = np.zeros(len(centres), bool)
    peaks = []
    for bin_index in np.argsort(-probabilities, kind="stable"):
        if taken[bin_index]:
            continue
        near = np.linalg.norm(centres - centres[bin_index], axis=1) <= SUGGESTION_RADIUS
        share = float(probabilities[near].sum())
        if share < MIN_SUGGESTION_SHARE:
            break
        peaks.append((probabilities[near] @ centres[near] / max(share, 1e-9), share))
        taken |= np.linalg.norm(centres - centres[bin_index], axis=1) <= 2 * SUGGESTION_RADIUS
    return peaks


def _hex(gray_level: int, ab: np.ndarray) -> str:
    rgb = colorize_gray(np.array([[gray_level]], np.uint8), np.asarray(ab, np.float32).reshape(1, 1, 2))[0, 0]
    return "#" + "".join(f"{int(channel):02x}" for channel in rgb)

