"""The `exemplar` colorizer's time on the demo queries for each runtime (torch, the baseline, and ONNX
Runtime): the whole `Index.colorize` (search and colorize from the top 3) and the method's own part, median
over every query and round, in this run, on an index of the bundled demo photos.

Target on 2 CPU cores: the median on the runtime <= 0.5 x torch's.

    python bench/colorize_runtime.py [--rounds 3] [--runtimes torch onnxruntime]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchlib import CACHE, REPO, load_avg, machine
from refsearch import Index, build_index
from refsearch.network import INFERENCE_RUNTIME

DEMO = REPO / "index_builds" / "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="Times each query is colorized on each runtime.")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--runtimes", nargs="+", default=["torch", INFERENCE_RUNTIME],
                        help="What runs the network; the first is the baseline.")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")
    index_path = CACHE / "demo.index"
    build_index(DEMO / "photos", index_path, progress=False)  # incremental: a no-op when it is up to date
    queries = sorted((DEMO / "queries").glob("*.jpg"))
    timings = {runtime: ([], []) for runtime in args.runtimes}
    for runtime in args.runtimes:
        with Index.open(index_path, runtime=runtime) as index:
            index.colorize(queries[0], args.topk, "exemplar")  # warm-up: network load, the prior
            for _ in range(args.rounds):
                for query in queries:
                    started = time.perf_counter()
                    result = index.colorize(query, args.topk, "exemplar")
                    timings[runtime][0].append(time.perf_counter() - started)
                    timings[runtime][1].append(result.seconds)
            runtime_name = f"{runtime} {index.network.runtime_version}"
        print(f"{runtime_name}: {len(timings[runtime][0])} colorizations of {len(queries)} demo queries")
    baseline = args.runtimes[0]
    whole_baseline, method_baseline = (float(np.median(values)) for values in timings[baseline])
    print(f"\nexemplar, top {args.topk}, median seconds (ratio to {baseline})")
    print("| runtime | whole colorize s | ratio | method s | ratio |\n|---|---:|---:|---:|---:|")
    for runtime in args.runtimes:
        whole, method = (float(np.median(values)) for values in timings[runtime])
        print(f"| {runtime} | {whole:.2f} | {whole / whole_baseline:.2f} | {method:.2f} | "
              f"{method / method_baseline:.2f} |")
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
