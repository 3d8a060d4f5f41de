"""Methods by name, plugins through entry points, and plugins that misbehave."""
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from PIL import Image

import colorize
from colorize import (ColorizeError, Colorizer, ColorizeResult, available_methods, create_colorizer,
                      describe_methods, registry)
from colorize.exemplar import ExemplarColorizer
from colorize.lab import luma
from colorize.transfer import TransferColorizer
from refsearch import plugins as shared_plugins


class Sepia(Colorizer):
    """Tints everything brown, keeping the target's gray levels."""

    name = "sepia"
    description = "a brown tint"

    def __init__(self, backbone=None):
        self.backbone = backbone

    def colorize(self, target, references):
        gray = np.asarray(target)
        rgb = colorize.lab.colorize_gray(gray, np.broadcast_to(np.array([8.0, 20.0]), gray.shape + (2,)))
        shape = gray.shape
        return ColorizeResult(Image.fromarray(rgb), np.ones(shape, np.float32), np.zeros(shape, np.int8),
                              self.name)


class Crashing(Sepia):
    name = "crashing"

    def colorize(self, target, references):
        raise ZeroDivisionError("division by zero in the plugin")


class WrongSize(Sepia):
    name = "wrong-size"

    def colorize(self, target, references):
        result = super().colorize(target, references)
        result.image = result.image.resize((5, 5))
        return result


class Brightening(Sepia):
    name = "brightening"

    def colorize(self, target, references):
        result = super().colorize(target, references)
        brighter = np.clip(np.asarray(result.image).astype(int) + 40, 0, 255).astype(np.uint8)
        result.image = Image.fromarray(brighter)
        return result


@pytest.fixture
def plugins(monkeypatch):
    """Pretend installed packages declare these entry points in the colorizers group."""
    declared = [EntryPoint(name, f"{__name__}:{cls}", registry.ENTRY_POINT_GROUP)
                for name, cls in [("sepia", "Sepia"), ("crashing", "Crashing"), ("wrong-size", "WrongSize"),
                                  ("brightening", "Brightening")]]

    def entry_points(group):
        return [e for e in declared if e.group == group]

    monkeypatch.setattr(shared_plugins, "entry_points", entry_points)
    monkeypatch.setattr(registry.COLORIZERS, "_factories", dict(registry.COLORIZERS._factories))
    return declared


def test_built_ins_are_registered_and_described():
    assert {"exemplar", "transfer"} <= set(available_methods())
    assert isinstance(create_colorizer("exemplar"), ExemplarColorizer)
    assert isinstance(create_colorizer("transfer"), TransferColorizer)
    descriptions = describe_methods()
    assert "Reinhard" in descriptions["transfer"] and descriptions["exemplar"]


def test_the_default_method_is_exemplar(gray_scene, colour_scene):
    assert colorize.colorize(gray_scene, [colour_scene]).method == "exemplar"


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ColorizeError, match=r"unknown colorize method 'nope'.*exemplar.*transfer"):
        create_colorizer("nope")


def test_entry_point_plugin_is_listed_and_runs(plugins, gray_scene, colour_scene):
    assert "sepia" in available_methods()
    assert describe_methods()["sepia"] == "a brown tint"
    result = colorize.colorize(gray_scene, [colour_scene], "sepia")
    assert result.method == "sepia" and result.image.size == gray_scene.size
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(gray_scene))


def test_plugin_gets_the_backbone(plugins, backbone):
    assert create_colorizer("sepia", backbone=backbone).backbone is backbone


def test_registering_in_code():
    saved = dict(registry.COLORIZERS._factories)
    try:
        colorize.register_colorizer("sepia-in-code")(Sepia)
        assert "sepia-in-code" in available_methods()
    finally:
        registry.COLORIZERS._factories = saved


def test_plugin_that_fails_to_load_is_named(monkeypatch):
    broken = EntryPoint("broken", "no_such_module_anywhere:Thing", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(shared_plugins, "entry_points", lambda group: [broken])
    monkeypatch.setattr(registry.COLORIZERS, "_factories", dict(registry.COLORIZERS._factories))
    expected = r"plugin 'broken' \(no_such_module_anywhere:Thing\) failed to load"
    with pytest.raises(ColorizeError, match=expected):
        available_methods()


def test_plugin_that_raises_is_named(plugins, gray_scene, colour_scene):
    with pytest.raises(ColorizeError, match=r"'crashing' failed: ZeroDivisionError: division by zero"):
        colorize.colorize(gray_scene, [colour_scene], "crashing")


def test_plugin_returning_the_wrong_size_is_named(plugins, gray_scene, colour_scene):
    with pytest.raises(ColorizeError, match=r"'wrong-size' returned an image of size \(5, 5\)"):
        colorize.colorize(gray_scene, [colour_scene], "wrong-size")


def test_plugin_that_changes_the_gray_levels_gets_them_back(plugins, gray_scene, colour_scene):
    result = colorize.colorize(gray_scene, [colour_scene], "brightening")
    assert np.array_equal(luma(np.asarray(result.image)), np.asarray(gray_scene))
    assert any("changed the input's luminance" in note for note in result.notes)


def test_a_colorizer_object_can_be_passed_directly(gray_scene, colour_scene):
    assert colorize.colorize(gray_scene, [colour_scene], Sepia()).method == "sepia"
