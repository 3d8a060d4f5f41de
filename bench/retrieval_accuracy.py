"""The retrieval done-criterion on the sample photos: index them all, then query with a grayscale,
cropped, downscaled, JPEG-recompressed copy of each photo and count how often its original is rank 1.

    python bench/retrieval_accuracy.py [--photos 900] [--crop 0.1] [--short-side 160] [--quality 60]
                                       [--input-size PX] [--runtimes torch onnxruntime]

With several runtimes, the same index is queried with each, in this run.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchlib import degraded_copy, load_avg, machine, sample_photos
from query_latency import ensure_sample_index
from refsearch import Index

VARIANTS = {"re-ranked (default)": {}, "re-ranked, no cross-class rescue": {"rescue_candidates": 0},
            "global only": {"rerank": False}, "global only, no rescue": {"rerank": False, "rescue_candidates": 0},
            "re-ranked, any class": {"any_class": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=900)
    parser.add_argument("--crop", type=float, default=0.1)
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--quality", type=int, default=60)
    parser.add_argument("--input-size", type=int, default=None,
                        help="The network's input size for the index (default: the backbone's, 260).")
    parser.add_argument("--runtimes", nargs="+", default=["auto"], help="What runs the queries' network.")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="Rankings to count (default: all).")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")
    index_path = ensure_sample_index(args.input_size)
    photos = sample_photos()
    photos = photos[:: max(1, len(photos) // args.photos)][: args.photos]
    variants = {name: VARIANTS[name] for name in args.variants or VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        queries = []
        for number, photo in enumerate(photos):
            queries.append(Path(scratch) / f"q{number}.jpg")
            degraded_copy(photo, args.crop, args.short_side, args.quality).save(queries[-1], quality=100)
        for runtime in args.runtimes:
            ranks = {name: [] for name in variants}
            with Index.open(index_path, runtime=runtime) as index:
                for photo, query in zip(photos, queries):
                    for name, options in variants.items():
                        response = index.search(query, k=10, **options)
                        paths = [Path(r.path).name for r in response.results]
                        ranks[name].append(paths.index(photo.name) + 1 if photo.name in paths else 11)
            print(f"\n{len(photos)} queries on {response.runtime}: grayscale, {args.crop:.0%} cropped from each "
                  f"side, short side {args.short_side}px, JPEG quality {args.quality}; index of "
                  f"{len(sample_photos())} photos, network at {index.config.input_size} px")
            print("| ranking | original at rank 1 | in top 5 | in top 10 |\n|---|---:|---:|---:|")
            for name, values in ranks.items():
                values = np.array(values)
                print(f"| {name} | {np.sum(values == 1)} / {len(values)} ({np.mean(values == 1):.1%}) | "
                      f"{np.mean(values <= 5):.1%} | {np.mean(values <= 10):.1%} |")


if __name__ == "__main__":
    main()
