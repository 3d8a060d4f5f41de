"""Near-duplicate detection measured against imagededup, on edited copies of the sample photos.

The 900 sample photos are split in two halves (seeded). In each half, `--sources` photos get one, two or
three edited copies (crop, resize, JPEG recompression, grayscale, small rotation, brightness change; each
edit equally often, never twice on one photo); the other photos of the half stay as they are. The sample
holds one photo per ImageNet class, so many are look-alikes (dog breeds, big cats, vehicles) that a
method must not group. Every method's threshold is the one with the best F1 on the "tune" half, and its
scores are those on the "report" half. Groups are the connected components of each method's duplicate
pairs; precision, recall and F1 count the pairs of images placed in one group against the pairs that
truly are copies of one photo.

Then a near-duplicate pass over `--vectors` synthetic descriptors is timed (kNN graph, pair scores,
grouping).

    python bench/dedup_quality.py [--sources 120] [--vectors 100000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import time
import warnings
from functools import partial
from itertools import combinations, cycle, pairwise
from pathlib import Path

import numpy as np
from benchlib import CACHE, load_avg, machine, sample_photos
from PIL import Image, ImageEnhance

EDITS = ("crop", "resize", "jpeg", "grayscale", "rotate", "brightness")


# -- the benchmark images ----------------------------------------------------------------------------
def edited(image: Image.Image, edit: str, rng: random.Random) -> tuple[Image.Image, int]:
    """An edited copy of `image` and the JPEG quality to save it with."""
    width, height = image.size
    if edit == "crop":
        keep = rng.uniform(0.65, 0.85)
        w, h = round(width * keep), round(height * keep)
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        return image.crop((left, top, left + w, top + h)), 90
    if edit == "resize":
        scale = rng.uniform(0.25, 0.5)
        return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS), 90
    if edit == "jpeg":
        return image, rng.randint(8, 20)
    if edit == "grayscale":
        return image.convert("L"), 90
    if edit == "rotate":
        angle = rng.uniform(3, 10) * rng.choice((-1, 1))
        rotated = image.rotate(angle, Image.BICUBIC)
        # the largest centred rectangle of the same shape that holds no corner fill
        radians = np.deg2rad(abs(angle))
        shrink = 1 / (np.cos(radians) + max(width / height, height / width) * np.sin(radians))
        w, h = round(width * shrink), round(height * shrink)
        left, top = (width - w) // 2, (height - h) // 2
        return rotated.crop((left, top, left + w, top + h)), 90
    if edit == "brightness":
        factor = rng.choice((rng.uniform(0.55, 0.75), rng.uniform(1.3, 1.6)))
        return ImageEnhance.Brightness(image).enhance(factor), 90
    raise ValueError(edit)


def make_half(photos: list[Path], sources: int, folder: Path, seed: int) -> list[list[str]]:
    """Write one half's images under folder/images; return its true groups (file names)."""
    images = folder / "images"
    truth_file = folder / "truth.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    images.mkdir(parents=True)
    rng = random.Random(seed)
    edits = cycle(EDITS)
    groups = []
    for number, photo in enumerate(photos):
        shutil.copyfile(photo, images / photo.name)
        group = [photo.name]
        if number < sources:
            original = Image.open(photo).convert("RGB")
            for _ in range(1 + number % 3):
                edit = next(edits)
                copy, quality = edited(original, edit, rng)
                name = f"{photo.stem}__{edit}.jpg"
                copy.save(images / name, "JPEG", quality=quality)
                group.append(name)
        groups.append(group)
    truth_file.write_text(json.dumps(groups))
    return groups


# -- scoring -----------------------------------------------------------------------------------------
def components(names: list[str], pairs: set[tuple[str, str]]) -> list[list[str]]:
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(root(name), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def group_pairs(groups: list[list[str]]) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in combinations(g, 2)}


