"""Exporting a backbone: the graph computes what the backbone does (the tiny one, and the real network on
demo photos within cosine 1e-4), adaptive pooling included; what cannot be exported, or would compute
something else, is refused with GraphExportError."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from refsearch.backbones import Backbone, BackboneOutput, create_backbone, state_fingerprint
from refsearch.config import IndexConfig
from refsearch.errors import GraphExportError
from refsearch.features import load_prepared
from refsearch.runtime.graph import _pooled_by_matrices, export_graph, lowest_cosine
from refsearch.runtime.network import RuntimeNetwork

BOUND = 1 - 1e-4


def _luminance(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _cell_vectors(cells: np.ndarray) -> np.ndarray:
    """(B, C, g, g) -> one row per cell."""
    return cells.reshape(cells.shape[0], cells.shape[1], -1).transpose(0, 2, 1).reshape(-1, cells.shape[1])


@pytest.mark.parametrize("size, output", [((9, 9), 7), ((14, 14), 7), ((7, 7), 7), ((5, 11), 7), ((13, 8), (3, 5)),
                                          ((10, 10), (None, 4))])
def test_pooling_by_matrices_is_torchs_adaptive_average_pooling(size, output):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_pooled_by_matrices(x, output), F.adaptive_avg_pool2d(x, output),
                               rtol=1e-6, atol=1e-6)


def _exported(backbone) -> RuntimeNetwork:
    exported = export_graph(backbone)
    return RuntimeNetwork(exported.onnx, exported.info)


@pytest.mark.parametrize("shape", [(1, 56, 56), (5, 56, 56), (2, 40, 72)])
def test_the_tiny_backbones_graph_gives_its_outputs_for_any_batch_and_size(tiny, shape):
    network = _exported(tiny)
    luminance = _luminance(shape)
    expected, actual = tiny.extract(luminance), network.extract(luminance)
    for name in ("logits", "global_descriptor", "cells"):
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name).numpy(), rtol=1e-5, atol=1e-5)
        assert getattr(actual, name).dtype == np.float32
    assert actual.feature_maps == []
    assert (network.name, network.fingerprint, network.input_size, network.grid, network.global_dim,
            network.cell_dim) == (tiny.name, tiny.fingerprint, 56, 7, 24, 12)


def test_the_tiny_backbones_graph_gives_its_feature_maps_when_asked(tiny):
    network = _exported(tiny)
    luminance = _luminance((2, 48, 88))
    expected, actual = tiny.extract(luminance, feature_maps=True), network.extract(luminance, feature_maps=True)
    assert network.info.feature_maps == 2 and len(actual.feature_maps) == 2
    for torch_map, runtime_map in zip(expected.feature_maps, actual.feature_maps):
        np.testing.assert_allclose(runtime_map, torch_map.numpy(), rtol=1e-5, atol=1e-5)
        assert runtime_map.dtype == np.float32


def test_only_a_backbone_on_cpu_in_float32_is_exported(tiny):
    with pytest.raises(ValueError, match="float32"):
        export_graph(create_backbone("tiny-test", precision="bfloat16"))


class _Odd(Backbone):
    """A tiny network with something torch runs but the export cannot carry over."""

    name = "odd-test"
    input_size = 16
    global_dim = 4
    cell_dim = 4

    def __init__(self, untraceable: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.classifier = nn.Linear(4, 1000)
        self.untraceable = untraceable
        self.fingerprint = state_fingerprint(self.state_dict())
        self.eval()

    def normalize(self, pixels):
        return pixels / 255.0

    def features(self, x, feature_maps=False):
        x = torch.relu(self.conv(x))
        if self.untraceable:
            x = torch.special.i0(x)  # a Bessel function: ONNX has none
        elif x.shape[0] == 2:  # a branch on the batch size: tracing keeps only the traced batch's
            x = x * 3
        pooled = x.mean(dim=(2, 3))
        return BackboneOutput(self.classifier(pooled), pooled, F.adaptive_avg_pool2d(x, self.grid))


def test_a_backbone_the_exporter_cannot_translate_raises_graph_export_error(capfd):
    with pytest.raises(GraphExportError, match="odd-test cannot be exported .*aten::i0") as error:
        export_graph(_Odd(untraceable=True))
    assert "torch" in error.value.hint
    assert capfd.readouterr().out == ""  # not the exporter's dump of the graph


def test_a_graph_that_computes_something_else_than_the_backbone_is_refused():
    with pytest.raises(GraphExportError, match="computes another logits than torch"):
        export_graph(_Odd(untraceable=False))


def _demo_luminance(photos, size: int) -> np.ndarray:
    return np.stack([load_prepared(path, IndexConfig(), size).network_input for path in photos])


def test_the_real_networks_descriptors_are_torchs_within_1e4_cosine(efficientnet, efficientnet_graph, demo_photos):
    luminance = _demo_luminance(demo_photos[::6], efficientnet.input_size)
    expected, actual = efficientnet.extract(luminance), efficientnet_graph.extract(luminance)
    assert lowest_cosine(expected.global_descriptor.numpy(), actual.global_descriptor) >= BOUND
    assert lowest_cosine(_cell_vectors(expected.cells.numpy()), _cell_vectors(actual.cells)) >= BOUND
    np.testing.assert_allclose(actual.logits, expected.logits.numpy(), atol=1e-3)
    assert (actual.logits.argmax(1) == expected.logits.numpy().argmax(1)).all()
    assert actual.feature_maps == []


def test_the_real_networks_feature_maps_are_torchs_at_a_photos_own_shape(efficientnet, efficientnet_graph,
                                                                         demo_photos):
    image = Image.open(demo_photos[3]).convert("L")
    luminance = np.array(image.resize((256 * image.width // image.height, 256), Image.BILINEAR))[None]
    expected = efficientnet.extract(luminance, feature_maps=True)
    actual = efficientnet_graph.extract(luminance, feature_maps=True)
    assert [m.shape for m in actual.feature_maps] == [tuple(m.shape) for m in expected.feature_maps]
    for torch_map, runtime_map in zip(expected.feature_maps, actual.feature_maps):
        assert lowest_cosine(_cell_vectors(torch_map.numpy()), _cell_vectors(runtime_map)) >= BOUND
    assert lowest_cosine(expected.global_descriptor.numpy(), actual.global_descriptor) >= BOUND


def test_lowest_cosine_compares_rows_and_leaves_out_those_of_rounding_errors_alone():
    rows = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.5]])
    assert lowest_cosine(rows, rows * 2) == pytest.approx(1.0)
    noisy = rows.copy()
    noisy[1] = [1e-9, 0.0, 0.0]  # zeros after a ReLU in one, a rounding error in the other
    assert lowest_cosine(rows, noisy) == pytest.approx(1.0)
    flipped = rows.copy()
    flipped[2] *= -1
    assert lowest_cosine(rows, flipped) == pytest.approx(-1.0)
    assert np.isnan(lowest_cosine(rows, rows[:2]))
