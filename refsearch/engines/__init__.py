"""Build engines by name: where a build decodes its images and runs the backbone. "local" uses this
process's threads; "ray" a Ray cluster (the `[ray]` extra). Other packages add engines through the
`refsearch.engines` entry point group: the entry point names a callable taking `(backbone, request,
config, batch_size, workers, streams, **options)` and returning an object with the `Engine` method."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Callable

from ..config import IndexConfig
from ..errors import InvalidArgumentError
from ..plugins import Registry
from .base import BackboneRequest, Engine, ExtractedBatch, Unreadable

if TYPE_CHECKING:
    from ..backbones import Backbone

ENTRY_POINT_GROUP = "refsearch.engines"
EngineFactory = Callable[..., Engine]
_ENGINES: Registry[EngineFactory] = Registry("engine", ENTRY_POINT_GROUP, InvalidArgumentError)
register_engine = _ENGINES.register
available_engines = _ENGINES.names


def create_engine(name: str, backbone: "Backbone", request: BackboneRequest, config: IndexConfig, batch_size: int,
                  workers: int, streams: int, **options) -> Engine:
    """The engine registered as `name`; `backbone` is loaded in this process, `request` loads it again
    elsewhere; `options` are the engine's own (the ray engine's `address` and `actors`)."""
    factory = _ENGINES.get(name)
    arguments = (backbone, request, config, batch_size, workers, streams)
    try:
        inspect.signature(factory).bind(*arguments, **options)
    except TypeError as exc:
        raise InvalidArgumentError(f"engine {name} does not take these options: {exc}",
                                   "see refsearch build-index --help") from None
    return factory(*arguments, **options)


def _local(backbone, request, config, batch_size, workers, streams) -> Engine:
    from .local import LocalEngine

    return LocalEngine(backbone, config, batch_size, workers, streams)


def _ray(backbone, request, config, batch_size, workers, streams, address: str | None = None,
         actors: int | None = None) -> Engine:
    from .ray_engine import RayEngine

    return RayEngine(request, config, batch_size, address=address, actors=actors)


register_engine("local")(_local)
register_engine("ray")(_ray)

__all__ = ["BackboneRequest", "Engine", "ExtractedBatch", "Unreadable", "available_engines", "create_engine",
           "register_engine"]