def score(predicted: list[list[str]], truth: list[list[str]]) -> dict:
    found, real = group_pairs(predicted), group_pairs(truth)
    hits = len(found & real)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(real) if real else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_edit = {}
    for edit in EDITS:
        wanted = {p for p in real if _copy_edit(p) == edit}
        per_edit[edit] = round(len(found & wanted) / len(wanted), 3) if wanted else None
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "recall_by_edit": per_edit}


def _copy_edit(pair: frozenset) -> str | None:
    """The edit of the copy in a pair of an original and one of its copies; None for two copies."""
    edits = [name.rsplit("__", 1)[1].removesuffix(".jpg") for name in pair if "__" in name]
    return edits[0] if len(edits) == 1 else None


def tuned(candidates, pairs_at, names: list[str], truth: list[list[str]]) -> tuple[object, dict, dict]:
    """The candidate threshold with the best F1 (ties: the first), its scores, and every candidate's."""
    curve = {threshold: score(components(names, pairs_at(threshold)), truth) for threshold in candidates}
    best = max(curve, key=lambda threshold: curve[threshold]["f1"])  # max keeps the first of equals
    return best, curve[best], curve


# -- the methods -------------------------------------------------------------------------------------
def refsearch_pairs(index, threshold: float) -> set[tuple[str, str]]:
    pairs = set()
    for group in index.curation.near_duplicates(threshold):
        names = [Path(m.path).name for m in group.members]
        pairs.update(pairwise(names))
    return pairs


def ensure_index(images: Path) -> tuple[Path, dict]:
    """The half's refsearch index, built on first use; its build time is recorded beside it."""
    from refsearch import build_index

    path = images.parent / "images.index"
    record = images.parent / "build.json"
    if not record.exists():
        load = load_avg()
        summary = build_index(images, path, progress=False)
        record.write_text(json.dumps({"seconds": summary.seconds, "images": summary.images, "load": load}))
    return path, json.loads(record.read_text())


def run_refsearch(halves: dict, thresholds) -> dict:
    from refsearch import Index
    from refsearch.curation import NEAR_DUPLICATE_THRESHOLD

    results = {}
    with Index.open(halves["tune"]["index"]) as index:
        threshold, on_tune, curve = tuned(thresholds, lambda t: refsearch_pairs(index, t),
                                          halves["tune"]["names"], halves["tune"]["truth"])
    with Index.open(halves["report"]["index"]) as index:
        started = time.perf_counter()
        groups = index.curation.near_duplicates(threshold)
        seconds = time.perf_counter() - started
        predicted = [[Path(m.path).name for m in g.members] for g in groups]
        at_default = [[Path(m.path).name for m in g.members]
                      for g in index.curation.near_duplicates(NEAR_DUPLICATE_THRESHOLD)]
    results["refsearch near_duplicates"] = {
        "threshold": threshold, "tune_f1": on_tune["f1"], **score(predicted, halves["report"]["truth"]),
        "find_seconds": round(seconds, 2),
        "encode_seconds": halves["report"]["build"]["seconds"],
        "note": f"similarity >= {threshold}; encode = build-index (load {halves['report']['build']['load']})",
        "tune_curve": {t: {k: r[k] for k in ("precision", "recall", "f1")} for t, r in curve.items()}}
    results["refsearch near_duplicates, default threshold"] = {
        **score(at_default, halves["report"]["truth"]), "find_seconds": "", "encode_seconds": "",
        "note": f"similarity >= {NEAR_DUPLICATE_THRESHOLD} (the default, not tuned here)"}
    return results


def imagededup_pairs(method, encodings: dict, option: str, threshold) -> set[tuple[str, str]]:
    found = method.find_duplicates(encoding_map=encodings, **{option: threshold})
    return {(a, b) for a, others in found.items() for b in others}


