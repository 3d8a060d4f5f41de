"""Near-duplicate detection measured against imagededup, on edited copies of the sample photos.

The 900 sample photos hold one photo per ImageNet class, none a copy of another, and many look-alikes (dog
breeds, big cats, vehicles): first every method is run on all 900, where any group is a false one. Then
they are split in two halves (seeded); in each half, `--sources` photos get one, two or three edited
copies, each edit equally often and never twice on one photo:

    crop        up to 25% of each side cut off (75-90% of the width and of the height kept)
    resize      to 30-50% of each side
    jpeg        recompressed at quality 20
    grayscale
    brightness  x 0.7-0.8 or x 1.2-1.3
    contrast    x 0.7-0.8 or x 1.2-1.3
    rotate      by 2-5 degrees either way, cropped to the inscribed rectangle
    caption     a line of white, outlined text 8-12% of the height tall, at the top or the bottom
    logo        a mark 15-22% of the short side, 80% opaque, in a corner
    combined    three of the above at once

refsearch runs at its defaults (nothing is tuned here); imagededup's thresholds are the ones with the best
F1 on the "tune" half, and every method is scored on the "report" half. Groups are the connected
components of a method's duplicate pairs; precision, recall and F1 count the pairs of images placed in
one group against the pairs that truly are copies of one photo; recall by edit counts the pairs of an
original and its copy with that edit. imagededup CNN downloads MobileNetV3 weights when it starts; where
it cannot (offline), it runs with the EfficientNet-Lite2 ImageNet weights that refsearch installs, through
its own custom-model option, and the table says so.

Then the cost: how many candidate pairs the neighbour graph gives per image, the time to check one pair
from its files (one thread, each file read and decoded), and the candidate stage over `--vectors`
synthetic descriptors, which together estimate a pass over ImageNet's 1.28 million photos.

    python bench/dedup_quality.py [--sources 150] [--vectors 100000] [--json out.json]
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
from itertools import combinations, cycle
from pathlib import Path

import numpy as np
from benchlib import CACHE, load_avg, machine, sample_dir, sample_photos
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

SINGLE_EDITS = ("crop", "resize", "jpeg", "grayscale", "brightness", "contrast", "rotate", "caption", "logo")
EDITS = (*SINGLE_EDITS, "combined")
# The order in which combined edits are applied: geometry, overlays, levels, then size and compression.
EDIT_ORDER = ("crop", "rotate", "caption", "logo", "grayscale", "brightness", "contrast", "resize", "jpeg")
WORDS = ("summer", "holiday", "best", "friends", "sale", "today", "only", "limited", "offer", "my", "trip",
         "look", "at", "this", "amazing", "view", "weekend", "family", "photo", "new")
IMAGENET_TRAIN = 1_281_167


# -- the benchmark images ----------------------------------------------------------------------------
def apply_edit(image: Image.Image, edit: str, rng: random.Random) -> Image.Image:
    """`image` (RGB) with one edit applied; "jpeg" is applied when saving."""
    width, height = image.size
    if edit == "crop":
        w, h = round(width * rng.uniform(0.75, 0.9)), round(height * rng.uniform(0.75, 0.9))
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        return image.crop((left, top, left + w, top + h))
    if edit == "resize":
        scale = rng.uniform(0.3, 0.5)
        return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)
    if edit == "jpeg":
        return image
    if edit == "grayscale":
        return image.convert("L").convert("RGB")
    if edit in ("brightness", "contrast"):
        factor = rng.choice((rng.uniform(0.7, 0.8), rng.uniform(1.2, 1.3)))
        enhancer = ImageEnhance.Brightness if edit == "brightness" else ImageEnhance.Contrast
        return enhancer(image).enhance(factor)
    if edit == "rotate":
        angle = rng.uniform(2, 5) * rng.choice((-1, 1))
        rotated = image.rotate(angle, Image.BICUBIC)
        # the largest centred rectangle of the same shape that holds no corner fill
        radians = np.deg2rad(abs(angle))
        shrink = 1 / (np.cos(radians) + max(width / height, height / width) * np.sin(radians))
        w, h = round(width * shrink), round(height * shrink)
        left, top = (width - w) // 2, (height - h) // 2
        return rotated.crop((left, top, left + w, top + h))
    if edit == "caption":
        captioned = image.copy()
        draw = ImageDraw.Draw(captioned)
        size = max(8, round(height * rng.uniform(0.08, 0.12)))
        font = ImageFont.load_default(size=size)
        text = " ".join(rng.sample(WORDS, 3)).upper()
        left = max(0.0, (width - draw.textlength(text, font=font)) / 2)
        top = rng.choice((height * 0.04, height * 0.96 - size * 1.2))
        draw.text((left, top), text, font=font, fill=(255, 255, 255), stroke_width=max(1, size // 12),
                  stroke_fill=(0, 0, 0))
        return captioned
    if edit == "logo":
        marked = image.convert("RGBA")
        side = max(8, round(min(width, height) * rng.uniform(0.15, 0.22)))
        logo = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        draw = ImageDraw.Draw(logo)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        draw.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 5, fill=(*colour, 204))
        font = ImageFont.load_default(size=side * 0.6)
        draw.text((side / 2, side / 2), rng.choice("ABCDEFGHKMPRSTXZ"), font=font, fill=(255, 255, 255, 255),
                  anchor="mm")
        margin = round(min(width, height) * 0.03)
        corner = (rng.choice((margin, width - side - margin)), rng.choice((margin, height - side - margin)))
        marked.alpha_composite(logo, corner)
        return marked.convert("RGB")
    raise ValueError(edit)


def edited_copy(image: Image.Image, edit: str, rng: random.Random) -> tuple[Image.Image, int, list[str]]:
    """An edited copy of `image`, the JPEG quality to save it with, and the single edits it went through."""
    edits = sorted(rng.sample(SINGLE_EDITS, 3), key=EDIT_ORDER.index) if edit == "combined" else [edit]
    for single in edits:
        image = apply_edit(image, single, rng)
    return image, 20 if "jpeg" in edits else 90, edits


def make_half(photos: list[Path], sources: int, folder: Path, seed: int) -> dict:
    """Write one half's images under folder/images; return its true groups (file names) and each copy's
    edits."""
    images = folder / "images"
    truth_file = folder / "truth.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    images.mkdir(parents=True)
    rng = random.Random(seed)
    edits = cycle(EDITS)
    groups, recipes = [], {}
    for number, photo in enumerate(photos):
        shutil.copyfile(photo, images / photo.name)
        group = [photo.name]
        if number < sources:
            original = Image.open(photo).convert("RGB")
            for _ in range(1 + number % 3):
                edit = next(edits)
                copy, quality, applied = edited_copy(original, edit, rng)
                name = f"{photo.stem}__{edit}.jpg"
                copy.save(images / name, "JPEG", quality=quality)
                group.append(name)
                recipes[name] = applied
        groups.append(group)
    truth = {"groups": groups, "edits": recipes}
    truth_file.write_text(json.dumps(truth))
    return truth


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
    missed = sorted(tuple(sorted(p)) for p in real - found if _copy_edit(p))
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "true_pairs": len(real), "found_pairs": len(found), "false_pairs": len(found - real),
            "recall_by_edit": per_edit, "missed": missed}


def _copy_edit(pair) -> str | None:
    """The edit of the copy in a pair of an original and one of its copies; None for two copies."""
    edits = [name.rsplit("__", 1)[1].removesuffix(".jpg") for name in pair if "__" in name]
    return edits[0] if len(edits) == 1 else None


def tuned(candidates, pairs_at, names: list[str], truth: list[list[str]]) -> tuple[object, dict]:
    """The candidate threshold with the best F1 (ties: the first), and its scores."""
    curve = {threshold: score(components(names, pairs_at(threshold)), truth) for threshold in candidates}
    best = max(curve, key=lambda threshold: curve[threshold]["f1"])  # max keeps the first of equals
    return best, curve[best]


def names_of(groups) -> list[list[str]]:
    return [[Path(m.path).name for m in group.members] for group in groups]


# -- refsearch ---------------------------------------------------------------------------------------
def ensure_index(images: Path, path: Path) -> dict:
    """The folder's refsearch index, built on first use; its build time is recorded beside it."""
    from refsearch import build_index

    record = path.with_suffix(".build.json")
    if not record.exists():
        load = load_avg()
        summary = build_index(images, path, progress=False)
        record.write_text(json.dumps({"seconds": summary.seconds, "images": summary.images, "load": load}))
    return json.loads(record.read_text())


