"""A backbone's exported graph run by ONNX Runtime on CPU, without torch: the same outputs as
`Backbone.extract`, as numpy arrays.

Each pass runs single-threaded on the thread that calls `extract`, as torch's CPU passes do
(`refsearch.backbones.base`): several threads sharing one network run their passes side by side, one per
core, on one copy of the weights (ONNX Runtime sessions may be run from several threads at once).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime

from ..network_protocol import NetworkOutput

RUNTIME = "onnxruntime"
RUNTIME_VERSION = onnxruntime.__version__
INPUT_NAME = "luminance"


def output_names(feature_maps: int) -> list[str]:
    """The graph's outputs, in order: logits, global descriptor, cells, then each feature map."""
    return ["logits", "global_descriptor", "cells", *(f"feature_map_{i}" for i in range(feature_maps))]


@dataclass(frozen=True)
class NetworkInfo:
    """What a network is and gives, known without running it: its backbone's name, weights fingerprint,
    input size, cell grid, descriptor sizes, and how many feature maps its graph outputs."""

    name: str
    fingerprint: str
    input_size: int
    grid: int
    global_dim: int
    cell_dim: int
    feature_maps: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkInfo:
        return cls(name=str(data["name"]), fingerprint=str(data["fingerprint"]),
                   **{key: int(data[key]) for key in ("input_size", "grid", "global_dim", "cell_dim", "feature_maps")})


def session_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    # One thread per pass, on the caller's thread: several passes side by side beat one spread over cores
    # for a network this small (docs/benchmarks.md, "Inference runtime").
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not the user's data
    return options


class RuntimeNetwork:
    """A backbone's graph in an ONNX Runtime session, a `refsearch.network_protocol.Network` on CPU.
    `info` says what it is; `note`, when not empty, is something the user should hear about how it was
    obtained (an export that could not be cached, say)."""

    runtime = RUNTIME
    runtime_version = RUNTIME_VERSION
    device = "cpu"

    def __init__(self, onnx: bytes, info: NetworkInfo, note: str = ""):
        self.info = info
        self.note = note
        self._session = onnxruntime.InferenceSession(onnx, session_options(), providers=["CPUExecutionProvider"])
        names = [output.name for output in self._session.get_outputs()]
        if names != output_names(info.feature_maps):
            raise ValueError(f"the graph's outputs {names} are not those of {info}")

    name = property(lambda self: self.info.name)
    fingerprint = property(lambda self: self.info.fingerprint)
    input_size = property(lambda self: self.info.input_size)
    grid = property(lambda self: self.info.grid)
    global_dim = property(lambda self: self.info.global_dim)
    cell_dim = property(lambda self: self.info.cell_dim)

    def extract(self, luminance: np.ndarray, feature_maps: bool = False) -> NetworkOutput:
        """Run on a (B, H, W) uint8 batch of luminance images (any H, W; `input_size` for retrieval), as
        `Backbone.extract` does. Without feature maps the pass computes only what the other outputs need."""
        names = output_names(self.info.feature_maps if feature_maps else 0)
        batch = np.ascontiguousarray(luminance, dtype=np.uint8)
        logits, global_descriptor, cells, *maps = self._session.run(names, {INPUT_NAME: batch})
        return NetworkOutput(logits, global_descriptor, cells, maps)
