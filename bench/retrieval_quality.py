"""How relevant the references are for photos of classes the index does not hold, and how well the class
gate sees gray photos: a baseline ranking (224 px full frame, ImageNet weights, the paper's widening) against
each of the build and search settings alone and all of them together.

The fixed split: of the sample photos in file-name order (one per class), every ninth from the fifth on
(positions 4, 13, 22, ...) is held out: 100 query photos whose classes the index of the other 800 lacks.
`--folds` names other splits too (fold f holds out positions f, f + 9, ...; all nine folds query every
photo once, each against its own index of 800), and then the per-fold tables are followed by each
variant's figures over all folds' queries, with its relevance paired against that of the first variant
run (in this file's order of variants, whatever the order of --only).
Each held-out photo is queried as its luminance, k=5. Printed per variant:
- relevance@5: the mean Wu-Palmer similarity (refsearch.taxonomy) of the returned labels to the query's
  class, normalised per query between a random pick from the index (0) and the best five it holds (1);
- gray top-1 (colour top-1): how often the backbone's top class is the photo's on its luminance (on the
  colour photo), at the variant's input size, crop and weights;
- transfer PSNR: a fixed colour transfer from the top-3 references (each L bin of the query takes the
  mean a, b of the references' pixels in that bin), against the original photo;
- build images/s (the 800 photos) and query ms (network and search, per query).

    python bench/retrieval_quality.py [--queries 100] [--weights FILE] [--only NAME ...] [--folds 0 1 ... 8]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from benchlib import CACHE, load_avg, machine, sample_photos
from PIL import Image

from colorize.lab import colorize_gray, luma, rgb_to_lab
from colorize.metrics import psnr
from refsearch import Index, IndexConfig, SearchSettings, build_index, classes
from refsearch.taxonomy import wu_palmer_matrix

K = 5
_TRANSFER_SHORT_SIDE = 256
_L_BINS = 16


FOLDS = 9


def split(photos, fold: int = 4):
    held_out = [p for i, p in enumerate(photos) if i % FOLDS == fold]
    return [p for i, p in enumerate(photos) if i % FOLDS != fold], held_out


def fold_folder(fold: int) -> Path:
    """The cache folder of a fold's photos and indexes."""
    return CACHE / "quality" / f"fold-{fold}"


@dataclass(frozen=True)
class Build:
    input_size: int
    crop: str
    weights: str

    @property
    def name(self) -> str:
        return f"{self.input_size}-{self.crop}-{self.weights}"


@dataclass(frozen=True)
class Variant:
    name: str
    build: Build
    search: SearchSettings = field(default_factory=SearchSettings)


def variants(gray_weights: str) -> list[Variant]:
    baseline = Build(224, "full", "imagenet")
    paper = SearchSettings(class_choice="probability", min_class_images=K)  # the paper's: widen until k images
    return [
        Variant("baseline: 224 px full frame, ImageNet weights, next most probable classes", baseline, paper),
        Variant("next most probable classes, 10 images", baseline, SearchSettings(class_choice="probability")),
        Variant("taxonomy-aware widening", baseline, SearchSettings()),
        Variant("260 px full frame", Build(260, "full", "imagenet"), paper),
        Variant("224 px centre crop", Build(224, "center", "imagenet"), paper),
        Variant("260 px centre crop", Build(260, "center", "imagenet"), paper),
        Variant("gray-adapted weights", Build(224, "full", gray_weights), paper),
        Variant("gray-adapted weights at 260 px full frame", Build(260, "full", gray_weights), paper),
        Variant("all at 224 px: full frame, gray-adapted, taxonomy", Build(224, "full", gray_weights),
                SearchSettings()),
        Variant("all: 260 px full frame, gray-adapted, taxonomy", Build(260, "full", gray_weights), SearchSettings()),
        Variant("all, widening to 5 images", Build(260, "full", gray_weights), SearchSettings(min_class_images=5)),
        Variant("all, widening to 20 images", Build(260, "full", gray_weights), SearchSettings(min_class_images=20,
                                                                                              widen_classes=20)),
        Variant("all: 260 px centre crop, gray-adapted, taxonomy", Build(260, "center", gray_weights),
                SearchSettings()),
    ]


