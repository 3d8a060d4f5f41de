"""How another process loads the build's network, or opens a query's index, as this process did."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import SearchSettings
from ..errors import IndexStateError

if TYPE_CHECKING:
    from ..network_protocol import Network
    from ..search import Index


def shipped_weights(weights: str | os.PathLike | None) -> str | None:
    """Backbone weights as another process is to load them: a file by its absolute path, for workers
    whose folder is another; a weights name as it is."""
    if weights is None:
        return None
    return str(Path(weights).resolve() if Path(weights).is_file() else weights)


def _registered(name: str, factory: Callable | None) -> None:
    """Registers `factory` as backbone `name` in this process unless a backbone of that name is known."""
    from ..backbones import available_backbones, register_backbone

    if factory is not None and name not in available_backbones():
        register_backbone(name)(factory)


@dataclass(frozen=True)
class NetworkRequest:
    """How to open the build's network again in another process: the same backbone, weights (whose
    `fingerprint` this process found), input size, device, precision and runtime. `factory` is the
    callable registered under `name` in this process, shipped along so that a worker knows backbones
    registered only here."""

    name: str
    weights: str | None
    device: str
    input_size: int
    precision: str
    runtime: str
    fingerprint: str
    factory: Callable | None = None

    def create(self) -> "Network":
        from ..network import open_network

        _registered(self.name, self.factory)
        return open_network(self.name, weights=self.weights, device=self.device, input_size=self.input_size,
                            precision=self.precision, runtime=self.runtime, fingerprint=self.fingerprint)


@dataclass(frozen=True)
class IndexRequest:
    """How to open a query's index again in another process, as this process opened it: the same
    folder, generation, weights, device, runtime and search settings; `backbone_factory` as in
    NetworkRequest."""

    path: str
    generation: int
    weights: str | None
    device: str
    runtime: str
    search: SearchSettings
    backbone: str
    backbone_factory: Callable | None = None

    @classmethod
    def of(cls, index: "Index") -> "IndexRequest":
        from ..backbones import backbone_factory

        network, backbone = index.network, index.config.backbone
        return cls(str(index.path.resolve()), index.generation, shipped_weights(network.weights), network.device,
                   network.requested_runtime, index.search_settings, backbone, backbone_factory(backbone))

    def open(self) -> "Index":
        """The index, refused when a writer has published another generation since the query opened it:
        the old one's files may be gone, and the query's lines come from the generation it opened."""
        from ..search import Index

        _registered(self.backbone, self.backbone_factory)
        index = Index.open(self.path, weights=self.weights, device=self.device, runtime=self.runtime,
                           search=self.search)
        if index.generation != self.generation:
            index.close()
            raise IndexStateError(f"{self.path} was published again (generation {index.generation}) after this "
                                  f"query opened generation {self.generation}",
                                  "rerun the query when the index is no longer being written: it answers the "
                                  "photos not yet written")
        return index