def run_refsearch(distinct: Path, halves: dict) -> dict:
    from refsearch import Index
    from refsearch.curation import CANDIDATE_THRESHOLD, NEAR_DUPLICATE_THRESHOLD

    results = {}
    for name, index_path, truth in (("900 distinct photos", distinct, None),
                                    *((half, halves[half]["index"], halves[half]["truth"])
                                      for half in ("tune", "report"))):
        with Index.open(index_path) as index:
            started = time.perf_counter()
            groups = index.curation.near_duplicates()
            seconds = time.perf_counter() - started
            similarity_alone = [[Path(r.path).name for r in index.records_of(index.curation._curation_data()
                                                                            .table.ids[group.rows].tolist())]
                                for group in index.curation._similarity_groups(NEAR_DUPLICATE_THRESHOLD, 10)]
            entry = {"images": len(index), "groups": len(groups), "candidate_pairs": groups.candidate_pairs,
                     "pairs_per_image": round(groups.candidate_pairs / len(index), 3),
                     "seconds": round(seconds, 2), "unreadable": len(groups.unreadable),
                     "similarity_alone_groups": len(similarity_alone)}
            if truth is None:
                entry["false_groups"] = [names for names in names_of(groups)]
            else:
                entry["verified"] = score(names_of(groups), truth["groups"])
                entry["similarity_alone"] = score(similarity_alone, truth["groups"])
                ids = {Path(r.path).name: r.id for r in index.records()}
                entry["missed_reasons"] = {
                    f"{a} / {b}": index.curation.check_copies(ids[a], ids[b]).reason
                    for a, b in entry["verified"]["missed"][:12]}
                entry["missed_recipes"] = [truth["edits"].get(a if "__" in a else b)
                                           for a, b in entry["verified"]["missed"]]
            results[name] = entry
    results["candidate_threshold"] = CANDIDATE_THRESHOLD
    results["similarity_alone_threshold"] = NEAR_DUPLICATE_THRESHOLD
    return results


