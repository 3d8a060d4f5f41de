"""The Ray engines against the local engines, on the sample photos, in one run on this machine.

Builds a fresh index of the photos with the local engine (the baseline), then with `--engine ray` on a
local Ray of this machine's cores, with 1 and with 2 backbone actors; prints each build's images/s (the
processing loop, as build-index reports it) and end-to-end seconds, the Ray overhead against the local
build (target: at most 15% on one machine), and whether the Ray index equals the local one: the same
records, global descriptors within 1e-3 in cosine, the same top-10. Then answers `--batch-queries` of
the photos as a batch query (`query FOLDER --jsonl`, k=10) on the local index, locally and on Ray with 2
actors, and prints photos/s and whether the Ray lines equal the local ones (timings aside).

    python bench/ray_build.py [--limit 900] [--queries 30] [--batch-queries 300]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import load_avg, machine, sample_dir, sample_photos
from refsearch import Index, build_index, query_folder


def timed_build(source: Path, output: Path, **options) -> tuple[float, float]:
    started = time.perf_counter()
    summary = build_index(source, output, progress=False, rebuild=True, **options)
    return summary.images_per_second, time.perf_counter() - started


def compare(built: Path, reference: Path, queries: list[Path]) -> str:
    with Index.open(built) as a, Index.open(reference) as b:
        def rows(index):
            return {r.path: (r.label, r.prediction, r.digest) for r in index.records()}

        same_records = rows(a) == rows(b)

        def vectors(index):
            ids, values = index.global_vectors()
            paths = {r.id: r.path for r in index.records()}
            return {paths[i]: v / np.linalg.norm(v) for i, v in zip(ids.tolist(), values)}

        va, vb = vectors(a), vectors(b)
        lowest = min(float(va[p] @ vb[p]) for p in vb)
        same_top = sum([r.path for r in a.search(q, k=10)] == [r.path for r in b.search(q, k=10)] for q in queries)
    return (f"same records: {same_records}; lowest global-descriptor cosine {lowest:.6f}; "
            f"same top-10 for {same_top}/{len(queries)} queries")


def timed_batch_query(index: Index, photos: list[Path], output: Path, **options) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    query_folder(index, photos, output, k=10, progress=False, **options)
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    return len(photos) / seconds, [{k: v for k, v in line.items() if not k.endswith("_ms")} for line in lines]


def compare_lines(lines: list[dict], reference: list[dict]) -> str:
    """How far apart two batch queries' lines are: the photos named, the ranked ids, the scores (which
    differ in their last digits where the network ran with another number of threads)."""
    def ranked(line):
        return line["query"], [r["id"] for r in line.get("results", [])]

    same_ranking = sum(ranked(a) == ranked(b) for a, b in zip(lines, reference))
    gaps = [abs(x["score"] - y["score"]) for a, b in zip(lines, reference)
            for x, y in zip(a.get("results", []), b.get("results", []))]
    return (f"{len(lines)} lines for {len(reference)}; the same photo and ranked ids in {same_ranking}; "
            f"largest score difference {max(gaps, default=0):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="Index only the first N sample photos.")
    parser.add_argument("--queries", type=int, default=30, help="Sample photos queried on both indexes.")
    parser.add_argument("--batch-queries", type=int, default=300, help="Sample photos answered by batch queries.")
    args = parser.parse_args()

    import ray

    photos = sample_photos()[:args.limit]
    source = sample_dir()
    scratch = Path(tempfile.mkdtemp(prefix="refsearch-bench-ray-"))
    if args.limit is not None:
        source = scratch / "photos"
        source.mkdir()
        for photo in photos:
            os.link(photo, source / photo.name)
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {machine()}; load average at start {load_avg()}")
    try:
        local_rate, local_seconds = timed_build(source, scratch / "local.index")
        started = time.perf_counter()
        ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        rows = [("local (threads)", "-", local_rate, local_seconds)]
        for actors in (1, 2):
            rate, seconds = timed_build(source, scratch / f"ray{actors}.index", engine="ray",
                                        engine_options={"actors": actors})
            rows.append((f"ray, {actors} actor{'s' * (actors > 1)}", str(actors), rate, seconds))
        verdict = compare(scratch / "ray2.index", scratch / "local.index", photos[:args.queries])
        asked = [Path(p).resolve() for p in photos[:args.batch_queries]]
        with Index.open(scratch / "local.index") as index:
            local_query_rate, local_lines = timed_batch_query(index, asked, scratch / "local.jsonl")
            ray_query_rate, ray_lines = timed_batch_query(index, asked, scratch / "ray.jsonl", engine="ray",
                                                          engine_options={"actors": 2})
        ray.shutdown()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nfresh builds of {len(photos)} sample photos; Ray started once beforehand with {cores} CPUs "
          f"({ray_start:.1f} s, not counted below)")
    print("| engine | actors | build images/s | end-to-end s | overhead against local |")
    print("|---|---:|---:|---:|---:|")
    for name, actors, rate, seconds in rows:
        overhead = "—" if actors == "-" else f"{100 * (local_rate / rate - 1):.0f}%"
        print(f"| {name} | {actors} | {rate:.1f} | {seconds:.1f} | {overhead} |")
    best = max(rate for _, actors, rate, _ in rows if actors != "-")
    print(f"\nRay overhead at its best: {100 * (local_rate / best - 1):.0f}% (target at most 15%)")
    print(f"Ray (2 actors) against local: {verdict}")
    print(f"\nbatch query of {len(asked)} sample photos (k=10, the default batches, workers and streams) on the local index:")
    print("| engine | photos/s | overhead against local |\n|---|---:|---:|")
    print(f"| local (threads) | {local_query_rate:.1f} | — |")
    print(f"| ray, 2 actors | {ray_query_rate:.1f} | {100 * (local_query_rate / ray_query_rate - 1):.0f}% |")
    print(f"Ray lines against the local ones: {compare_lines(ray_lines, local_lines)}")
    print(f"load average at end {load_avg()}")


if __name__ == "__main__":
    main()
