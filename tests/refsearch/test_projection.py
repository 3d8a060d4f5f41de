"""PCA projections and L2 normalisation."""
from __future__ import annotations

import numpy as np
import pytest

from refsearch.projection import Projection, Projections, l2_normalize


def _subspace_samples(n=60, features=10, rank=3, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(features, rank)))[0].T  # (rank, features), orthonormal rows
    offset = rng.normal(size=features) * 5
    return (rng.normal(size=(n, rank)) * [5.0, 2.0, 1.0][:rank]) @ basis + offset, basis


def test_l2_normalize_gives_unit_rows_and_leaves_zero_rows_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    batch = l2_normalize(np.ones((2, 3, 4)))
    np.testing.assert_allclose(batch, 0.5)


def test_fit_finds_the_subspace_the_samples_lie_in():
    samples, basis = _subspace_samples()
    projection = Projection.fit(samples, dim=3)
    assert projection.output_dim == 3
    components = projection.components
    np.testing.assert_allclose(components @ components.T, np.eye(3), atol=1e-5)
    # the components span the same subspace as the basis the samples were drawn in
    np.testing.assert_allclose(np.abs(np.linalg.svd(components @ basis.T)[1]), 1.0, atol=1e-4)
    np.testing.assert_allclose(projection.mean, samples.mean(axis=0), atol=1e-4)


def test_projection_output_is_unit_length_and_preserves_angles_within_the_subspace():
    samples, _ = _subspace_samples()
    projection = Projection.fit(samples, dim=3)
    out = projection(samples)
    assert out.shape == (60, 3) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    centred = samples - samples.mean(axis=0)
    expected = l2_normalize(centred) @ l2_normalize(centred).T
    np.testing.assert_allclose(out @ out.T, expected, atol=1e-4)


def test_randomized_fit_is_deterministic():
    samples, _ = _subspace_samples(n=400, features=30, rank=3)
    first, second = Projection.fit(samples, dim=4), Projection.fit(samples, dim=4)  # n > 4 * dim: randomized
    np.testing.assert_array_equal(first.components, second.components)


@pytest.mark.parametrize("n, features, dim", [(5, 10, 8), (8, 10, 8), (50, 6, 8), (50, 8, 8)])
def test_too_few_samples_or_features_keep_every_feature(n, features, dim):
    samples = np.random.default_rng(1).normal(size=(n, features))
    projection = Projection.fit(samples, dim=dim)
    assert projection.output_dim == features
    np.testing.assert_array_equal(projection.components, np.eye(features))
    np.testing.assert_array_equal(projection.mean, np.zeros(features))
    np.testing.assert_allclose(projection(samples), l2_normalize(samples), atol=1e-6)


def test_projections_round_trip_through_bytes():
    samples, _ = _subspace_samples()
    projections = Projections(Projection.fit(samples, 3), Projection.fit(samples[:, :5], 2), fitted_on=60)
    loaded = Projections.from_bytes(projections.to_bytes())
    assert loaded.fitted_on == 60
    assert loaded.global_.output_dim == 3 and loaded.cells.output_dim == 2
    np.testing.assert_array_equal(loaded.global_(samples), projections.global_(samples))
    np.testing.assert_array_equal(loaded.cells(samples[:, :5]), projections.cells(samples[:, :5]))
