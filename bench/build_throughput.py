"""Build throughput on the sample photos against the network's forward-only throughput, for each runtime.

All is measured in this run, at the backbone's input size, for each runtime asked for (on CPU: torch, the
baseline, and ONNX Runtime): forward-only over batch sizes on inputs decoded beforehand, one pass at a
time and several passes side by side (each pass single-threaded on CPU, as a build runs it); then whole
`build_index` runs (decode, histograms, forward, PCA, LMDB, FAISS), each compared with forward-only at
its own batch size and with the runtime's best forward-only, and the runtime's best build with torch's.
Targets: on CPU, a build on the runtime >= 2.5 x torch's best build and >= 0.85 x the runtime's best
forward-only; on an H100/H200-class GPU (torch), >= 2,000 images/s and >= 0.8 x forward-only at the same
batch size.

    python bench/build_throughput.py [--batch-sizes 1 2 4 8 16 32] [--seconds 4] [--limit 100]
    python bench/build_throughput.py --device cuda --repeat 10
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchlib import load_avg, machine, sample_dir, sample_photos
from refsearch import IndexConfig, build_index
from refsearch.backbones import default_workers
from refsearch.engines.decoding import prepared_in_order
from refsearch.images import find_images
from refsearch.network import INFERENCE_RUNTIME, open_network

DEFAULTS = {  # (forward-only batch sizes, build batch sizes) for each device
    "cpu": ([1, 2, 4, 8, 16, 32], [4, 8]),
    "cuda": ([32, 64, 128, 256], [64, 128]),
}


def synchronize(device: str) -> None:
    """Wait for the work queued on the GPU: its passes return before they have run."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def forward_throughput(network, device: str, batch_size: int, seconds: float, streams: int = 1) -> float:
    """Images/s of `streams` threads each running forward passes on the same batch."""
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, network.input_size, network.input_size),
                                              dtype=np.uint8)
    for _ in range(3):  # the GPU's first passes pick their kernels
        network.extract(batch)
    synchronize(device)
    done = [0] * streams
    started = time.perf_counter()

    def run(stream: int) -> None:
        while time.perf_counter() - started < seconds:
            network.extract(batch)
            done[stream] += batch_size

    workers = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    synchronize(device)
    return sum(done) / (time.perf_counter() - started)


def photo_folder(limit: int | None, repeat: int) -> tuple[Path, Path | None]:
    """The folder to index: the sample itself, or a temporary one (returned second, to delete) with its
    first `limit` photos, `repeat` times over in subfolders. Copies are hard links where the file
    system allows (not symbolic ones: the build resolves those to one file)."""
    if limit is None and repeat == 1:
        return sample_dir(), None
    photos = sample_photos()[:limit]
    folder = Path(tempfile.mkdtemp(prefix="refsearch-bench-photos-"))
    for copy in range(repeat):
        (folder / f"copy{copy}").mkdir()
        for photo in photos:
            target = folder / f"copy{copy}" / photo.name
            try:
                os.link(photo, target)
            except OSError:
                shutil.copy2(photo, target)
    return folder, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=sorted(DEFAULTS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="Forward-only batch sizes "
                        f"(default: {DEFAULTS['cpu'][0]} on CPU, {DEFAULTS['cuda'][0]} on GPU).")
    parser.add_argument("--build-batch-sizes", type=int, nargs="+", help="Build batch sizes (default: "
                        f"{DEFAULTS['cpu'][1]} on CPU, {DEFAULTS['cuda'][1]} on GPU); each is also timed "
                        "forward-only.")
    parser.add_argument("--workers", type=int, nargs="+", help="Decoding threads (default: the build's, "
                        "2 on CPU, one per core on GPU).")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2],
                        help="Forward passes side by side (build and forward-only).")
    parser.add_argument("--precision", default="auto", help="auto, float32, float16 or bfloat16.")
    parser.add_argument("--seconds", type=float, default=4.0, help="Seconds of each forward-only run.")
    parser.add_argument("--limit", type=int, help="Index only the first N sample photos.")
    parser.add_argument("--repeat", type=int, default=1, help="Index the photos this many times over "
                        "(900 photos last half a second on a fast GPU).")
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--runtimes", nargs="+", help=f"What runs the network (default: torch and "
                        f"{INFERENCE_RUNTIME} on CPU, torch on GPU); the first is the baseline.")
    args = parser.parse_args()
    forward_batches = args.batch_sizes or DEFAULTS[args.device][0]
    build_batches = args.build_batch_sizes or DEFAULTS[args.device][1]
    forward_batches = sorted(set(forward_batches) | set(build_batches))
    workers_list = args.workers or [default_workers(args.device)]
    runtimes = args.runtimes or (["torch", INFERENCE_RUNTIME] if args.device == "cpu" else ["torch"])
    print(f"machine: {machine()}; load average at start {load_avg()}")
    if args.device == "cuda":
        import torch

        print(f"card: {torch.cuda.get_device_name()}")

    source, temporary = photo_folder(args.limit, args.repeat)
    best_builds = {}
    try:
        input_size = open_network(args.backbone, device=args.device, runtime=runtimes[-1]).input_size
        decode_rate(source, workers_list, args.backbone, input_size)
        for runtime in runtimes:
            best_builds[runtime] = measure(runtime, source, forward_batches, build_batches, workers_list, args)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    baseline = runtimes[0]
    for runtime in runtimes[1:]:
        print(f"best build on {runtime}: {best_builds[runtime]:.1f} images/s, "
              f"{best_builds[runtime] / best_builds[baseline]:.2f}x {baseline}'s {best_builds[baseline]:.1f}")
    print(f"load average at end {load_avg()}")


