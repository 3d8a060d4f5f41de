"""The index at scale: 10k, 100k and 1.28M images of synthetic descriptors, stored through the writer's
own API (no network), then opened and searched as a user would.

Per size it prints: bytes per image on disk; the fill's time and peak RSS (all, and anonymous memory);
open time and RSS after open; in-class search + re-rank p50/p95 (k=10, 200 candidates, the default
rescue search included), on a first pass over the queries and on a second (page cache warm); all-class
search p50 and recall@10 against an exact scan; the time to add 1,000 and to remove 1,000 images (each
published as a new generation) against the baseline of rebuilding the class-partitioned FAISS file from
every vector (what each update cost before segments); the curation kNN graph's time.

Targets on 2 cores at 1.28M: open < 1 s with RSS < 1 GB; in-class p95 <= 10 ms; all-class p50 <= 5 ms
at recall@10 >= 0.95; add or remove 1,000 <= 5 s; kNN graph <= 15 min; fill peak RSS flat in N;
<= 8 KB on disk per image.

The descriptors: 1000 classes in 100 groups of 10 related classes; an image is its class centre plus
noise (cosine to the centre about 0.7); 12% of images lie near a related class instead of their label's,
3% near any other class.
Cells and histograms are random, of the stored sizes (the re-rank's cost does not depend on them).

    python bench/scale.py [--sizes 10000,100000,1280000] [--folder /tmp/refsearch-scale] [--queries 200]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GLOBAL_DIM, CELL_DIM, CELLS, BINS, CLASSES = 128, 64, 49, 10, 1000
FILL_BATCH = 10_000
SOURCE = Path("/data/imagenet/train")


def _rss_mb(field: str = "VmRSS") -> float:
    """Resident memory; RssAnon leaves out file pages (the memory-mapped index, LMDB), which the kernel
    drops under pressure."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Synthetic:
    """Deterministic synthetic descriptors: image i's vectors depend only on i."""

    def __init__(self):
        rng = np.random.default_rng(1234)
        groups = rng.normal(size=(CLASSES // 10, GLOBAL_DIM))
        groups /= np.linalg.norm(groups, axis=1, keepdims=True)
        own = rng.normal(size=(CLASSES, GLOBAL_DIM))
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        centres = groups[np.arange(CLASSES) // 10] + 0.8 * own
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)

    @staticmethod
    def label(ids: np.ndarray) -> np.ndarray:
        return ids % CLASSES

    def batch(self, first: int, count: int):
        ids = np.arange(first, first + count)
        rng = np.random.default_rng(first)
        labels = self.label(ids)
        where = labels.copy()
        # Images that look like another class than their label's: mostly a related one (a sibling in the
        # label's group, as a husky is confused with a malamute), some any class at all.
        draw = rng.random(count)
        related, unrelated = draw < 0.12, (draw >= 0.12) & (draw < 0.15)
        where[related] = (labels[related] // 10) * 10 + rng.integers(0, 10, int(related.sum()))
        where[unrelated] = rng.integers(0, CLASSES, int(unrelated.sum()))
        noise = rng.normal(size=(count, GLOBAL_DIM)) / np.sqrt(GLOBAL_DIM)
        vectors = self.centres[where] + noise
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        cells = rng.normal(size=(count, CELLS, CELL_DIM)).astype(np.float32)
        cells /= np.linalg.norm(cells, axis=2, keepdims=True)
        histograms = rng.dirichlet(np.ones(BINS), size=(count, CELLS)).astype(np.float32)
        digests = rng.integers(0, 256, (count, 16), dtype=np.uint8)
        return ids, labels, vectors, cells, histograms, digests


def _records(ids, labels, digests):
    from refsearch import classes
    from refsearch.store import ImageRecord

    wnids = classes.wnids()
    return [ImageRecord(id=int(i), path=str(SOURCE / wnids[c] / f"{wnids[c]}_{i}.JPEG"), label=wnids[c],
                        label_source="folder", prediction=wnids[c], confidence=0.9, width=500, height=375,
                        digest=d.tobytes().hex(), file_size=110_000, mtime_ns=1_600_000_000_000_000_000 + int(i))
            for i, c, d in zip(ids.tolist(), labels.tolist(), digests)]


def _projections():
    from refsearch.projection import Projection, Projections

    return Projections(Projection(np.zeros(GLOBAL_DIM, np.float32), np.eye(GLOBAL_DIM, dtype=np.float32)),
                       Projection(np.zeros(CELL_DIM, np.float32), np.eye(CELL_DIM, dtype=np.float32)), 0)


def fill(folder: Path, size: int) -> dict:
    from refsearch.config import IndexConfig
    from refsearch.writer import IndexWriter

    synthetic = Synthetic()
    started = time.perf_counter()
    config = IndexConfig(weights="synthetic", global_dim=GLOBAL_DIM, cell_dim=CELL_DIM)
    with IndexWriter.open(folder, config=config, source=SOURCE, create=True, rebuild=True,
                          command="bench/scale.py") as writer:
        writer.set_projections(_projections())
        peak_anon = 0.0
        for first in range(0, size, FILL_BATCH):
            ids, labels, vectors, cells, histograms, digests = synthetic.batch(first, min(FILL_BATCH, size - first))
            writer.add(_records(ids, labels, digests), vectors, cells, histograms)
            peak_anon = max(peak_anon, _rss_mb("RssAnon"))
        writer.publish()
        peak_anon = max(peak_anon, _rss_mb("RssAnon"))
    return {"fill_s": time.perf_counter() - started, "fill_peak_rss_mb": _peak_rss_mb(),
            "fill_peak_anon_mb": peak_anon}


def _query(index, synthetic: Synthetic, image_id: int, rng):
    from refsearch.features import Descriptors
    from refsearch.searcher import QueryFeatures

    vector = index.global_vectors_of([image_id])[0] + rng.normal(size=GLOBAL_DIM).astype(np.float32) * 0.02
    vector /= np.linalg.norm(vector)
    cells, histograms = index.local_features([image_id])
    probabilities = np.full((1, CLASSES), 0.1 / (CLASSES - 1), np.float32)
    probabilities[0, synthetic.label(np.array([image_id]))[0]] = 0.9
    return QueryFeatures("synthetic", Descriptors(probabilities, vector[None], cells, histograms), None)


def measure(folder: Path, queries: int) -> dict:
    started = time.perf_counter()
    import refsearch
    from refsearch.writer import IndexWriter

    out = {"import_s": time.perf_counter() - started, "rss_before_open_mb": _rss_mb()}
    started = time.perf_counter()
    index = refsearch.Index.open(folder)
    out["open_s"] = time.perf_counter() - started
    out["rss_after_open_mb"] = _rss_mb()
    out["anon_after_open_mb"] = _rss_mb("RssAnon")
    synthetic = Synthetic()
    rng = np.random.default_rng(7)
    size = len(index)
    chosen = rng.choice(size, queries, replace=False)
    prepared = [_query(index, synthetic, int(i), rng) for i in chosen]
    request = refsearch.SearchRequest(k=10)
    # Two passes over the same queries: the first reads the candidates' rows from disk where the page
    # cache does not hold them yet (as after a reboot), the second from memory.
    for name in ("in_class_first_pass_ms", "in_class_ms"):
        times = []
        for query in prepared:
            t = time.perf_counter()
            index.search_features([query], request)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = [float(np.percentile(times, 50)), float(np.percentile(times, 95))]
    out["images_per_class"] = size / CLASSES

    vectors = np.concatenate([q.descriptors.global_ for q in prepared])
    _, exact = index.global_index.search(vectors, 10, None)  # every list scanned: exact
    times = []
    found = []
    for row in vectors:
        t = time.perf_counter()
        found.append(index.search_global(row[None], 10)[1][0])
        times.append((time.perf_counter() - t) * 1000)
    out["all_class_kind"] = index.manifest.search_kind()
    out["all_class_ms"] = float(np.percentile(times, 50))
    out["recall_at_10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
    out["recall_by_probes"] = {}
    for probes in (4, 8, 16, 32, 64):
        t = time.perf_counter()
        _, probed = index.global_index.search(vectors, 10, None, probes)
        out["recall_by_probes"][probes] = [float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(probed, exact)])),
                                           (time.perf_counter() - t) * 1000 / len(vectors)]

    started = time.perf_counter()
    index.curation._graph(10)
    out["knn_graph_s"] = time.perf_counter() - started
    out["rss_after_graph_mb"] = _rss_mb()
    index.close()

    started = time.perf_counter()
    with IndexWriter.open(folder, command="bench/scale.py add") as writer:
        first = writer.next_id
        ids, labels, vectors, cells, histograms, digests = synthetic.batch(first, 1000)
        writer.add(_records(ids, labels, digests), vectors, cells, histograms)
        writer.publish()
    out["add_1000_s"] = time.perf_counter() - started
    victims = rng.choice(size, 1000, replace=False).tolist()
    started = time.perf_counter()
    refsearch.remove_images(folder, victims)
    out["remove_1000_s"] = time.perf_counter() - started

    from refsearch.vector_index import write_class_partitioned

    with refsearch.Index.open(folder) as index:
        assert len(index) == size
        ids, vectors = index.global_vectors()
        labels = np.array([synthetic.label(ids)]).reshape(-1)
        started = time.perf_counter()
        write_class_partitioned(folder / "baseline-rebuild.faiss", vectors, ids, labels, CLASSES)
        out["rebuild_baseline_s"] = time.perf_counter() - started
        (folder / "baseline-rebuild.faiss").unlink()
    out["measure_peak_rss_mb"] = _peak_rss_mb()
    return out


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1280000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/refsearch-scale"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="Keep the last index.")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, folder, value = args.child
        result = fill(Path(folder), int(value)) if what == "fill" else measure(Path(folder), int(value))
        print(json.dumps(result))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchlib import load_avg, machine

    print(f"machine: {machine()}; load average at start {load_avg()}")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = args.folder / f"{size}.index"
        filled = _child("--child", "fill", str(folder), str(size))
        disk = _disk_bytes(folder)
        measured = _child("--child", "measure", str(folder), str(args.queries))
        row = {"images": size, "bytes_per_image": disk / size, **filled, **measured}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep or size != int(args.sizes.split(",")[-1]):
            import shutil

            shutil.rmtree(folder)
    print()
    print(f"{'images':>9} {'B/img':>6} {'fill s':>7} {'fill RSS/anon':>13} {'open s':>6} {'RSS open':>8} "
          f"{'in-class 1st pass':>17} {'in-class p50/p95 ms':>19} {'all-class ms':>12} {'recall@10':>9} {'add 1k s':>8} {'rm 1k s':>7} "
          f"{'rebuild s':>9} {'kNN s':>7}")
    for r in rows:
        print(f"{r['images']:>9} {r['bytes_per_image']:>6.0f} {r['fill_s']:>7.1f} "
              f"{r['fill_peak_rss_mb']:>6.0f}/{r['fill_peak_anon_mb']:<4.0f}MB "
              f"{r['open_s']:>6.3f} {r['rss_after_open_mb']:>6.0f}MB "
              f"{r['in_class_first_pass_ms'][0]:>8.2f}/{r['in_class_first_pass_ms'][1]:<8.2f} "
              f"{r['in_class_ms'][0]:>9.2f}/{r['in_class_ms'][1]:<9.2f} {r['all_class_ms']:>9.2f} "
              f"({r['all_class_kind']}) {r['recall_at_10']:>6.3f} {r['add_1000_s']:>8.2f} {r['remove_1000_s']:>7.2f} "
              f"{r['rebuild_baseline_s']:>9.1f} {r['knn_graph_s']:>7.1f}")
    last = rows[-1]
    print("\nrecall@10 and ms per query by probed classes at", last["images"], "images:",
          {k: [round(v[0], 3), round(v[1], 2)] for k, v in last["recall_by_probes"].items()})


if __name__ == "__main__":
    main()
