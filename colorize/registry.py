"""Colorize methods by name. Third-party packages add theirs through the `refsearch.colorizers` entry point
group: the entry point names a callable that takes `backbone=None` (the retrieval network, which a method
may use or ignore) and returns a Colorizer."""
from __future__ import annotations

from collections.abc import Callable

from refsearch.backbones import Backbone
from refsearch.plugins import Registry

from .base import ColorizeError, Colorizer
from .exemplar import ExemplarColorizer, UntrainedExemplarColorizer
from .transfer import TransferColorizer

ENTRY_POINT_GROUP = "refsearch.colorizers"
DEFAULT_METHOD = "exemplar"
ColorizerFactory = Callable[..., Colorizer]
COLORIZERS: Registry[ColorizerFactory] = Registry("colorize method", ENTRY_POINT_GROUP, ColorizeError)


def register_colorizer(name: str) -> Callable[[ColorizerFactory], ColorizerFactory]:
    return COLORIZERS.register(name)


def available_methods() -> list[str]:
    return COLORIZERS.names()


def describe_methods() -> dict[str, str]:
    """Each method's one-line description (its factory's `description`, else its docstring's first line)."""
    described = {}
    for name in available_methods():
        factory = COLORIZERS.get(name)
        docstring = (factory.__doc__ or "").strip().split("\n")[0]
        described[name] = getattr(factory, "description", "") or docstring
    return described


def create_colorizer(name: str, backbone: Backbone | None = None) -> Colorizer:
    factory = COLORIZERS.get(name)
    try:
        colorizer = factory(backbone=backbone)
    except ColorizeError:
        raise
    except Exception as exc:
        raise ColorizeError(f"colorize method {name!r} failed to start: {type(exc).__name__}: {exc}") from exc
    if not isinstance(colorizer, Colorizer):
        raise ColorizeError(f"colorize method {name!r} gave a {type(colorizer).__name__}, not a Colorizer")
    return colorizer


register_colorizer("transfer")(TransferColorizer)
register_colorizer("exemplar")(ExemplarColorizer)
register_colorizer("exemplar-untrained")(UntrainedExemplarColorizer)
