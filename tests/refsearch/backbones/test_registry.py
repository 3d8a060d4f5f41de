"""Backbones by name: the built-in ones, register_backbone, entry-point plugins, devices."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from torch import nn

import refsearch
from refsearch import backbones, plugins
from refsearch.backbones import Backbone, BackboneError, BackboneOutput, available_backbones, create_backbone


class TinyBackbone(Backbone):
    """A few-parameter stand-in: logits from the mean brightness, cells from a 1x1 convolution."""

    name = "tiny"
    global_dim = 8
    cell_dim = 4
    input_size = 32

    def __init__(self, weights=None):
        super().__init__()
        torch.manual_seed(0)  # the same "weights" every time it is built
        self.conv = nn.Conv2d(3, self.cell_dim, 1)
        self.head = nn.Linear(self.cell_dim, self.global_dim)
        self.fc = nn.Linear(self.global_dim, 1000)
        self.weights_given = weights
        self.fingerprint = "tiny-weights"

    def normalize(self, pixels):
        return pixels / 255.0

    def features(self, x, feature_maps=False):
        cells = torch.relu(self.conv(x))
        pooled = self.head(cells.mean(dim=(2, 3)))
        return BackboneOutput(self.fc(pooled), pooled, nn.functional.adaptive_avg_pool2d(cells, self.grid),
                              [cells] if feature_maps else [])


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so registrations in a test do not leak."""
    private = dict(backbones._BACKBONES._factories)
    monkeypatch.setattr(backbones._BACKBONES, "_factories", private)
    return private


def _fake_entry_points(*entries):
    def entry_points(group=None, **_):
        assert group == backbones.ENTRY_POINT_GROUP
        return list(entries)

    return entry_points


def test_the_built_in_backbones_are_listed():
    assert {"efficientnet-lite2", "vgg19"} <= set(available_backbones())
    assert available_backbones() == sorted(available_backbones())


def test_an_unknown_name_lists_the_available_ones():
    with pytest.raises(BackboneError, match=r"unknown backbone 'resnet-9000'.*efficientnet-lite2.*vgg19"):
        create_backbone("resnet-9000")


def test_register_backbone_makes_a_factory_creatable_by_name(registry):
    refsearch.register_backbone("tiny")(TinyBackbone)
    assert "tiny" in available_backbones()
    backbone = create_backbone("tiny", weights="some/file.pth")
    assert isinstance(backbone, TinyBackbone)
    assert backbone.weights_given == "some/file.pth"
    assert not backbone.training  # handed out in eval mode
    out = backbone.extract(np.zeros((2, 32, 32), np.uint8))
    assert out.logits.shape == (2, 1000) and out.cells.shape == (2, 4, 7, 7)


def test_a_plugin_registers_through_the_entry_point_group(registry, monkeypatch):
    entry = EntryPoint(name="tiny-plugin", value="tiny_package:make", group=backbones.ENTRY_POINT_GROUP)
    monkeypatch.setattr(EntryPoint, "load", lambda self: TinyBackbone)
    monkeypatch.setattr(plugins, "entry_points", _fake_entry_points(entry))
    assert "tiny-plugin" in available_backbones()
    assert isinstance(create_backbone("tiny-plugin"), TinyBackbone)
    assert registry["tiny-plugin"] is TinyBackbone


def test_a_plugin_that_fails_to_load_is_named_in_the_error(registry, monkeypatch):
    entry = EntryPoint(name="broken", value="missing_package:make", group=backbones.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", _fake_entry_points(entry))
    expected = r"backbone plugin 'broken' \(missing_package:make\) failed to load"
    with pytest.raises(BackboneError, match=expected):
        create_backbone("broken")


def test_a_plugin_does_not_replace_a_built_in_backbone(registry, monkeypatch):
    entry = EntryPoint(name="vgg19", value="impostor:make", group=backbones.ENTRY_POINT_GROUP)
    monkeypatch.setattr(EntryPoint, "load", lambda self: TinyBackbone)
    monkeypatch.setattr(plugins, "entry_points", _fake_entry_points(entry))
    available_backbones()
    assert registry["vgg19"] is not TinyBackbone


def test_a_plugin_backbone_builds_and_searches_an_index(registry, monkeypatch, tmp_path, copy_photos):
    monkeypatch.setattr(plugins, "entry_points", _fake_entry_points(
        EntryPoint(name="tiny", value="tiny_package:make", group=backbones.ENTRY_POINT_GROUP)))
    monkeypatch.setattr(EntryPoint, "load", lambda self: TinyBackbone)
    photos = copy_photos(tmp_path / "photos", 3)
    config = refsearch.IndexConfig(backbone="tiny", global_dim=4, cell_dim=2)
    summary = refsearch.build_index(tmp_path / "photos", tmp_path / "tiny.index", config, progress=False)
    assert summary.images == 3
    with refsearch.Index.open(tmp_path / "tiny.index") as index:
        assert index.config.backbone == "tiny" and index.config.weights == "tiny-weights"
        assert index.manifest.dims["global"] == 8  # 3 images cannot fit 4 PCA components
        assert index.search(photos[1], k=1, any_class=True)[0].path == str(photos[1].resolve())


def test_devices_are_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackboneError, match="no CUDA GPU"):
        backbones.resolve_device("cuda")
    with pytest.raises(BackboneError, match="unknown device 'tpu'"):
        backbones.resolve_device("tpu")
    assert backbones.resolve_device("cpu") == torch.device("cpu")
