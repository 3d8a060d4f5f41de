"""PCA projections fitted on the collection, then L2 normalisation: raw CNN descriptors to stored ones."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """x -> normalize((x - mean) @ components.T). With too few samples to fit `dim` components,
    components is the identity (no reduction) and mean zero, so small collections still work."""

    mean: np.ndarray
    components: np.ndarray

    @property
    def output_dim(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, samples: np.ndarray, dim: int, seed: int = 0) -> "Projection":
        samples = np.asarray(samples, dtype=np.float32)
        n, features = samples.shape
        if n <= dim or features <= dim:
            return cls(np.zeros(features, np.float32), np.eye(features, dtype=np.float32))
        from sklearn.decomposition import PCA

        # "auto" takes the exact covariance eigendecomposition when samples far outnumber features (cell
        # descriptors: several times faster than a randomized SVD), else a randomized or full SVD.
        pca = PCA(n_components=dim, svd_solver="auto", random_state=seed)
        pca.fit(samples)
        return cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # (x - mean) @ C.T as x @ C.T - mean @ C.T: no centred copy of the (wide) input
        reduced = np.asarray(x, dtype=np.float32) @ self.components.T
        reduced -= self.mean @ self.components.T
        return l2_normalize(reduced)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return x / np.maximum(norms, np.float32(1e-12))


@dataclass(frozen=True)
class Projections:
    global_: Projection
    cells: Projection
    fitted_on: int

    def to_bytes(self) -> bytes:
        """The projections as an .npz file's bytes."""
        buffer = io.BytesIO()
        np.savez(buffer, global_mean=self.global_.mean, global_components=self.global_.components,
                 cell_mean=self.cells.mean, cell_components=self.cells.components, fitted_on=np.int64(self.fitted_on))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Projections":
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(Projection(arrays["global_mean"], arrays["global_components"]),
                       Projection(arrays["cell_mean"], arrays["cell_components"]), int(arrays["fitted_on"]))
