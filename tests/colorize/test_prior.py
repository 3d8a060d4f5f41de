import numpy as np
import pytest
import torch

from colorize import ColorizeError, colorize
from colorize.chroma import WorkingImage
from colorize.correspondence import DenseFeatures, Warp, fuse
from colorize.exemplar import ExemplarColorizer, ExemplarSettings, UntrainedExemplarColorizer
from colorize.prior import (EXEMPLAR_CHANNELS, REFERENCES_SEEN, CellChroma, ChromaPrior, Normalisation,
                            PriorInputs, PriorNetwork, bin_centres, bin_of, bundled_prior_path,
                            spread_over_bins)

GRID = (6, 8)


def _warp(colour, confidence) -> Warp:
    return Warp(np.broadcast_to(np.float32(colour), GRID + (2,)).copy(),
                np.full(GRID, confidence, np.float32),
                np.full(GRID, float(np.hypot(*colour)), np.float32))


def _target(channels=12, seed=0) -> DenseFeatures:
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randn(channels, *GRID, generator=generator)
    return DenseFeatures(torch.nn.functional.normalize(levels.flatten(1).T, dim=1), GRID, levels,
                         torch.randn(20, generator=generator))


def _prior(seed=0, fingerprint="abc", networks=2) -> ChromaPrior:
    torch.manual_seed(seed)
    used = np.zeros(len(bin_centres()), bool)
    used[::3] = True
    nets = [PriorNetwork(12, 20, int(used.sum()), width=8, global_width=4) for _ in range(networks)]
    normalisation = Normalisation(torch.zeros(12), torch.ones(12), torch.zeros(20), torch.ones(20))
    return ChromaPrior(nets, normalisation, used, "tiny", fingerprint, {"note": "test"})


def test_bins_cover_the_ab_plane_and_each_centre_falls_in_its_own_bin():
    centres = bin_centres()
    assert centres.shape == (484, 2)
    assert np.array_equal(bin_of(centres), np.arange(len(centres)))
    assert bin_of(np.array([[-500.0, 500.0]])) == bin_of(np.array([[-105.0, 105.0]]))  # clipped to the edge


def test_spread_over_bins_peaks_at_the_nearest_centre():
    centres = torch.from_numpy(bin_centres())
    ab = torch.tensor([[[[25.0]], [[-45.0]]]])
    weights = spread_over_bins(ab, centres)
    assert weights.shape == (1, len(centres), 1, 1)
    assert torch.allclose(weights.sum(dim=1), torch.ones(1, 1, 1))
    assert bin_of(np.array([25.0, -45.0])) == int(weights[0, :, 0, 0].argmax())


def test_prior_inputs_take_the_most_confident_references_and_repeat_a_single_one():
    warps = [_warp((10 * i, -5 * i), confidence) for i, confidence in enumerate([0.1, 0.9, 0.5, 0.8, 0.2])]
    inputs = PriorInputs.of(_target(), warps)
    assert inputs.exemplar.shape == (EXEMPLAR_CHANNELS,) + GRID
    chosen_a = inputs.exemplar[0:4 * REFERENCES_SEEN:4, 0, 0] * 50
    assert torch.allclose(chosen_a, torch.tensor([10.0, 20.0, 30.0]))  # references 1, 2 and 3, in their order
    weights = np.exp(np.array([0.9, 0.5, 0.8]) / 0.05 - 0.9 / 0.05)
    fused = (weights / weights.sum()) @ np.array([[10.0, -5.0], [20.0, -10.0], [30.0, -15.0]])
    assert torch.allclose(inputs.reference_ab[:, 0, 0], torch.tensor(fused, dtype=torch.float32), atol=1e-3)
    single = PriorInputs.of(_target(), [_warp((7, 3), 0.6)])
    assert torch.equal(single.exemplar[0:4], single.exemplar[4:8])
    with pytest.raises(ColorizeError):
        PriorInputs.of(_target(), [])


def test_prediction_is_an_expectation_over_the_bins_with_a_certainty(tmp_path):
    prior = _prior()
    cells = prior.predict(PriorInputs.of(_target(), [_warp((30, 10), 0.7)]))
    assert cells.ab.shape == GRID + (2,) and cells.certainty.shape == GRID
    assert np.all((cells.certainty >= 0) & (cells.certainty <= 1))
    assert np.abs(cells.ab).max() <= 110


def test_save_and_load_round_trip(tmp_path):
    prior = _prior(networks=3)
    path = tmp_path / "prior.pt"
    prior.save(path)
    assert not list(tmp_path.glob("*.partial"))
    loaded = ChromaPrior.load(path)
    assert len(loaded.networks) == 3 and loaded.metadata == {"note": "test"}
    assert loaded.fits("tiny", "abc") and not loaded.fits("tiny", "other") and not loaded.fits("vgg19", "abc")
    inputs = PriorInputs.of(_target(seed=3), [_warp((-20, 40), 0.4), _warp((5, 5), 0.9)])
    assert np.allclose(prior.predict(inputs).ab, loaded.predict(inputs).ab, atol=0.5)  # float16 weights