def run_imagededup(halves: dict) -> dict:
    from imagededup import methods

    logging.disable(logging.INFO)  # it logs every step at INFO, whatever `verbose` says
    warnings.filterwarnings("ignore", module="imagededup")
    results = {}
    hamming = ("max_distance_threshold", range(33), "Hamming distance <= {}")
    cosine = ("min_similarity_threshold", np.round(np.arange(0.5, 1.0, 0.01), 2).tolist(), "cosine >= {}")
    for name, (option, candidates, rule) in (("PHash", hamming), ("DHash", hamming), ("WHash", hamming),
                                              ("AHash", hamming), ("CNN", cosine)):
        try:
            method = getattr(methods, name)(verbose=False)
        except OSError as exc:  # CNN fetches MobileNetV3 weights when it is constructed
            results[f"imagededup {name}"] = {"note": f"not run: needs a download ({type(exc).__name__})"}
            continue
        encodings, encode_seconds = {}, {}
        for half in ("tune", "report"):
            started = time.perf_counter()
            encodings[half] = method.encode_images(image_dir=str(halves[half]["images"]))
            encode_seconds[half] = time.perf_counter() - started

        tune = partial(imagededup_pairs, method, encodings["tune"], option)
        threshold, on_tune, _ = tuned(candidates, tune, halves["tune"]["names"], halves["tune"]["truth"])
        started = time.perf_counter()
        pairs = imagededup_pairs(method, encodings["report"], option, threshold)
        seconds = time.perf_counter() - started
        predicted = components(halves["report"]["names"], pairs)
        results[f"imagededup {name}"] = {
            "threshold": threshold, "tune_f1": on_tune["f1"], **score(predicted, halves["report"]["truth"]),
            "find_seconds": round(seconds, 2), "encode_seconds": round(encode_seconds["report"], 2),
            "note": rule.format(threshold)}
    return results