def candidate_curve(index_path: Path, truth: dict, thresholds) -> dict:
    """By candidate threshold: candidate pairs per image, and the share of true pairs that share a
    component of the candidate pairs (the most that verification can find)."""
    from refsearch import Index
    from refsearch.curation.duplicates import candidate_pairs

    curve = {}
    with Index.open(index_path) as index:
        curator = index.curation
        table = curator._curation_data().table
        names = [Path(r.path).name for r in index.records_of(table.ids.tolist())]
        for threshold in thresholds:
            first, second = candidate_pairs(curator._graph(10), table, threshold,
                                            curator._similarity_of(threshold))
            pairs = {(names[a], names[b]) for a, b in zip(first.tolist(), second.tolist())}
            linked = components(names, pairs)
            curve[threshold] = {"pairs_per_image": round(len(first) / len(table), 3),
                                "reachable_recall": score(linked, truth["groups"])["recall"]}
    return curve


def pair_cost(index_path: Path) -> dict:
    """One thread checking an index's candidate pairs from a cold start: every file read and decoded."""
    from refsearch import Index
    from refsearch.curation import CANDIDATE_THRESHOLD
    from refsearch.curation.duplicates import candidate_pairs
    from refsearch.curation.verify import CopyVerifier

    with Index.open(index_path) as index:
        curator = index.curation
        table = curator._curation_data().table
        first, second = candidate_pairs(curator._graph(10), table, CANDIDATE_THRESHOLD,
                                        curator._similarity_of(CANDIDATE_THRESHOLD))
        records = dict(zip(table.ids.tolist(), index.records_of(table.ids.tolist())))
        pairs = [(records[table.ids[a]], records[table.ids[b]])
                 for a, b in zip(first.tolist(), second.tolist())]
    verifier = CopyVerifier(workers=1)
    started = time.perf_counter()
    verifier.check_many(pairs)
    seconds = time.perf_counter() - started
    read = {record.id: record for pair in pairs for record in pair}
    return {"pairs": len(pairs), "images_read": len(read), "seconds": round(seconds, 2),
            "ms_per_pair": round(1000 * seconds / max(1, len(pairs)), 1),
            "megabytes_read": round(sum(r.file_size for r in read.values()) / 1e6, 1)}