def decode_rate(source: Path, workers_list, backbone: str, size: int) -> None:
    """The build's decoding alone (file, resize, histograms: what it does before the network), with its
    decoding threads and nothing else running: the ceiling it puts on a build."""
    config = IndexConfig(backbone=backbone)
    paths = [image.path for image in find_images(source)]
    print(f"\ndecoding alone ({len(paths)} files at {size}px)\n| decode workers | images/s |\n|---:|---:|")
    for workers in workers_list:
        started = time.perf_counter()
        for _ in prepared_in_order(paths, config, size, workers, lookahead=4 * max(workers, 1)):
            pass
        print(f"| {workers} | {len(paths) / (time.perf_counter() - started):.1f} |", flush=True)


def measure(runtime: str, source: Path, forward_batches, build_batches, workers_list, args) -> float:
    """Print `runtime`'s forward-only and build tables; return its best build's images/s."""
    network = open_network(args.backbone, device=args.device, precision=args.precision, runtime=runtime)
    print(f"\n{network.runtime} {network.runtime_version}: forward only, {args.backbone} at "
          f"{network.input_size}px, {args.device}, {args.precision} precision")
    print("| batch | streams | images/s |\n|---:|---:|---:|")
    forward = {}
    for batch_size in forward_batches:
        for streams in args.streams:
            forward[batch_size, streams] = forward_throughput(network, args.device, batch_size, args.seconds,
                                                              streams)
            print(f"| {batch_size} | {streams} | {forward[batch_size, streams]:.1f} |", flush=True)
    best_batch, best_streams = max(forward, key=forward.get)
    best = forward[best_batch, best_streams]
    print(f"best forward-only: {best:.1f} images/s at batch {best_batch}, {best_streams} stream(s)")
    del network

    print(f"\n{runtime}: build_index over {source} (fresh index each run)")
    print("| batch | decode workers | streams | images | build images/s | end-to-end s | end-to-end images/s "
          "| ratio to forward at this batch | ratio to best forward |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    best_build = 0.0
    for batch_size in build_batches:
        at_batch = max(forward[batch_size, streams] for streams in args.streams)
        for workers in workers_list:
            for streams in args.streams:
                output = Path(tempfile.mkdtemp(prefix="refsearch-bench-")) / "sample.index"
                try:
                    summary = build_index(source, output, IndexConfig(backbone=args.backbone),
                                          batch_size=batch_size, workers=workers, streams=streams,
                                          device=args.device, precision=args.precision, runtime=runtime,
                                          progress=False)
                finally:
                    shutil.rmtree(output.parent, ignore_errors=True)
                rate = summary.images_per_second
                best_build = max(best_build, rate)
                print(f"| {batch_size} | {workers} | {streams} | {summary.images} | {rate:.1f} | "
                      f"{summary.seconds:.1f} | {summary.images / summary.seconds:.1f} | "
                      f"{rate / at_batch:.2f} | {rate / best:.2f} |", flush=True)
    return best_build


if __name__ == "__main__":
    main()