# -- scale -------------------------------------------------------------------------------------------
def synthetic_pass(count: int, threshold: float, seed: int = 0) -> dict:
    """Time the near-duplicate pass (kNN graph, pair scores with cells, grouping) over `count` synthetic
    descriptors: 1000 look-alike families, and one picture in 50 with 1 to 4 copies."""
    from refsearch.curation.duplicates import near_duplicate_groups, pair_similarity
    from refsearch.curation.neighbours import neighbour_graph
    from refsearch.curation.table import RecordTable

    rng = np.random.default_rng(seed)
    dim, cells, cell_dim = 128, 49, 64
    pictures = count * 50 // 52
    families = rng.standard_normal((1000, dim)).astype(np.float32)
    vectors = families[rng.integers(0, 1000, count)] + rng.standard_normal((count, dim)).astype(np.float32)
    cell_vectors = rng.standard_normal((count, cells, cell_dim)).astype(np.float16)
    truth = np.arange(count)
    row = pictures
    for source in rng.choice(pictures, (count - pictures) // 2, replace=False):
        copies = min(int(rng.integers(1, 5)), count - row)
        for _ in range(copies):
            vectors[row] = vectors[source] + 0.6 * rng.standard_normal(dim)
            cell_vectors[row] = cell_vectors[source] + 0.7 * rng.standard_normal((cells, cell_dim))
            truth[row] = source
            row += 1
    vectors, cell_vectors, truth = vectors[:row], cell_vectors[:row], truth[:row]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cell_vectors /= np.linalg.norm(cell_vectors.astype(np.float32), axis=2, keepdims=True).astype(np.float16)

    def read_cells(rows: np.ndarray) -> np.ndarray:
        return cell_vectors[rows].astype(np.float32)

    table = RecordTable(ids=np.arange(row), digests=np.full(row, b"", "S32"), labels=np.zeros(row, np.int16),
                        predictions=np.zeros(row, np.int16), confidences=np.ones(row, np.float32),
                        predicted_labels=np.zeros(row, bool), pixels=rng.integers(10_000, 10**6, row),
                        file_sizes=np.ones(row, np.int64))

    started = time.perf_counter()
    graph = neighbour_graph(np.arange(row), vectors, 10)
    groups = near_duplicate_groups(graph, table, threshold, partial(pair_similarity, vectors=vectors,
                                                                    read_cells=read_cells))
    seconds = time.perf_counter() - started
    predicted = [[str(r) for r in g.rows] for g in groups]
    true_groups = [[str(r) for r in np.flatnonzero(truth == t)] for t in np.unique(truth)]
    found = score(predicted, [g for g in true_groups if len(g) > 1])
    return {"vectors": row, "planted_copies": int((truth != np.arange(row)).sum()),
            "seconds": round(seconds, 1), "approximate_graph": graph.approximate,
            "precision": found["precision"], "recall": found["recall"]}


# -- the run -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=120, help="photos per half given edited copies")
    parser.add_argument("--vectors", type=int, default=100_000, help="synthetic descriptors for the timing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}", flush=True)
    photos = sample_photos()
    order = list(range(len(photos)))
    random.Random(0).shuffle(order)
    split = {"tune": [photos[i] for i in order[: len(order) // 2]],
             "report": [photos[i] for i in order[len(order) // 2:]]}
    halves = {}
    for seed, (half, members) in enumerate(split.items(), start=1):
        folder = CACHE / "dedup" / f"{half}-{args.sources}"
        truth = make_half(members, args.sources, folder, seed)
        index, build = ensure_index(folder / "images")
        halves[half] = {"images": folder / "images", "index": index, "build": build, "truth": truth,
                        "names": [name for group in truth for name in group]}
        print(f"{half}: {len(halves[half]['names'])} images, {args.sources} of {len(members)} photos with "
              f"1 to 3 copies; indexed in {build['seconds']} s (load {build['load']})", flush=True)
    thresholds = np.round(np.arange(0.5, 0.96, 0.025), 3).tolist()
    results = run_refsearch(halves, thresholds)
    results.update(run_imagededup(halves))
    from refsearch.curation import NEAR_DUPLICATE_THRESHOLD

    scale = synthetic_pass(args.vectors, NEAR_DUPLICATE_THRESHOLD)
    truth = halves["report"]["truth"]
    tuned_here = results["refsearch near_duplicates"]["threshold"]
    print(f"\nrefsearch's default threshold is {NEAR_DUPLICATE_THRESHOLD}; tuned here: {tuned_here}"
          + ("" if tuned_here == NEAR_DUPLICATE_THRESHOLD else " (they differ: update the default)"))
    print(f"\nreport half: {len(halves['report']['names'])} images, {sum(len(g) > 1 for g in truth)} photos "
          f"with copies, {len(group_pairs(truth))} true pairs; thresholds chosen for the best F1 on the tune "
          "half\n")
    print("| method | threshold (tuned) | precision | recall | F1 | find s | encode s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        if "f1" not in result:
            print(f"| {name} | {result['note']} | | | | | |")
            continue
        print(f"| {name} | {result['note']} | {result['precision']:.3f} | {result['recall']:.3f} | "
              f"**{result['f1']:.3f}** | {result['find_seconds']} | {result['encode_seconds']} |")
    print("\nrecall by edit (pairs of an original and its copy with that edit):\n")
    print("| method | " + " | ".join(EDITS) + " |\n|---|" + "---:|" * len(EDITS))
    for name, result in results.items():
        if "recall_by_edit" in result:
            print(f"| {name} | " + " | ".join(f"{result['recall_by_edit'][e]:.2f}" for e in EDITS) + " |")
    print("\nrefsearch on the tune half, by threshold:\n")
    print("| threshold | precision | recall | F1 |\n|---:|---:|---:|---:|")
    for threshold, result in results["refsearch near_duplicates"]["tune_curve"].items():
        print(f"| {threshold} | {result['precision']:.3f} | {result['recall']:.3f} | {result['f1']:.3f} |")
    graph = "approximate" if scale["approximate_graph"] else "exact"
    print(f"\nnear-duplicate pass over {scale['vectors']} synthetic descriptors ({scale['planted_copies']} "
          f"planted copies, {graph} kNN graph): {scale['seconds']} s, precision {scale['precision']:.3f}, "
          f"recall {scale['recall']:.3f}; load average now {load_avg()}")
    if args.json:
        report = {"machine": machine(), "results": results, "synthetic": scale}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
