"""A backbone as an ONNX graph: the one part of the runtime that needs torch, run once per network (the
graph is cached, `refsearch.runtime.cache`).

The graph takes what `Backbone.extract` takes, a (batch, height, width) uint8 luminance batch of any size,
and does what it does: replicate to three channels, the backbone's `normalize`, its `features`. Its
outputs are the logits, the global descriptor, the cells and the feature maps: one graph serves the
retrieval passes and colorize's, since a pass that asks for the first three alone costs what a graph
without the maps costs (docs/benchmarks.md, "Inference runtime").

TorchScript's ONNX exporter has no adaptive average pooling unless the output size divides the input's,
which 9x9 -> 7x7 (EfficientNet-Lite2's last block at 260 px) does not. While exporting, the pooling is
written as what it is, a product with two averaging matrices, (out_h, in_h) @ x @ (in_w, out_w), whose
bins are torch's: output row i averages input rows floor(i * in / out) to ceil((i + 1) * in / out). The
matrices are built from the input's shape inside the graph, so any height and width pool correctly.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..errors import GraphExportError
from .network import INPUT_NAME, NetworkInfo, output_names

OPSET = 17
# Runtime outputs must match torch's within this cosine on a probe batch unlike the one traced, or the
# export is refused: a graph that traced a data-dependent branch would otherwise compute something else.
PROBE_COSINE = 1e-4
_EXPORTING = threading.Lock()


@dataclass(frozen=True)
class ExportedGraph:
    """An ONNX model (serialized) and what it computes."""

    onnx: bytes
    info: NetworkInfo
    exporter: dict


class _LuminanceGraph(nn.Module):
    """`backbone.extract(luminance, feature_maps=True)`'s computation as a module, for tracing."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, luminance: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.backbone.normalize(luminance.unsqueeze(1).expand(-1, 3, -1, -1).float())
        output = self.backbone.features(x, feature_maps=True)
        return (output.logits, output.global_descriptor, output.cells, *output.feature_maps)


def _averaging_matrix(size: torch.Tensor | int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size): row i averages positions floor(i * size / bins) to ceil((i + 1) * size / bins) - 1."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=like.device)
    inside = ((position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def _pooled_by_matrices(x: torch.Tensor, output_size) -> torch.Tensor:
    height, width = x.shape[-2], x.shape[-1]
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    rows = _averaging_matrix(height, height if out_h is None else out_h, x)
    columns = _averaging_matrix(width, width if out_w is None else out_w, x)
    return rows @ x @ columns.transpose(0, 1)


@contextlib.contextmanager
def _exportable_adaptive_pooling() -> Iterator[None]:
    """Adaptive average pooling as matrix products, in this thread only and while it exports."""
    original = F.adaptive_avg_pool2d
    exporting = threading.get_ident()

    def pooling(x, output_size):
        if threading.get_ident() != exporting:
            return original(x, output_size)
        return _pooled_by_matrices(x, output_size)

    F.adaptive_avg_pool2d = pooling
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


@contextlib.contextmanager
def _stdout_discarded() -> Iterator[None]:
    """The exporter prints the whole graph to the process's standard output when it fails, whatever its
    log settings say; that output belongs to the command (its --json), so it goes nowhere meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _probe(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """A textured luminance batch, so that every layer sees values off its biases."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = 127.5 + 90 * np.sin(x / 7.0)[None] * np.cos(y / 11.0)[None]
    return np.clip(smooth + rng.normal(0, 25, (batch, height, width)), 0, 255).astype(np.uint8)


def export_graph(backbone: Backbone) -> ExportedGraph:
    """The backbone (on CPU, in float32) as an ONNX graph with dynamic batch, height and width, checked
    against the backbone itself on a batch of another size and shape. Raises GraphExportError when it
    cannot be exported or the graph computes something else."""
    if backbone.device.type != "cpu" or backbone.inference.autocast_dtype is not None:
        raise ValueError("export a backbone on CPU, in float32: the graph computes what its passes compute")
    size = backbone.input_size
    module = _LuminanceGraph(backbone).eval()
    example = torch.from_numpy(_probe(2, size, size, seed=0))
    with torch.inference_mode():
        maps = len(module(example[:1])) - 3
    info = NetworkInfo(name=backbone.name, fingerprint=backbone.fingerprint, input_size=size, grid=backbone.grid,
                       global_dim=backbone.global_dim, cell_dim=backbone.cell_dim, feature_maps=maps)
    names = output_names(maps)
    dynamic = {INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
               **{name: {0: "batch"} for name in names[:3]},
               **{name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in names[3:]}}
    started = time.perf_counter()
    buffer = io.BytesIO()
    try:
        with _EXPORTING, _exportable_adaptive_pooling(), _stdout_discarded(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and shape inference
            torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=[INPUT_NAME],
                              output_names=names, dynamic_axes=dynamic, opset_version=OPSET)
    except Exception as exc:  # noqa: BLE001 (the exporter raises many kinds for what it cannot express)
        raise GraphExportError(
            f"backbone {backbone.name} cannot be exported to ONNX ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'})",
            "it runs on torch instead (--runtime torch)") from None
    exported = ExportedGraph(buffer.getvalue(), info, {
        "torch": torch.__version__, "opset": OPSET, "seconds": round(time.perf_counter() - started, 2)})
    _check(exported, backbone)
    return exported


def _check(exported: ExportedGraph, backbone: Backbone) -> None:
    from .network import RuntimeNetwork

    probe = _probe(3, backbone.input_size + 13, backbone.input_size + 37, seed=1)
    expected = backbone.extract(probe, feature_maps=True)
    try:
        actual = RuntimeNetwork(exported.onnx, exported.info).extract(probe, feature_maps=True)
    except Exception as exc:  # noqa: BLE001 (ONNX Runtime's errors derive from Exception alone)
        raise GraphExportError(f"the ONNX graph of backbone {backbone.name} does not run "
                               f"({type(exc).__name__}: {exc})", "it runs on torch instead (--runtime torch)") from None
    pairs = [("logits", expected.logits, actual.logits),
             ("global descriptor", expected.global_descriptor, actual.global_descriptor),
             ("cells", expected.cells, actual.cells),
             *((f"feature map {i}", e, a) for i, (e, a) in enumerate(zip(expected.feature_maps, actual.feature_maps)))]
    for what, torch_value, value in pairs:  # per image: a check of the export, not of its precision
        lowest = lowest_cosine(torch_value.float().cpu().numpy(), value)
        if not lowest >= 1 - PROBE_COSINE:
            raise GraphExportError(
                f"the ONNX graph of backbone {backbone.name} computes another {what} than torch "
                f"(cosine {lowest:.6f})", "it runs on torch instead (--runtime torch)")


def lowest_cosine(expected: np.ndarray, actual: np.ndarray) -> float:
    """The lowest cosine between matching rows (the first axis) of two arrays of the same shape (nan for
    other shapes). Rows of `expected` shorter than 1e-4 of its longest are left out: after a ReLU, a
    vector of zeros in one and of rounding errors in the other has no direction to compare."""
    if expected.shape != actual.shape:
        return float("nan")
    a, b = expected.reshape(len(expected), -1).astype(np.float64), actual.reshape(len(actual), -1).astype(np.float64)
    lengths = np.linalg.norm(a, axis=1)
    kept = lengths > 1e-4 * lengths.max(initial=0.0)
    if not kept.any():
        return 1.0 if np.array_equal(a, b) else 0.0
    a, b = a[kept], b[kept]
    return float(((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)).min())
