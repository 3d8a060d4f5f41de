"""Spreading colour hints over a photo along its structure, on top of what a method predicted.

The chroma is modelled as `u = trust * base + r`: the method's chroma `base`, kept at a strength `trust`,
plus a correction `r` that is smooth along the photo's structure. The correction's prior is the Gaussian
Markov random field of Levin et al. (2004): precision `decay * I + smoothness * L`, with L the Laplacian of
the 8-connected pixel grid weighted by luminance affinities `exp(-(g_i - g_j)^2 / 2 sigma^2)`, so colour
spreads far through regions of even gray levels and little across strong edges. The hints are observations
of u with a little noise (`nugget`), so that points close together, even on one cell of the grid, may
disagree: the solve stays well posed, and colorize.session then gives each point its own colour at its
pixel (unless both pixels are resampled from the same working pixels). The posterior mean is then kriging:
with G the columns of the inverse precision at the hints' pixels and K = G[hints] their covariance plus
the noise, `r = G K^-1 (t - trust * b)`, where t are the hints' chroma and b the base there; `trust` is
itself estimated from the hints by generalised least squares around a prior value (a base that the points
confirm is kept at full strength, one they contradict fades).

Per photo the precision is factorised once (a sparse LU on a grid at half the working resolution); each
new point then costs one pair of triangular solves and a small dense system, so moving a point on the
page re-solves in tens of milliseconds. With a trust of 0, held there, and a decay near 0, this is Levin
et al.'s propagation of the points over a gray photo."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from PIL import Image
from scipy.linalg import cho_solve, solve_triangular
from threadpoolctl import ThreadpoolController

from refsearch.errors import InvalidArgumentError

from .refine import affinity_laplacian
from .resample import resize

SPARE_COLUMNS = 32
_THREADPOOLS = ThreadpoolController()


def _one_blas_thread():
    """The solves here are many small BLAS calls (the LU's supernodes, k x k systems): a second thread only
    adds synchronisation, which on a busy machine made them several times slower. (The limit holds for the
    whole process while it lasts.)"""
    return _THREADPOOLS.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class HintSettings:
    """How hints spread. Chosen on the development photos (docs/colorize.md, "Colour hints")."""

    scale: float = 0.5           # the propagation grid, as a fraction of the working resolution
    smoothness: float = 1.0      # weight of the smoothness term
    edge_sigma: float = 0.02     # luminance difference (0-1 scale) across which colour stops spreading
    decay: float = 1e-5          # pull of the correction back to 0 per pixel: spreads over ~sqrt(1/decay) px
    # The strength at which the method's colour is kept under points, before they say otherwise, and how
    # far they may move it (0: held at `trust`). Colour that no point confirms costs more PSNR than it
    # gains on the development photos; points that agree with it bring it back towards full strength.
    trust: float = 0.3
    trust_spread: float = 0.3
    max_trust: float = 1.0
    spread: float = 20.0         # standard deviation of the correction, in ab units, against the trust's
    # Observation noise, relative to a point's own variance. Above 0: two points on one cell (or on
    # neighbouring, almost equally correlated cells) with different colours would otherwise make the
    # points' covariance singular, and the correction explode.
    nugget: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("scale", "smoothness", "edge_sigma", "spread", "nugget"):
            if not getattr(self, name) > 0:
                raise InvalidArgumentError(f"hint setting {name} must be above 0, got {getattr(self, name)}")
        for name in ("decay", "trust", "trust_spread"):
            if not getattr(self, name) >= 0:
                raise InvalidArgumentError(f"hint setting {name} must be 0 or more, got "
                                           f"{getattr(self, name)}")
        if not 0 < self.scale <= 1:
            raise InvalidArgumentError(f"hint setting scale must be in (0, 1], got {self.scale}")
        if self.max_trust < self.trust:
            raise InvalidArgumentError("hint setting max_trust must be at least trust")


@dataclass(frozen=True)
class Propagated:
    """The chroma correction at working resolution (h, w, 2) to add to `trust` times the base, how much
    each pixel is governed by the points (h, w) in [0, 1], and the trust."""

    correction: np.ndarray
    influence: np.ndarray
    trust: float


class HintPropagator:
    """One photo's structure, factorised once, for any number of solves with different points."""

    def __init__(self, luma: np.ndarray, settings: HintSettings | None = None):
        """`luma`: the (h, w) uint8 gray levels at working resolution."""
        self.settings = settings = settings or HintSettings()
        self.working_shape = luma.shape
        height, width = luma.shape
        size = (max(1, round(width * settings.scale)), max(1, round(height * settings.scale)))
        grid = Image.fromarray(luma)
        if size != (width, height):
            grid = grid.resize(size, Image.BILINEAR, reducing_gap=3.0)
        guide = np.asarray(grid, np.float32) / 255.0
        self.shape = guide.shape
        count = guide.size
        precision = (settings.decay * sp.identity(count, format="csc")
                     + settings.smoothness * affinity_laplacian(guide, settings.edge_sigma)).tocsc()
        if settings.decay == 0:
            # regions that no point reaches stay put rather than make the system singular
            precision = precision + 1e-9 * sp.identity(count, format="csc")
        # The precision is symmetric: an ordering of A + A^T with symmetric pivoting fills in about half as
        # much as the default, and solves about three times faster.
        with _one_blas_thread():
            self._factor = spla.splu(precision, permc_spec="MMD_AT_PLUS_A",
                                     options={"SymmetricMode": True, "DiagPivotThresh": 0.0})
        self._columns: OrderedDict[int, np.ndarray] = OrderedDict()

    def cell(self, y: float, x: float) -> int:
        """The flat index of the propagation cell over working-resolution point (y, x)."""
        (height, width), (rows, columns) = self.working_shape, self.shape
        row = min(rows - 1, max(0, int((y + 0.5) * rows / height)))
        column = min(columns - 1, max(0, int((x + 0.5) * columns / width)))
        return row * columns + column

    def solve(self, cells: Sequence[int], targets: np.ndarray, base: np.ndarray) -> Propagated:
        """`cells` from `cell`, the points' chroma `targets` (k, 2), the method's chroma at them `base`
        (k, 2)."""
        with _one_blas_thread():
            return self._solve(cells, targets, base)

    def _solve(self, cells: Sequence[int], targets: np.ndarray, base: np.ndarray) -> Propagated:
        settings = self.settings
        height, width = self.working_shape
        if not len(cells):
            return Propagated(np.zeros((height, width, 2), np.float32), np.zeros((height, width), np.float32),
                              1.0)
        targets = np.asarray(targets, np.float64)
        base = np.asarray(base, np.float64)
        columns = self._columns_of(list(cells))
        covariance = columns[:, list(cells)].astype(np.float64)
        variances = np.diag(covariance).copy()
        own = float(variances.mean())
        covariance += settings.nugget * own * np.eye(len(cells))
        factor = np.linalg.cholesky(covariance)
        trust = self._trust(factor, targets, base, own)
        weights = cho_solve((factor, True), targets - trust * base)
        correction = (weights.T.astype(np.float32) @ columns).T.reshape(self.shape + (2,))
        # How far each pixel follows its most correlated point: 1 at a point, falling off as colour spreads.
        influence = np.max(columns / variances.astype(np.float32)[:, None], axis=0)
        influence = np.clip(influence.reshape(self.shape), 0.0, 1.0)
        return Propagated(resize(correction, height, width), np.clip(resize(influence, height, width), 0, 1),
                          trust)

    def _trust(self, factor: np.ndarray, targets: np.ndarray, base: np.ndarray, own: float) -> float:
        """Generalised least squares of trust * base against the points (both channels), with the points'
        covariance scaled so that a point's own variance is `spread`^2, around the prior `trust`."""
        settings = self.settings
        if settings.trust_spread == 0:
            return settings.trust
        whitened_base = solve_triangular(factor, base, lower=True)
        whitened_targets = solve_triangular(factor, targets, lower=True)
        variance = settings.spread ** 2 / own
        precision = float(np.sum(whitened_base * whitened_base)) / variance + 1 / settings.trust_spread ** 2
        pulled = (float(np.sum(whitened_base * whitened_targets)) / variance
                  + settings.trust / settings.trust_spread ** 2)
        return float(np.clip(pulled / precision, 0.0, settings.max_trust))

    def _columns_of(self, cells: list[int]) -> np.ndarray:
        """(k, n) float32: the inverse precision's column at each cell (as a row), each solved for once;
        beside the latest cells', the SPARE_COLUMNS used most recently are kept (a point moved back, a
        count lowered)."""
        for cell in dict.fromkeys(cells):
            if cell in self._columns:
                self._columns.move_to_end(cell)
        new = [cell for cell in dict.fromkeys(cells) if cell not in self._columns]
        if new:
            unit = np.zeros((self.shape[0] * self.shape[1], len(new)))
            unit[new, np.arange(len(new))] = 1.0
            solved = self._factor.solve(unit).T.astype(np.float32)
            for position, cell in enumerate(new):
                self._columns[cell] = solved[position]
        columns = np.stack([self._columns[cell] for cell in cells])
        while len(self._columns) > len(set(cells)) + SPARE_COLUMNS:
            self._columns.popitem(last=False)
        return columns
