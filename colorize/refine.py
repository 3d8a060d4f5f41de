"""Edge-aware refinement guided by the target's luminance: a guided filter (He et al. 2010) to snap warped
chroma to the target's edges, and a Levin et al. (2004) style optimisation that propagates confident
chroma into the rest of the image along paths of similar luminance."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.ndimage import uniform_filter

_SOLVER_FLOOR = 1e-4
_SOLVER_TOLERANCE = 1e-3
_SOLVER_ITERATIONS = 400


def guided_filter(guide: np.ndarray, values: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Filter each channel of (h, w, c) `values` with the (h, w) guide in [0, 1]."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=size + (1,) * (x.ndim - 2), mode="reflect")

    guide3 = guide[..., None]
    mean_guide = box(guide)[..., None]
    variance = box(guide * guide)[..., None] - mean_guide ** 2
    mean_values = box(values)
    slope = (box(guide3 * values) - mean_guide * mean_values) / (variance + eps)
    offset = mean_values - slope * mean_guide
    return box(slope) * guide3 + box(offset)


def propagate(guide: np.ndarray, values: np.ndarray, weights: np.ndarray, smoothness: float,
              sigma: float) -> np.ndarray:
    """Minimise sum_i w_i |u_i - v_i|^2 + smoothness * sum_(i~j) a_ij |u_i - u_j|^2 over the 8-connected
    pixel grid, with affinity a_ij = exp(-(g_i - g_j)^2 / 2 sigma^2) from the guide in [0, 1]. The normal
    equations are symmetric positive definite: Jacobi-preconditioned conjugate gradients, started from
    `values`, solve them for each channel of (h, w, c) `values` far faster than a factorisation."""
    data = np.maximum(weights.ravel().astype(np.float64), _SOLVER_FLOOR)
    system = (sp.diags(data) + smoothness * affinity_laplacian(guide, sigma)).tocsr()
    inverse_diagonal = 1.0 / system.diagonal()
    preconditioner = spla.LinearOperator(system.shape, matvec=lambda v: inverse_diagonal * v)
    flat = values.reshape(data.size, -1).astype(np.float64)
    solution = np.empty_like(flat)
    for channel in range(flat.shape[1]):
        solution[:, channel], _ = spla.cg(system, data * flat[:, channel], x0=flat[:, channel],
                                          rtol=_SOLVER_TOLERANCE, maxiter=_SOLVER_ITERATIONS,
                                          M=preconditioner)
    return solution.reshape(values.shape).astype(np.float32)


def affinity_laplacian(guide: np.ndarray, sigma: float) -> sp.csr_matrix:
    """The graph Laplacian of the 8-connected pixel grid of the (h, w) guide in [0, 1], with affinities
    exp(-(g_i - g_j)^2 / 2 sigma^2) (diagonal neighbours at half weight)."""
    height, width = guide.shape
    index = np.arange(height * width).reshape(height, width)
    guide = guide.astype(np.float64)
    pairs = [
        (index[:, :-1], index[:, 1:], guide[:, :-1] - guide[:, 1:], 1.0),
        (index[:-1, :], index[1:, :], guide[:-1, :] - guide[1:, :], 1.0),
        (index[:-1, :-1], index[1:, 1:], guide[:-1, :-1] - guide[1:, 1:], 0.5),
        (index[:-1, 1:], index[1:, :-1], guide[:-1, 1:] - guide[1:, :-1], 0.5),
    ]
    first = np.concatenate([a.ravel() for a, _, _, _ in pairs])
    second = np.concatenate([b.ravel() for _, b, _, _ in pairs])
    affinity = np.concatenate([w * np.exp(-(d.ravel() ** 2) / (2 * sigma ** 2)) for _, _, d, w in pairs])
    n = height * width
    adjacency = sp.coo_matrix((affinity, (first, second)), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    return sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