def synthetic_candidates(count: int, threshold: float, seed: int = 0) -> dict:
    """Time the candidate stage (kNN graph, pair similarities with cells) over `count` synthetic
    descriptors: 1000 look-alike families, and one picture in 50 with 1 to 4 copies."""
    from refsearch.curation.duplicates import candidate_pairs, pair_similarity
    from refsearch.curation.neighbours import neighbour_graph
    from refsearch.store import RecordColumns

    rng = np.random.default_rng(seed)
    dim, cells, cell_dim = 128, 49, 64
    pictures = count * 50 // 52
    families = rng.standard_normal((1000, dim)).astype(np.float32)
    vectors = families[rng.integers(0, 1000, count)] + rng.standard_normal((count, dim)).astype(np.float32)
    cell_vectors = rng.standard_normal((count, cells, cell_dim)).astype(np.float16)
    row = pictures
    for source in rng.choice(pictures, (count - pictures) // 2, replace=False):
        for _ in range(min(int(rng.integers(1, 5)), count - row)):
            vectors[row] = vectors[source] + 0.6 * rng.standard_normal(dim)
            cell_vectors[row] = cell_vectors[source] + 0.7 * rng.standard_normal((cells, cell_dim))
            row += 1
    vectors, cell_vectors = vectors[:row], cell_vectors[:row]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cell_vectors /= np.linalg.norm(cell_vectors.astype(np.float32), axis=2, keepdims=True).astype(np.float16)

    def read_cells(rows: np.ndarray) -> np.ndarray:
        return cell_vectors[rows].astype(np.float32)

    table = RecordColumns(ids=np.arange(row), digests=np.full(row, b"", "S32"),
                          labels=np.zeros(row, np.int16), predictions=np.zeros(row, np.int16),
                          confidences=np.ones(row, np.float32),
                          predicted_labels=np.zeros(row, bool), pixels=rng.integers(10_000, 10**6, row),
                          file_sizes=np.ones(row, np.int64))
    started = time.perf_counter()
    graph = neighbour_graph(np.arange(row), vectors, 10)
    first, _ = candidate_pairs(graph, table, threshold, partial(pair_similarity, vectors=vectors,
                                                                read_cells=read_cells))
    seconds = time.perf_counter() - started
    return {"vectors": row, "seconds": round(seconds, 1), "approximate_graph": graph.approximate,
            "candidate_pairs": len(first)}


# -- imagededup --------------------------------------------------------------------------------------
def _cnn_method():
    """imagededup's CNN, or with EfficientNet-Lite2's ImageNet weights (installed with refsearch) where
    its MobileNetV3 weights cannot be downloaded; and a note saying which."""
    from imagededup import methods

    try:
        return methods.CNN(verbose=False), "MobileNetV3 (its default)"
    except OSError:  # it fetches MobileNetV3 weights when it is constructed
        pass
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from imagededup.utils.models import CustomModel
    from torchvision import transforms

    from refsearch.backbones.base import load_state_dict
    from refsearch.backbones.efficientnet_lite import bundled_weights

    class LiteFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = EfficientNet.from_name("efficientnet-lite2")
            self.net.load_state_dict(load_state_dict(bundled_weights()))
            self.net.eval()

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    transform = transforms.Compose([transforms.Resize((260, 260)), transforms.ToTensor(),
                                    transforms.Normalize([127 / 255] * 3, [128 / 255] * 3)])
    model = CustomModel(name="efficientnet-lite2", model=LiteFeatures(), transform=transform)
    return (methods.CNN(verbose=False, model_config=model),
            "EfficientNet-Lite2 ImageNet weights: its MobileNetV3 cannot be downloaded offline")


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
    for name, (option, candidates, rule) in (("PHash", hamming), ("CNN", cosine)):
        method, model = _cnn_method() if name == "CNN" else (methods.PHash(verbose=False), "")
        encodings, encode_seconds = {}, {}
        for part, folder in (("tune", halves["tune"]["images"]), ("report", halves["report"]["images"]),
                             ("distinct", sample_dir())):
            started = time.perf_counter()
            encodings[part] = method.encode_images(image_dir=str(folder))
            encode_seconds[part] = time.perf_counter() - started
        tune = partial(imagededup_pairs, method, encodings["tune"], option)
        tune_truth = halves["tune"]["truth"]["groups"]
        threshold, on_tune = tuned(candidates, tune, halves["tune"]["names"], tune_truth)
        started = time.perf_counter()
        pairs = imagededup_pairs(method, encodings["report"], option, threshold)
        seconds = time.perf_counter() - started
        predicted = components(halves["report"]["names"], pairs)
        distinct = components(sorted(encodings["distinct"]),
                              imagededup_pairs(method, encodings["distinct"], option, threshold))
        results[f"imagededup {name}"] = {
            "threshold": threshold, "tune_f1": on_tune["f1"],
            **score(predicted, halves["report"]["truth"]["groups"]),
            "false_groups_900": len(distinct), "find_seconds": round(seconds, 2),
            "encode_seconds": round(encode_seconds["report"], 2), "note": rule.format(threshold),
            "model": model}
    return results


def print_report(halves: dict, refsearch: dict, curve: dict, cost: dict, others: dict, scale: dict) -> None:
    """The tables docs/curation.md shows, and the cost figures."""
    report = refsearch["report"]
    truth = halves["report"]["truth"]["groups"]
    print(f"\n900 distinct photos: refsearch groups {refsearch['900 distinct photos']['groups']} (similarity "
          f"alone at {refsearch['similarity_alone_threshold']}: "
          f"{refsearch['900 distinct photos']['similarity_alone_groups']})"
          + "".join(f"; {name} {r['false_groups_900']}" for name, r in others.items()))
    print(f"\nreport half: {len(halves['report']['names'])} images, {sum(len(g) > 1 for g in truth)} photos "
          f"with copies, {len(group_pairs(truth))} true pairs; refsearch at its defaults, imagededup at the "
          "threshold with the best F1 on the tune half\n")
    print("| method | threshold | precision | recall | F1 | false groups on the 900 | find s | encode s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    rows = {f"refsearch near_duplicates (candidates at similarity >= {refsearch['candidate_threshold']}, "
            "verified from pixels)": (report["verified"], refsearch["900 distinct photos"]["groups"],
                                      report["seconds"], halves["report"]["build"]["seconds"]),
            f"refsearch similarity alone (>= {refsearch['similarity_alone_threshold']}, the former default)":
                (report["similarity_alone"], refsearch["900 distinct photos"]["similarity_alone_groups"], "",
                 "")}
    for name, result in others.items():
        label = f"{name} ({result['model']})" if result["model"] else name
        rows[label] = (result, result["false_groups_900"], result["find_seconds"], result["encode_seconds"])
    for name, (result, false_groups, find, encode) in rows.items():
        note = result.get("note", "its default")
        print(f"| {name} | {note} | {result['precision']:.3f} | {result['recall']:.3f} | "
              f"**{result['f1']:.3f}** | {false_groups} | {find} | {encode} |")
    print("\nrecall by edit (pairs of an original and its copy with that edit), report half:\n")
    print("| method | " + " | ".join(EDITS) + " |\n|---|" + "---:|" * len(EDITS))
    for name, (result, *_) in rows.items():
        recalls = " | ".join(f"{result['recall_by_edit'][e]:.2f}" for e in EDITS)
        print(f"| {name.split(' (')[0]} | {recalls} |")
    tune = refsearch["tune"]["verified"]
    print(f"\nrefsearch on the tune half (also untuned): precision {tune['precision']:.3f}, recall "
          f"{tune['recall']:.3f}, F1 {tune['f1']:.3f}; by edit "
          + ", ".join(f"{e} {tune['recall_by_edit'][e]:.2f}" for e in EDITS))
    for half in ("tune", "report"):
        for pair, reason in refsearch[half]["missed_reasons"].items():
            print(f"  missed ({half}): {pair}: {reason}")
        if refsearch[half]["missed_recipes"]:
            print(f"  missed edits ({half}): {refsearch[half]['missed_recipes']}")
    print("\ncandidate stage on the tune half, by similarity threshold:\n")
    print("| threshold | candidate pairs per image | true pairs within reach |\n|---:|---:|---:|")
    for threshold, point in curve.items():
        print(f"| {threshold} | {point['pairs_per_image']} | {point['reachable_recall']:.3f} |")
    print("\ncost:")
    for name in ("900 distinct photos", "tune", "report"):
        entry = refsearch[name]
        print(f"  {name}: {entry['candidate_pairs']} candidate pairs ({entry['pairs_per_image']} per image); "
              f"near_duplicates {entry['seconds']} s with its default threads")
    for name, entry in cost.items():
        print(f"  one thread, {name}: {entry['pairs']} pairs over {entry['images_read']} images "
              f"({entry['megabytes_read']} MB) in {entry['seconds']} s: {entry['ms_per_pair']} ms a pair")
    graph = "approximate" if scale["approximate_graph"] else "exact"
    print(f"  candidate stage over {scale['vectors']} synthetic descriptors ({graph} kNN graph): "
          f"{scale['seconds']} s")
    per_pair = cost["900 distinct photos"]["ms_per_pair"]
    for label, rate in (("at the 900 photos' rate", refsearch["900 distinct photos"]["pairs_per_image"]),
                        ("at the planted halves' rate", refsearch["report"]["pairs_per_image"]),
                        ("if every one of the 10 neighbours were a candidate (the bound)", 10)):
        pairs = rate * IMAGENET_TRAIN
        print(f"  1.28M photos {label}: {pairs / 1e6:.2f}M pairs x {per_pair} ms = "
              f"{pairs * per_pair / 3.6e6:.1f} core-hours")
    print(f"  load average now {load_avg()}")


# -- the run -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=150, help="photos per half given edited copies")
    parser.add_argument("--vectors", type=int, default=100_000, help="synthetic descriptors for the timing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}", flush=True)
    photos = sample_photos()
    root = CACHE / "dedup-copies"
    root.mkdir(parents=True, exist_ok=True)
    distinct = root / "distinct.index"
    build = ensure_index(sample_dir(), distinct)
    print(f"900 distinct photos: indexed in {build['seconds']} s (load {build['load']})", flush=True)
    order = list(range(len(photos)))
    random.Random(0).shuffle(order)
    split = {"tune": [photos[i] for i in order[: len(order) // 2]],
             "report": [photos[i] for i in order[len(order) // 2:]]}
    halves = {}
    for seed, (half, members) in enumerate(split.items(), start=1):
        folder = root / f"{half}-{args.sources}"
        truth = make_half(members, args.sources, folder, seed)
        build = ensure_index(folder / "images", folder / "images.index")
        halves[half] = {"images": folder / "images", "index": folder / "images.index", "build": build,
                        "truth": truth, "names": [name for group in truth["groups"] for name in group]}
        print(f"{half}: {len(halves[half]['names'])} images, {args.sources} of {len(members)} photos with 1 "
              f"to 3 copies; indexed in {build['seconds']} s (load {build['load']})", flush=True)

    refsearch = run_refsearch(distinct, halves)
    curve = candidate_curve(halves["tune"]["index"], halves["tune"]["truth"],
                            [0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.675])
    cost = {"900 distinct photos": pair_cost(distinct), "report": pair_cost(halves["report"]["index"])}
    others = run_imagededup(halves)
    scale = synthetic_candidates(args.vectors, refsearch["candidate_threshold"])

    print_report(halves, refsearch, curve, cost, others, scale)
    if args.json:
        saved = {"machine": machine(), "refsearch": refsearch, "candidate_curve": curve, "pair_cost": cost,
                 "imagededup": others, "synthetic": scale}
        args.json.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