def ensure_index(build: Build, photos_dir: Path, runtime: str) -> tuple[Index, float]:
    """The index of the 800 photos for a build (cached beside them), and its build rate (nan when it was
    cached), opened to run its network on `runtime`."""
    path = photos_dir.parent / f"{build.name}.index"
    summary = build_index(photos_dir, path, IndexConfig(input_size=build.input_size, crop=build.crop),
                          weights=build.weights, runtime=runtime, progress=False)
    return (Index.open(path, weights=build.weights, runtime=runtime),
            summary.images_per_second if summary.added else float("nan"))


def linked_folder(indexed: list[Path], fold: int) -> Path:
    folder = fold_folder(fold) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for photo in indexed:
        link = folder / photo.name
        if not link.exists():
            link.symlink_to(photo)
    return folder


def colour_top1(index: Index, photos) -> float:
    import torch

    from refsearch.network import open_network

    size = index.config.input_size  # the colour photo, which only torch's backbone takes (three channels)
    backbone = open_network(index.config.backbone, input_size=size, fingerprint=index.config.weights,
                            runtime="torch").backbone
    correct = 0
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        if index.config.crop == "center":
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        pixels = torch.from_numpy(np.array(image.resize((size, size), Image.BILINEAR))).permute(2, 0, 1)[None]
        with torch.inference_mode():
            logits = backbone.features(backbone.normalize(pixels.float())).logits
        correct += int(classes.wnids()[int(logits.argmax())] == photo.name[:9])
    return correct / len(photos)


class Transfer:
    """The fixed colour transfer, with each reference's (L bin, a, b) sums kept."""

    def __init__(self):
        self._sums: dict[str, np.ndarray] = {}

    @staticmethod
    def _lab(path) -> np.ndarray:
        image = Image.open(path).convert("RGB")
        scale = _TRANSFER_SHORT_SIDE / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
        return np.asarray(image)

    def _bin_sums(self, path: str) -> np.ndarray:
        if path not in self._sums:
            lab = rgb_to_lab(self._lab(path)).reshape(-1, 3)
            bins = np.clip((lab[:, 0] / 100 * _L_BINS).astype(int), 0, _L_BINS - 1)
            sums = np.zeros((_L_BINS, 3))
            np.add.at(sums, bins, np.c_[np.ones(len(lab)), lab[:, 1:]])
            self._sums[path] = sums
        return self._sums[path]

    def psnr(self, query_path, references: list[str]) -> float:
        original = self._lab(query_path)
        sums = sum(self._bin_sums(r) for r in references)
        overall = sums[:, 1:].sum(0) / max(sums[:, 0].sum(), 1)
        mean_ab = np.where(sums[:, :1] > 0, sums[:, 1:] / np.maximum(sums[:, :1], 1), overall)
        gray = luma(original)
        lightness = rgb_to_lab(np.repeat(gray[..., None], 3, axis=2))[..., 0]
        bins = np.clip((lightness / 100 * _L_BINS).astype(int), 0, _L_BINS - 1)
        return psnr(colorize_gray(gray, mean_ab[bins]), original)