def test_loading_a_missing_or_foreign_file_says_so(tmp_path):
    with pytest.raises(ColorizeError, match="not found"):
        ChromaPrior.load(tmp_path / "absent.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ColorizeError, match="is not a chroma prior"):
        ChromaPrior.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a file torch can read")
    with pytest.raises(ColorizeError, match="is not a chroma prior"):
        ChromaPrior.load(tmp_path / "junk.pt")


def test_the_bundled_prior_ships_and_fits_the_default_backbone(backbone):
    prior = ChromaPrior.load(bundled_prior_path(backbone.name))
    assert prior.fits(backbone.name, backbone.fingerprint)
    assert len(prior.networks) >= 1 and prior.metadata["photos"] > 0


def test_a_prior_for_other_weights_falls_back_to_the_untrained_pipeline_with_a_note(gray_scene, colour_scene,
                                                                                      backbone):
    foreign = ExemplarColorizer(backbone, prior=_prior(fingerprint="someone else's"))
    result = colorize(gray_scene, [colour_scene], foreign)
    untrained = colorize(gray_scene, [colour_scene], UntrainedExemplarColorizer(backbone))
    assert any("untrained propagation" in note for note in result.notes)
    assert np.array_equal(np.asarray(result.image), np.asarray(untrained.image))


def test_a_prior_path_is_loaded_and_used(tmp_path, gray_scene, colour_scene, backbone):
    bundled = ChromaPrior.load(bundled_prior_path(backbone.name))
    path = tmp_path / "copy.pt"
    bundled.save(path)
    by_path = colorize(gray_scene, [colour_scene], ExemplarColorizer(backbone, prior=path))
    default = colorize(gray_scene, [colour_scene], ExemplarColorizer(backbone))
    assert not by_path.notes
    assert np.array_equal(np.asarray(by_path.image), np.asarray(default.image))
    with pytest.raises(ColorizeError, match="not found"):
        colorize(gray_scene, [colour_scene], ExemplarColorizer(backbone, prior=tmp_path / "absent.pt"))


class _FixedPrior:
    """Predicts the given per-cell chroma whatever the photo."""

    def __init__(self, ab):
        self.ab = np.asarray(ab, np.float32)

    def predict(self, inputs):
        return CellChroma(self.ab, np.ones(self.ab.shape[:2], np.float32))


def test_exemplar_scales_the_photos_cast_and_its_departures_from_it_apart():
    settings = ExemplarSettings(prior_saturation=2.0, prior_cast_saturation=0.5)
    colorizer = ExemplarColorizer(settings=settings, prior=None)
    luma = np.full((48, 64), 120, np.uint8)
    luma[:, 32:] = 200  # an edge where the predicted colours change, for the guided filter to keep
    target = WorkingImage(luma, np.zeros(luma.shape + (3,), np.float32))
    warps = [_warp((0, 0), 0.1)]  # far below the trust thresholds: the prior decides
    cast, departure = np.array([10.0, 20.0]), np.array([8.0, -4.0])
    cells = np.broadcast_to(cast, GRID + (2,)).copy()
    cells[:, :4] += departure
    cells[:, 4:] -= departure

    def predicted(cell_ab):
        return colorizer._with_prior(_FixedPrior(cell_ab), target, _target(), warps, fuse(warps, 0.05)).ab

    uniform = predicted(np.broadcast_to(cast, GRID + (2,)))
    assert np.allclose(uniform, 0.5 * cast, atol=1e-3)
    patterned = predicted(cells)
    assert np.allclose(patterned[24, 8], 0.5 * cast + 2.0 * departure, atol=0.5)
    assert np.allclose(patterned[24, 56], 0.5 * cast - 2.0 * departure, atol=0.5)


def test_an_index_network_the_bundled_prior_was_not_trained_on_is_replaced_by_the_one_it_was(
        gray_scene, colour_scene, backbone):
    from refsearch.network import open_network

    gray_adapted = open_network("efficientnet-lite2")  # what a default index is built with
    assert gray_adapted.fingerprint != backbone.fingerprint
    result = colorize(gray_scene, [colour_scene], ExemplarColorizer(gray_adapted))
    assert not any("untrained propagation" in note for note in result.notes)
    trained_on = colorize(gray_scene, [colour_scene], ExemplarColorizer(backbone))
    assert np.array_equal(np.asarray(result.image), np.asarray(trained_on.image))
