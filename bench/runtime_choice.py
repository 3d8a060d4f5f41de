"""Choosing the CPU inference runtime: ONNX Runtime and OpenVINO side by side, against torch eager (the
baseline) in the same run, on this project's passes. The network is exported once
(`refsearch.runtime.graph`: an ONNX graph of uint8 luminance in, logits, global descriptor, cells and
feature maps out); ONNX Runtime runs it as refsearch.runtime does, one session shared by the threads
("maps apart": retrieval passes on a copy without the feature-map outputs, to see what one graph for
both costs; "a session per stream": each thread its own session), OpenVINO from its own
format converted from it (float32 weights; retrieval passes on the copy without the maps). Every pass
is single-threaded; "2 streams" is two passes side by side in two threads, as a build runs them on 2
cores.

Printed: forward throughput (queries: batch 1 at the input size; build: batch 4, 2 streams; colorize:
the feature-map pass at a photo's working size, batch 1), each the median over rounds that alternate
the runtimes (the machine may be shared); start-up in a new process (import, loading the cached model,
first pass) and its memory; agreement with torch on the demo photos (lowest cosine of global and cell
descriptors and of feature maps, largest logit difference, same top-1 class); and OpenVINO's reduced
precision where this CPU has bfloat16 instructions.

    python bench/runtime_choice.py [--seconds 2] [--rounds 3] [--backbone efficientnet-lite2]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, load_avg, machine

DEMO = REPO / "index_builds" / "demo"
WORKING_SHORT_SIDE = 256  # colorize's working resolution


# -- the runtimes, each with extract(luminance, feature_maps) -> (logits, global, cells, maps) ---------
class Torch:
    name = "torch eager"

    def __init__(self, backbone):
        self.backbone = backbone

    def extract(self, luminance, feature_maps=False):
        out = self.backbone.extract(luminance, feature_maps=feature_maps)
        return (out.logits.numpy(), out.global_descriptor.numpy(), out.cells.numpy(),
                [m.numpy() for m in out.feature_maps])


class OnnxRuntime:
    """refsearch.runtime's network: one graph, asked for the feature maps only by colorize's passes; or,
    with `maps_apart`, the retrieval passes on a copy of the graph without the feature-map outputs."""

    def __init__(self, graph: bytes, retrieval: bytes, info, maps_apart=False):
        from refsearch.runtime.network import NetworkInfo, RuntimeNetwork

        self.name = "ONNX Runtime, maps apart" if maps_apart else "ONNX Runtime"
        self.dense = RuntimeNetwork(graph, info)
        self.retrieval = (RuntimeNetwork(retrieval, NetworkInfo(**{**info.to_dict(), "feature_maps": 0}))
                          if maps_apart else self.dense)

    def extract(self, luminance, feature_maps=False):
        out = (self.dense if feature_maps else self.retrieval).extract(luminance, feature_maps=feature_maps)
        return out.logits, out.global_descriptor, out.cells, out.feature_maps


class OnnxRuntimePerThread:
    """A session of the graph for each thread, instead of one that the threads share."""

    name = "ONNX Runtime, a session per stream"

    def __init__(self, graph: bytes, info):
        self.graph, self.info, self.local = graph, info, threading.local()

    def extract(self, luminance, feature_maps=False):
        from refsearch.runtime.network import RuntimeNetwork

        if not hasattr(self.local, "network"):
            self.local.network = RuntimeNetwork(self.graph, self.info)
        out = self.local.network.extract(luminance, feature_maps=feature_maps)
        return out.logits, out.global_descriptor, out.cells, out.feature_maps


class OpenVino:
    """The graph without the feature-map outputs for retrieval passes (its fastest), the whole one for
    colorize's, each compiled once per stream count (NUM_STREAMS single-threaded streams), one infer
    request per calling thread."""

    def __init__(self, retrieval_xml: Path, dense_xml: Path, precision: str):
        import openvino

        self.core, self.xmls, self.precision = openvino.Core(), (retrieval_xml, dense_xml), precision
        self.name = f"OpenVINO {precision}"
        self.compiled = {}
        self.streams(1)

    def compiled_for(self, streams: int, dense: bool):
        if (streams, dense) not in self.compiled:
            self.compiled[(streams, dense)] = self.core.compile_model(self.core.read_model(self.xmls[dense]), "CPU", {
                "INFERENCE_NUM_THREADS": streams, "NUM_STREAMS": streams,
                "INFERENCE_PRECISION_HINT": self.precision})
        return self.compiled[(streams, dense)]

    def streams(self, streams: int) -> None:
        """Use the models compiled for `streams` streams from now on (called before the threads start)."""
        self.local = threading.local()
        self.active = {dense: self.compiled_for(streams, dense) for dense in (False, True)}

    def extract(self, luminance, feature_maps=False):
        requests = self.local.__dict__.setdefault("requests", {})
        if feature_maps not in requests:
            requests[feature_maps] = self.active[feature_maps].create_infer_request()
        outputs = requests[feature_maps].infer({0: np.ascontiguousarray(luminance)}).to_tuple()
        return outputs[0], outputs[1], outputs[2], list(outputs[3:])


# -- measurements --------------------------------------------------------------------------------------
def throughput(runtime, batch: np.ndarray, seconds: float, streams: int, feature_maps=False) -> tuple[float, float]:
    """(images/s, images per CPU-second of this process) of `streams` threads each running passes on
    `batch`. The second counts the process's CPU time (OpenVINO runs passes on threads of its own), so
    it holds still while other processes take the cores."""
    if isinstance(runtime, OpenVino):
        runtime.streams(streams)
    done = [0] * streams
    barrier = threading.Barrier(streams + 1)

    def run(stream: int) -> None:
        runtime.extract(batch, feature_maps)  # each thread's first pass sets up its buffers
        barrier.wait()
        while not stop.is_set():
            runtime.extract(batch, feature_maps)
            done[stream] += len(batch)

    stop = threading.Event()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started, cpu = time.perf_counter(), _cpu_seconds()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started), sum(done) / (_cpu_seconds() - cpu)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def luminance_photos(size: int | None) -> list[np.ndarray]:
    """The demo photos' luminance: at size x size as the index sees them, or at colorize's working size."""
    from PIL import Image

    from refsearch.config import IndexConfig
    from refsearch.features import load_prepared

    photos = sorted((DEMO / "photos").glob("*.jpg")) + sorted((DEMO / "queries").glob("*.jpg"))
    if size:
        return [np.array(load_prepared(path, IndexConfig(), size).network_input) for path in photos]
    from colorize.resample import working_size

    images = []
    for path in photos:
        image = Image.open(path).convert("L")
        images.append(np.array(image.resize(working_size(image.size, WORKING_SHORT_SIDE), Image.BILINEAR)))
    return images


def cell_vectors(cells: np.ndarray) -> np.ndarray:
    return cells.reshape(cells.shape[0], cells.shape[1], -1).transpose(0, 2, 1).reshape(-1, cells.shape[1])


def agreement(reference, runtime, photos: list[np.ndarray], dense: list[np.ndarray]) -> dict:
    from refsearch.runtime.graph import lowest_cosine

    expected = [reference.extract(photo[None]) for photo in photos]
    actual = [runtime.extract(photo[None]) for photo in photos]
    stack = lambda outputs, i: np.concatenate([o[i] for o in outputs])
    result = {
        "global": lowest_cosine(stack(expected, 1), stack(actual, 1)),
        "cells": lowest_cosine(cell_vectors(stack(expected, 2)), cell_vectors(stack(actual, 2))),
        "logits": float(np.abs(stack(expected, 0) - stack(actual, 0)).max()),
        "top1": int((stack(expected, 0).argmax(1) == stack(actual, 0).argmax(1)).sum()),
        "photos": len(photos),
    }
    maps = 1.0
    for photo in dense:
        for e, a in zip(reference.extract(photo[None], True)[3], runtime.extract(photo[None], True)[3]):
            maps = min(maps, lowest_cosine(cell_vectors(e), cell_vectors(a)))
    result["maps"] = maps
    return result


COLD = r"""
import json, resource, sys, time
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if kind == "torch":
    import torch
    imported = time.perf_counter()
    from refsearch.backbones import create_backbone
    network = create_backbone(path)
    run = lambda x: network.extract(x)