def run_fold(fold: int, args, wup: np.ndarray, transfer: Transfer) -> dict[str, dict]:
    """Each chosen variant's per-query figures on one fold, its table printed."""
    indexed, held_out = split(sample_photos(), fold)
    held_out = held_out[:args.queries]
    folder = linked_folder(indexed, fold)
    query_rows = [classes.class_index(p.name[:9]) for p in held_out]
    indexed_rows = np.array([classes.class_index(p.name[:9]) for p in indexed])
    similarity = wup[np.ix_(query_rows, indexed_rows)]  # (queries, indexed photos)
    random_pick = similarity.mean(axis=1)
    best_pick = -np.sort(-similarity, axis=1)[:, :K].mean(axis=1)
    opened: dict[str, tuple[Index, float, float]] = {}
    found: dict[str, dict] = {}
    for variant in variants(args.weights):
        if args.only and not any(variant.name.startswith(prefix) for prefix in args.only):
            continue
        if variant.build.name not in opened:
            index, rate = ensure_index(variant.build, folder, args.runtime)
            opened[variant.build.name] = (index, rate, colour_top1(index, held_out))
        index, rate, colour = opened[variant.build.name]
        relevance, gray, psnrs, latency = [], [], [], []
        with Index.open(index.path, weights=variant.build.weights, search=variant.search,
                        runtime=args.runtime) as searched:
            searched.network = index.network
            for photo, row, low, high in zip(held_out, query_rows, random_pick, best_pick):
                response = searched.search(Image.open(photo).convert("L"), k=K)
                labels = [classes.class_index(r.label) for r in response.results]
                relevance.append((wup[row, labels].mean() - low) / (high - low))
                gray.append(response.predicted[0].wnid == photo.name[:9])
                psnrs.append(transfer.psnr(photo, [r.path for r in response.results[:3]]))
                latency.append(response.forward_ms + response.search_ms)
        found[variant.name] = {"relevance": relevance, "gray": gray, "colour": colour, "psnr": psnrs,
                               "rate": [rate], "latency": latency}
        print(f"  fold {fold}, {variant.name}: relevance@5 {np.mean(relevance):.3f}", flush=True)
    for index, _, _ in opened.values():
        index.close()
    print(f"\nfold {fold}: {len(held_out)} held-out photos queried as gray, k={K}, against an index of "
          f"{len(indexed)} photos of other classes; load average at end {load_avg()}")
    print_table(found)
    return found


def print_table(found: dict[str, dict]) -> None:
    print("| variant | relevance@5 (normalised) | gray top-1 | colour top-1 | transfer PSNR (dB) | build img/s | "
          "query ms (median) |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, f in found.items():
        rates = [rate for rate in f["rate"] if not np.isnan(rate)]  # nan: the index was cached
        print(f"| {name} | {np.mean(f['relevance']):.3f} | {np.mean(f['gray']):.0%} | "
              f"{np.mean(f['colour']):.0%} | {np.mean(f['psnr']):.2f} | {np.mean(rates) if rates else np.nan:.1f} | "
              f"{np.median(f['latency']):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100, help="held-out photos queried per fold")
    parser.add_argument("--weights", default="gray", help="the gray-adapted weights (default: the shipped ones)")
    parser.add_argument("--only", nargs="*", help="run only the variants whose names start so")
    parser.add_argument("--folds", nargs="+", type=int, default=[4], choices=range(FOLDS), metavar="FOLD",
                        help=f"the splits to run, 0 to {FOLDS - 1} (default 4, the fixed split)")
    parser.add_argument("--runtime", default="auto", help="what runs the network (queries, and builds not cached)")
    args = parser.parse_args()
    args.folds = sorted(set(args.folds))
    print(f"machine: {machine()}; load average at start {load_avg()}")
    wup = wu_palmer_matrix()
    transfer = Transfer()
    overall: dict[str, dict] = {}
    fold_relevance: dict[str, list[float]] = {}
    for fold in args.folds:
        for name, figures in run_fold(fold, args, wup, transfer).items():
            pooled = overall.setdefault(name, {key: [] for key in figures})
            for key, values in figures.items():
                pooled[key].extend(values if isinstance(values, list) else [values])
            fold_relevance.setdefault(name, []).append(float(np.mean(figures["relevance"])))
    if len(args.folds) < 2:
        return
    print(f"\nall {len(args.folds)} folds, {len(next(iter(overall.values()))['relevance'])} queries "
          f"(colour top-1 and build img/s: the mean of the folds')")
    print_table(overall)
    baseline, *others = overall
    for name in others:
        difference = np.array(overall[name]["relevance"]) - np.array(overall[baseline]["relevance"])
        per_fold = np.array(fold_relevance[name]) - np.array(fold_relevance[baseline])
        print(f"relevance@5, {name} minus {baseline}: {difference.mean():+.3f} (standard error "
              f"{difference.std(ddof=1) / np.sqrt(len(difference)):.3f}; per fold "
              f"{', '.join(f'{d:+.3f}' for d in per_fold)})")


if __name__ == "__main__":
    main()
