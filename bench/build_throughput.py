"""Build throughput on the sample photos against the backbone's forward-only throughput.

Both are measured in this run, at the backbone's input size: forward-only over batch sizes on inputs
decoded beforehand, one pass at a time and several passes side by side (each pass single-threaded on
CPU, as `Backbone.extract` runs it); then whole `build_index` runs (decode, histograms, forward, PCA,
LMDB, FAISS), each compared with forward-only at its own batch size and with the best forward-only.
Targets: on CPU, build images/s >= 0.9 x the best forward-only; on an H100/H200-class GPU, >= 2,000
images/s and >= 0.8 x forward-only at the same batch size.

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
from refsearch import IndexConfig, build_index, create_backbone
from refsearch.backbones import default_workers

DEFAULTS = {  # (forward-only batch sizes, build batch sizes) for each device
    "cpu": ([1, 2, 4, 8, 16, 32], [4, 8]),
    "cuda": ([32, 64, 128, 256], [64, 128]),
}


def synchronize(device: str) -> None:
    """Wait for the work queued on the GPU: its passes return before they have run."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def forward_throughput(backbone, batch_size: int, seconds: float, streams: int = 1) -> float:
    """Images/s of `streams` threads each running forward passes on the same batch."""
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, backbone.input_size, backbone.input_size),
                                              dtype=np.uint8)
    device = str(backbone.device)
    for _ in range(3):  # the GPU's first passes pick their kernels
        backbone.extract(batch)
    synchronize(device)
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
    args = parser.parse_args()
    forward_batches = args.batch_sizes or DEFAULTS[args.device][0]
    build_batches = args.build_batch_sizes or DEFAULTS[args.device][1]
    forward_batches = sorted(set(forward_batches) | set(build_batches))
    workers_list = args.workers or [default_workers(args.device)]
    print(f"machine: {machine()}; load average at start {load_avg()}")
    if args.device == "cuda":
        import torch

        print(f"card: {torch.cuda.get_device_name()}")

    backbone = create_backbone(args.backbone, device=args.device, precision=args.precision)
    dtype = backbone.inference.autocast_dtype
    precision = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    print(f"\nforward only, {args.backbone} at {backbone.input_size}px, {args.device}, {precision}")
    print("| batch | streams | images/s |\n|---:|---:|---:|")
    forward = {}
    for batch_size in forward_batches:
        for streams in args.streams:
            forward[batch_size, streams] = forward_throughput(backbone, batch_size, args.seconds, streams)
            print(f"| {batch_size} | {streams} | {forward[batch_size, streams]:.1f} |", flush=True)
    best_batch, best_streams = max(forward, key=forward.get)
    best = forward[best_batch, best_streams]
    print(f"best forward-only: {best:.1f} images/s at batch {best_batch}, {best_streams} stream(s)")
    del backbone

    source, temporary = photo_folder(args.limit, args.repeat)
    print(f"\nbuild_index over {source} (fresh index each run)")
    print("| batch | decode workers | streams | images | build images/s | end-to-end s | end-to-end images/s "
          "| ratio to forward at this batch | ratio to best forward |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for batch_size in build_batches:
            at_batch = max(forward[batch_size, streams] for streams in args.streams)
            for workers in workers_list:
                for streams in args.streams:
                    output = Path(tempfile.mkdtemp(prefix="refsearch-bench-")) / "sample.index"
                    try:
                        summary = build_index(source, output, IndexConfig(backbone=args.backbone),
                                              batch_size=batch_size, workers=workers, streams=streams,
                                              device=args.device, precision=args.precision, progress=False)
                    finally:
                        shutil.rmtree(output.parent, ignore_errors=True)
                    rate = summary.images_per_second
                    print(f"| {batch_size} | {workers} | {streams} | {summary.images} | {rate:.1f} | "
                          f"{summary.seconds:.1f} | {summary.images / summary.seconds:.1f} | "
                          f"{rate / at_batch:.2f} | {rate / best:.2f} |", flush=True)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