elif kind == "onnxruntime":
    from refsearch.runtime.network import NetworkInfo, RuntimeNetwork
    imported = time.perf_counter()
    graph = json.loads(sys.argv[3])
    network = RuntimeNetwork(open(path, "rb").read(), NetworkInfo.from_dict(graph))
    run = lambda x: network.extract(x)
else:
    import openvino
    imported = time.perf_counter()
    core = openvino.Core()
    if kind == "openvino-blob":
        core.set_property({"CACHE_DIR": sys.argv[3]})
    compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                                "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    run = lambda x: request.infer({0: x})
loaded = time.perf_counter()
size = int(sys.argv[4])
batch = np.full((4, size, size), 128, np.uint8)
run(batch[:1])
first = time.perf_counter()
for _ in range(10):
    run(batch)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM")))
print(json.dumps({"import": imported - started, "load": loaded - imported, "first": first - loaded,
                  "rss": int(status["VmRSS"].split()[0]) / 1024, "peak": int(status["VmHWM"].split()[0]) / 1024}))
"""


def cold_start(kind: str, path: str, extra: str, size: int, runs: int) -> dict:
    """Medians over `runs` new processes: import, loading the model, first pass (batch 1), and memory."""
    figures = []
    for _ in range(runs):
        completed = subprocess.run([sys.executable, "-c", COLD, kind, path, extra, str(size)],
                                   capture_output=True, text=True, check=True, cwd=REPO)
        figures.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def import_seconds(module: str, runs: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--seconds", type=float, default=2.0, help="each throughput window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds alternating the runtimes")
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()

    import onnx
    import onnxruntime
    import openvino

    from refsearch.backbones import create_backbone
    from refsearch.runtime.graph import export_graph

    print(f"machine: {machine()}; onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}; "
          f"load average at start {load_avg()}")
    backbone = create_backbone(args.backbone)
    size = backbone.input_size
    scratch = Path(tempfile.mkdtemp(prefix="refsearch-runtime-choice-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    started = time.perf_counter()
    exported = export_graph(backbone)
    print(f"export of {args.backbone} at {size} px: {time.perf_counter() - started:.1f} s "
          f"(ONNX, {len(exported.onnx) / 1e6:.1f} MB)")
    retrieval = onnx.load_from_string(exported.onnx)
    del retrieval.graph.output[3:]
    graphs = {"dense": exported.onnx, "retrieval": retrieval.SerializeToString()}
    xmls = []
    for name, graph in graphs.items():
        (scratch / f"{name}.onnx").write_bytes(graph)
        xmls.insert(0, scratch / f"{name}.xml")
        openvino.save_model(openvino.Core().read_model(scratch / f"{name}.onnx"), xmls[0], compress_to_fp16=False)
    onnx_path, xml = scratch / "dense.onnx", scratch / "dense.xml"
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    runtimes = [Torch(backbone), OnnxRuntime(graphs["dense"], graphs["retrieval"], exported.info),
                OnnxRuntime(graphs["dense"], graphs["retrieval"], exported.info, maps_apart=True),
                OnnxRuntimePerThread(graphs["dense"], exported.info), OpenVino(*xmls, "f32")]
    if "BF16" in capabilities:
        runtimes.append(OpenVino(*xmls, "bf16"))

    photos = luminance_photos(size)
    working = luminance_photos(None)
    dense_photo = working[0]
    passes = [  # (label, batch, streams, feature maps)
        ("query: batch 1, 1 stream", np.stack(photos[:1]), 1, False),
        ("queries: batch 1, 2 streams", np.stack(photos[:1]), 2, False),
        ("build: batch 4, 2 streams", np.stack(photos[:4]), 2, False),
        (f"colorize: feature maps {dense_photo.shape[1]}x{dense_photo.shape[0]}, 1 stream", dense_photo[None], 1, True),
        ("colorize: feature maps, 2 streams", dense_photo[None], 2, True),
    ]
    rates = {(r.name, label): [] for r in runtimes for label, *_ in passes}
    for _ in range(args.rounds):
        for label, batch, streams, maps in passes:
            for runtime in runtimes:
                rates[(runtime.name, label)].append(throughput(runtime, batch, args.seconds, streams, maps))
    for column, title in [(0, "images/s"), (1, "images per CPU-second (the process's CPU time; steady under load)")]:
        print(f"\nforward passes, {title}: median of {args.rounds} rounds of {args.seconds:g} s, each pass "
              "single-threaded; ratio to torch in brackets")
        print("| pass | " + " | ".join(r.name for r in runtimes) + " |")
        print("|---|" + "---:|" * len(runtimes))
        for label, *_ in passes:
            medians = [statistics.median(rate[column] for rate in rates[(r.name, label)]) for r in runtimes]
            print(f"| {label} | {medians[0]:.1f} | " + " | ".join(
                f"{median:.1f} ({median / medians[0]:.2f}x)" for median in medians[1:]) + " |")

    print("\nagreement with torch on the demo photos (lowest cosine per image / per cell / per feature-map position)")
    print("| runtime | global | cells | feature maps | max abs logit diff | same top-1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for runtime in runtimes[1:]:
        if isinstance(runtime, OpenVino):
            runtime.streams(1)
        elif not isinstance(runtime, OnnxRuntime) or runtime.retrieval is not runtime.dense:
            continue
        a = agreement(runtimes[0], runtime, photos, working[:5])
        print(f"| {runtime.name} | {a['global']:.6f} | {a['cells']:.6f} | {a['maps']:.6f} | {a['logits']:.2e} | "
              f"{a['top1']} / {a['photos']} |")

    print(f"\nstart-up in a new process (median of {args.cold_runs}): import, load the network (cached model "
          "file; torch: its weights), first pass; memory after 10 passes of batch 4")
    print("| runtime | import s | load s | first pass s | RSS MiB | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    blobs = scratch / "openvino-blobs"
    cold_start("openvino-blob", str(xml), str(blobs), size, 1)  # fills the compiled-blob cache
    for label, kind, path, extra in [
            ("torch eager", "torch", args.backbone, ""),
            ("ONNX Runtime", "onnxruntime", str(onnx_path), json.dumps(exported.info.to_dict())),
            ("OpenVINO (its format)", "openvino", str(xml), ""),
            ("OpenVINO (compiled-blob cache)", "openvino-blob", str(xml), str(blobs))]:
        c = cold_start(kind, path, extra, size, args.cold_runs)
        print(f"| {label} | {c['import']:.2f} | {c['load']:.2f} | {c['first']:.3f} | {c['rss']:.0f} | {c['peak']:.0f} |")
    print("\nimport alone, median of 3: " + ", ".join(
        f"{module} {import_seconds(module, 3):.2f} s" for module in ("torch", "onnxruntime", "openvino")))
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
