"""The network, opened once for whatever runs it: `open_network` chooses the runtime and loads the weights,
and `IndexNetwork` is the network an index was built with, loaded on first use.

On CPU in float32 the passes run on the inference runtime (ONNX Runtime, `refsearch.runtime`): the
backbone is exported once to a graph, cached on disk, and run without torch, three times as fast as torch
on this project's passes (docs/benchmarks.md, "Inference runtime"). On a GPU, in a reduced precision, or
with `runtime="torch"`, torch runs them. Both give the same descriptors (within cosine 1e-4), so an index
built with one is queried with the other.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import IndexConfig
from .errors import BackboneError, ConfigMismatchError, GraphExportError, InvalidArgumentError
from .features import PreparedImage, RawFeatures, extract
from .network_protocol import Network, NetworkOutput

if TYPE_CHECKING:
    from .backbones import Backbone

INFERENCE_RUNTIME = "onnxruntime"
RUNTIMES = ("auto", "torch", INFERENCE_RUNTIME)
FULL_PRECISION = ("auto", "float32")


def runtime_for(runtime: str, device: str, precision: str = "auto") -> str:
    """The runtime that runs the passes: `auto` is the inference runtime on CPU in float32 and torch
    otherwise (a GPU, or a reduced precision, which only torch offers)."""
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"unknown runtime {runtime!r}", f"use one of {', '.join(RUNTIMES)}")
    if device != "cpu" and not device.startswith("cuda"):
        raise BackboneError(f"unknown device {device!r}", "use cpu or cuda")
    on_runtime = device == "cpu" and precision in FULL_PRECISION
    if runtime == "auto":
        return INFERENCE_RUNTIME if on_runtime else "torch"
    if runtime == INFERENCE_RUNTIME and not on_runtime:
        raise InvalidArgumentError(f"the {INFERENCE_RUNTIME} runtime runs on CPU in float32, not on {device} in "
                                   f"{precision}", "use --runtime torch (or auto) for a GPU or a reduced precision")
    return runtime


def open_network(backbone: str, *, weights: str | os.PathLike | None = None, device: str = "cpu",
                 input_size: int = 0, precision: str = "auto", runtime: str = "auto",
                 fingerprint: str = "", where: object = None) -> Network:
    """The backbone registered as `backbone`, with `weights` (None: its default), seeing `input_size`
    pixels (0: its own), on `device` in `precision`, run by `runtime` (see `runtime_for`).

    `fingerprint` names the weights expected (an index's): other weights are refused, naming `where`;
    with no `weights` given, the backbone's named weights are searched for them. With the fingerprint and
    the input size known and no `weights` given, a cached graph runs without loading torch at all. A
    backbone the runtime cannot run runs on torch, and the network's `note` says why."""
    chosen = runtime_for(runtime, device, precision)
    loaded: list[Backbone] = []

    def load() -> Backbone:
        """The backbone, loaded once however many steps ask for it."""
        if not loaded:
            loaded.append(_load_backbone(backbone, weights, device, input_size, precision, fingerprint, where))
        return loaded[0]

    if chosen == "torch":
        from .backbones.torch_network import TorchNetwork

        return TorchNetwork(load())
    from .runtime import GraphKey
    from .runtime import open_network as open_graph

    if fingerprint and input_size and weights is None:
        key = GraphKey(backbone, fingerprint, input_size)
    else:
        key = GraphKey(backbone, load().fingerprint, load().input_size)
    try:
        return open_graph(key, load)
    except GraphExportError as exc:
        from .backbones.torch_network import TorchNetwork

        return TorchNetwork(load(), note=f"{exc.message}: it runs on torch")


def _load_backbone(name: str, weights, device: str, input_size: int, precision: str, fingerprint: str,
                   where: object) -> Backbone:
    from .backbones import create_backbone

    backbone = create_backbone(name, weights=weights, device=device, input_size=input_size, precision=precision)
    if weights is None and fingerprint and backbone.fingerprint != fingerprint:
        # Other weights than the backbone's default are expected: one of its named weights, if any.
        for named in backbone.named_weights:
            other = create_backbone(name, weights=named, device=device, input_size=input_size, precision=precision)
            if other.fingerprint == fingerprint:
                return other
    if fingerprint and backbone.fingerprint != fingerprint:
        raise ConfigMismatchError(f"{where or 'the index'} was built with other {name} weights (fingerprint "
                                  f"{fingerprint}, these are {backbone.fingerprint})", "pass the same --weights")
    return backbone


@dataclass(frozen=True)
class QueryRuntime:
    """What would run an index's network here: the runtime and, for the inference runtime, its graph's
    file in the cache and whether it is there yet (else the first query exports it, loading torch once)."""

    runtime: str
    version: str
    graph: str | None
    cached: bool


def query_runtime(config: IndexConfig, runtime: str = "auto") -> QueryRuntime:
    """What would run the network of an index built with `config` on CPU (nothing is loaded to say so)."""
    chosen = runtime_for(runtime, "cpu")
    if chosen == "torch":
        import importlib.metadata

        return QueryRuntime("torch", importlib.metadata.version("torch"), None, False)
    from .runtime import RUNTIME_VERSION, GraphKey, graph_path

    path = graph_path(GraphKey(config.backbone, config.weights, config.input_size))
    return QueryRuntime(chosen, RUNTIME_VERSION, str(path), path.is_file())


class IndexNetwork:
    """The network of an index built with `config`: its backbone with `weights` (None: the default, or
    whichever of its named weights built the index) on `device`, run by `runtime`; loaded on first use,
    once, and itself a `Network`. `where` names the index in messages."""

    def __init__(self, config: IndexConfig, weights: str | os.PathLike | None, device: str, where: object,
                 runtime: str = "auto"):
        runtime_for(runtime, device)  # refused now, not at the first query
        if device != "cpu":
            from .backbones import resolve_device

            resolve_device(device)  # a GPU that is not there, too
        self.config, self.weights, self.device, self.where, self.requested_runtime = (
            config, weights, device, where, runtime)
        self._network: Network | None = None
        self._loading = threading.Lock()

    # What is known from the index's configuration, without loading anything.
    name = property(lambda self: self.config.backbone)
    fingerprint = property(lambda self: self.config.weights)
    input_size = property(lambda self: self.config.input_size)
    grid = property(lambda self: self.config.grid)
    # What is known once it is loaded.
    runtime = property(lambda self: self.network.runtime)
    runtime_version = property(lambda self: self.network.runtime_version)
    note = property(lambda self: self.network.note)
    global_dim = property(lambda self: self.network.global_dim)
    cell_dim = property(lambda self: self.network.cell_dim)

    @property
    def loaded(self) -> bool:
        return self._network is not None

    @property
    def network(self) -> Network:
        """The network that runs the passes, loaded on first use and checked against the index's weights."""
        with self._loading:
            if self._network is None:
                self._network = open_network(self.config.backbone, weights=self.weights, device=self.device,
                                             input_size=self.config.input_size, runtime=self.requested_runtime,
                                             fingerprint=self.config.weights, where=self.where)
            return self._network

    def load(self) -> IndexNetwork:
        """Load the network now (e.g. before timing its passes, or to check its weights early)."""
        _ = self.network
        return self

    def extract(self, luminance: np.ndarray, feature_maps: bool = False) -> NetworkOutput:
        return self.network.extract(luminance, feature_maps)

    def raw_features(self, prepared: Sequence[PreparedImage]) -> RawFeatures:
        return extract(self.network, list(prepared))
