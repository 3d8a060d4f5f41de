"""Build throughput on the 900 sample photos against the backbone's best forward-only throughput.

Both are measured in this run, at the backbone's input size: forward-only over batch sizes on
preprocessed inputs, one pass at a time and several passes side by side (each pass single-threaded on
CPU, as `Backbone.extract` runs it); then whole `build_index` runs (decode, histograms, forward, PCA,
LMDB, FAISS). Target: build images/s >= 0.9 x the best forward-only images/s.

    python bench/build_throughput.py [--batch-sizes 1 2 4 8 16 32] [--seconds 4]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchlib import load_avg, machine, sample_dir
from refsearch import IndexConfig, build_index, create_backbone


def forward_throughput(backbone, batch_size: int, seconds: float, streams: int = 1) -> float:
    """Images/s of `streams` threads each running forward passes on the same batch."""
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, backbone.input_size, backbone.input_size),
                                              dtype=np.uint8)
    backbone.extract(batch)
    done = [0] * streams
    started = time.perf_counter()

    def run(stream: int) -> None:
        while time.perf_counter() - started < seconds:
            backbone.extract(batch)
            done[stream] += batch_size

    workers = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--build-batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2],
                        help="Forward passes side by side (build and forward-only).")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    source = sample_dir()
    print(f"machine: {machine()}; load average at start {load_avg()}")

    backbone = create_backbone(args.backbone, device=args.device)
    print(f"\nforward only, {args.backbone} at {backbone.input_size}px, {args.device}")
    print("| batch | streams | images/s |\n|---:|---:|---:|")
    forward = {}
    for batch_size in args.batch_sizes:
        for streams in args.streams:
            forward[batch_size, streams] = forward_throughput(backbone, batch_size, args.seconds, streams)
            print(f"| {batch_size} | {streams} | {forward[batch_size, streams]:.1f} |", flush=True)
    best_batch, best_streams = max(forward, key=forward.get)
    best = forward[best_batch, best_streams]
    print(f"best forward-only: {best:.1f} images/s at batch {best_batch}, {best_streams} stream(s)")
    del backbone

    print(f"\nbuild_index over {source} (fresh index each run)")
    print("| batch | decode workers | streams | images | build images/s | end-to-end s | ratio to best forward |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size in args.build_batch_sizes:
        for workers in args.workers:
            for streams in args.streams:
                output = Path(tempfile.mkdtemp(prefix="refsearch-bench-")) / "sample.index"
                try:
                    summary = build_index(source, output, IndexConfig(backbone=args.backbone),
                                          batch_size=batch_size, workers=workers, streams=streams,
                                          device=args.device, progress=False)
                finally:
                    shutil.rmtree(output.parent, ignore_errors=True)
                ratio = summary.images_per_second / best
                print(f"| {batch_size} | {workers} | {streams} | {summary.images} | "
                      f"{summary.images_per_second:.1f} | {summary.seconds:.1f} | {ratio:.2f} |", flush=True)
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
