"""Engines by name: where a build decodes its images and runs the backbone, and where a batch query
answers its photos. "local" uses this process's threads; "ray" a Ray cluster (the `[ray]` extra).

Other packages add engines through entry points. In group `refsearch.engines`, a build engine: a callable
taking `(network, request, config, batch_size, workers, streams, **options)` and returning an `Engine`.
In group `refsearch.query_engines`, a query engine: a callable taking `(index, request, batch_size,
workers, streams, **options)` (`request` a `refsearch.request.SearchRequest`) and returning a
`QueryEngine`."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Callable

from ..config import IndexConfig
from ..errors import InvalidArgumentError
from ..plugins import Registry
from .protocol import Engine, ExtractedBatch, QueryEngine, Unreadable
from .requests import IndexRequest, NetworkRequest, shipped_weights

if TYPE_CHECKING:
    from ..network_protocol import Network
    from ..request import SearchRequest
    from ..search import Index

ENTRY_POINT_GROUP = "refsearch.engines"
QUERY_ENTRY_POINT_GROUP = "refsearch.query_engines"
_ENGINES: Registry[Callable[..., Engine]] = Registry("engine", ENTRY_POINT_GROUP, InvalidArgumentError)
_QUERY_ENGINES: Registry[Callable[..., QueryEngine]] = Registry("query engine", QUERY_ENTRY_POINT_GROUP,
                                                                InvalidArgumentError)
register_engine = _ENGINES.register
available_engines = _ENGINES.names
register_query_engine = _QUERY_ENGINES.register
available_query_engines = _QUERY_ENGINES.names


def create_engine(name: str, network: "Network", request: NetworkRequest, config: IndexConfig, batch_size: int,
                  workers: int, streams: int, **options) -> Engine:
    """The build engine registered as `name`; `network` is open in this process, `request` opens it
    again elsewhere; `options` are the engine's own (the ray engine's `address` and `actors`)."""
    return _created(_ENGINES.get(name), name, (network, request, config, batch_size, workers, streams), options,
                    "see refsearch build-index --help")


def create_query_engine(name: str, index: "Index", request: "SearchRequest", batch_size: int, workers: int,
                        streams: int, **options) -> QueryEngine:
    """The query engine registered as `name`, answering as `index.search_batch(photos, request=request)`
    would, here or elsewhere; `options` are the engine's own (as for `create_engine`)."""
    return _created(_QUERY_ENGINES.get(name), name, (index, request, batch_size, workers, streams),
                    options, "see refsearch query --help")


def check_query_engine(name: str) -> None:
    """Raises InvalidArgumentError, naming those there are, when no query engine is registered as `name`."""
    _QUERY_ENGINES.get(name)


def _created(factory: Callable, name: str, arguments: tuple, options: dict, hint: str):
    try:
        inspect.signature(factory).bind(*arguments, **options)
    except TypeError as exc:
        raise InvalidArgumentError(f"engine {name} does not take these options: {exc}", hint) from None
    return factory(*arguments, **options)


def _local(network, request, config, batch_size, workers, streams) -> Engine:
    from .local import LocalEngine

    return LocalEngine(network, config, batch_size, workers, streams)


def _ray(network, request, config, batch_size, workers, streams, address: str | None = None,
         actors: int | None = None) -> Engine:
    from .ray_engine import RayEngine

    return RayEngine(request, config, batch_size, address=address, actors=actors)


def _local_queries(index, request, batch_size, workers, streams) -> QueryEngine:
    from .local import LocalQueryEngine

    index.network.load()  # its weights checked before the batch query opens its output
    return LocalQueryEngine(index, request, batch_size, workers, streams)


def _ray_queries(index, request, batch_size, workers, streams, address: str | None = None,
                 actors: int | None = None) -> QueryEngine:
    from .ray_engine import RayQueryEngine

    index.network.load()
    return RayQueryEngine(IndexRequest.of(index), index.config, index.network.input_size, request, batch_size,
                          address=address, actors=actors)


register_engine("local")(_local)
register_engine("ray")(_ray)
register_query_engine("local")(_local_queries)
register_query_engine("ray")(_ray_queries)

__all__ = ["Engine", "ExtractedBatch", "IndexRequest", "NetworkRequest", "QueryEngine", "Unreadable",
           "available_engines", "available_query_engines", "check_query_engine", "create_engine",
           "create_query_engine", "register_engine", "register_query_engine", "shipped_weights"]
