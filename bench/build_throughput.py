"""Build throughput on the 900 sample photos against the backbone's best forward-only throughput.

Both are measured in this run, at the backbone's input size: forward-only over batch sizes on
preprocessed inputs, then whole `build_index` runs (decode, histograms, forward, PCA, LMDB, FAISS).
Target: build images/s >= 0.9 x the best forward-only images/s.

    python bench/build_throughput.py [--batch-sizes 1 2 4 8 16 32] [--seconds 4]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import load_avg, machine, sample_dir
from refsearch import IndexConfig, build_index, create_backbone


def forward_throughput(backbone, batch_size: int, seconds: float) -> float:
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, backbone.input_size, backbone.input_size),
                                              dtype=np.uint8)
    backbone.extract(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        backbone.extract(batch)
        done += batch_size
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--build-batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    source = sample_dir()
    print(f"machine: {machine()}; load average at start {load_avg()}")

    backbone = create_backbone(args.backbone, device=args.device)
    print(f"\nforward only, {args.backbone} at {backbone.input_size}px, {args.device}")
    print("| batch | images/s |\n|---:|---:|")
    forward = {}
    for batch_size in args.batch_sizes:
        forward[batch_size] = forward_throughput(backbone, batch_size, args.seconds)
        print(f"| {batch_size} | {forward[batch_size]:.1f} |")
    best_batch = max(forward, key=forward.get)
    best = forward[best_batch]
    print(f"best forward-only: {best:.1f} images/s at batch {best_batch}")
    del backbone

    print(f"\nbuild_index over {source} (fresh index each run)")
    print("| batch | decode workers | images | build images/s | end-to-end s | ratio to best forward |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch_size in args.build_batch_sizes:
        for workers in args.workers:
            output = Path(tempfile.mkdtemp(prefix="refsearch-bench-")) / "sample.index"
            try:
                summary = build_index(source, output, IndexConfig(backbone=args.backbone), batch_size=batch_size,
                                      workers=workers, device=args.device, progress=False)
            finally:
                shutil.rmtree(output.parent, ignore_errors=True)
            ratio = summary.images_per_second / best
            print(f"| {batch_size} | {workers} | {summary.images} | {summary.images_per_second:.1f} | "
                  f"{summary.seconds:.1f} | {ratio:.2f} |")
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
