"""Colorize methods by name. Third-party packages add theirs through the `refsearch.colorizers` entry point
group: the entry point names a callable that takes `backbone=None` (the retrieval network, which a method
may use or ignore) and returns a Colorizer."""
from __future__ import annotations

import importlib
from collections.abc import Callable

from refsearch.network_protocol import Network
from refsearch.plugins import Registry

from .base import ColorizeError, Colorizer

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


def create_colorizer(name: str, backbone: Network | None = None) -> Colorizer:
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


class _BuiltIn:
    """A built-in method, imported when it is first created or described: the exemplar methods load torch,
    which listing the methods (a server starting, `--help`) must not."""

    def __init__(self, module: str, class_name: str):
        self.module, self.class_name = module, class_name

    def _class(self) -> type[Colorizer]:
        return getattr(importlib.import_module(self.module, __package__), self.class_name)

    def __call__(self, backbone: Network | None = None) -> Colorizer:
        return self._class()(backbone=backbone)

    @property
    def description(self) -> str:
        return self._class().description


register_colorizer("transfer")(_BuiltIn(".transfer", "TransferColorizer"))
register_colorizer("exemplar")(_BuiltIn(".exemplar", "ExemplarColorizer"))
register_colorizer("exemplar-untrained")(_BuiltIn(".exemplar", "UntrainedExemplarColorizer"))
