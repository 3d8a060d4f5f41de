"""How relevant the references are for photos of classes the index does not hold, and how well the class
gate sees gray photos: today's ranking against each change of issue 14 alone and all of them together.

The fixed split: of the sample photos in file-name order (one per class), every ninth from the fifth on
(positions 4, 13, 22, ...) is held out: 100 query photos whose classes the index of the other 800 lacks.
Each held-out photo is queried as its luminance, k=5. Printed per variant:
- relevance@5: the mean Wu-Palmer similarity (refsearch.taxonomy) of the returned labels to the query's
  class, normalised per query between a random pick from the index (0) and the best five it holds (1);
- gray top-1 (colour top-1): how often the backbone's top class is the photo's on its luminance (on the
  colour photo), at the variant's input size, crop and weights;
- transfer PSNR: a fixed colour transfer from the top-3 references (each L bin of the query takes the
  mean a, b of the references' pixels in that bin), against the original photo;
- build images/s (the 800 photos) and query ms (network and search, per query).

    python bench/retrieval_quality.py [--queries 100] [--weights FILE] [--only NAME ...]
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


def split(photos):
    held_out = [p for i, p in enumerate(photos) if i % 9 == 4]
    return [p for i, p in enumerate(photos) if i % 9 != 4], held_out


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
    today = Build(224, "full", "imagenet")
    paper = SearchSettings(class_choice="probability", min_class_images=K)  # today: widen until k images
    return [
        Variant("today: 224 px full frame, ImageNet weights, next most probable classes", today, paper),
        Variant("next most probable classes, 10 images", today, SearchSettings(class_choice="probability")),
        Variant("taxonomy-aware widening", today, SearchSettings()),
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


def ensure_index(build: Build, photos_dir: Path) -> tuple[Index, float]:
    """The index of the 800 photos for a build (cached), and its build rate (nan when it was cached)."""
    path = CACHE / "quality" / f"{build.name}.index"
    summary = build_index(photos_dir, path, IndexConfig(input_size=build.input_size, crop=build.crop),
                          weights=build.weights, progress=False)
    return Index.open(path, weights=build.weights), summary.images_per_second if summary.added else float("nan")


def linked_folder(indexed: list[Path]) -> Path:
    folder = CACHE / "quality" / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for photo in indexed:
        link = folder / photo.name
        if not link.exists():
            link.symlink_to(photo)
    return folder


def colour_top1(index: Index, photos) -> float:
    import torch

    backbone, size = index.backbone, index.config.input_size
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--weights", default="gray", help="the gray-adapted weights (default: the shipped ones)")
    parser.add_argument("--only", nargs="*", help="run only the variants whose names start so")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")
    indexed, held_out = split(sample_photos())
    held_out = held_out[:args.queries]
    folder = linked_folder(indexed)
    wup = wu_palmer_matrix()
    transfer = Transfer()
    query_rows = [classes.class_index(p.name[:9]) for p in held_out]
    indexed_rows = np.array([classes.class_index(p.name[:9]) for p in indexed])
    similarity = wup[np.ix_(query_rows, indexed_rows)]  # (queries, indexed photos)
    random_pick = similarity.mean(axis=1)
    best_pick = -np.sort(-similarity, axis=1)[:, :K].mean(axis=1)
    opened: dict[str, tuple[Index, float, float]] = {}
    rows = []
    for variant in variants(args.weights):
        if args.only and not any(variant.name.startswith(prefix) for prefix in args.only):
            continue
        if variant.build.name not in opened:
            index, rate = ensure_index(variant.build, folder)
            opened[variant.build.name] = (index, rate, colour_top1(index, held_out))
        index, rate, colour = opened[variant.build.name]
        relevance, gray_correct, psnrs, latency = [], 0, [], []
        with Index.open(index.path, weights=variant.build.weights, search=variant.search) as searched:
            searched._backbone = index.backbone
            for photo, row, low, high in zip(held_out, query_rows, random_pick, best_pick):
                response = searched.search(Image.open(photo).convert("L"), k=K)
                labels = [classes.class_index(r.label) for r in response.results]
                relevance.append((wup[row, labels].mean() - low) / (high - low))
                gray_correct += response.predicted[0].wnid == photo.name[:9]
                psnrs.append(transfer.psnr(photo, [r.path for r in response.results[:3]]))
                latency.append(response.forward_ms + response.search_ms)
        rows.append((variant.name, np.mean(relevance), gray_correct / len(held_out), colour, np.mean(psnrs),
                     rate, np.median(latency)))
        print(f"  {variant.name}: relevance@5 {np.mean(relevance):.3f}", flush=True)
    print(f"\n{len(held_out)} held-out photos queried as gray, k={K}, against an index of {len(indexed)} photos "
          f"of other classes; load average at end {load_avg()}")
    print("| variant | relevance@5 (normalised) | gray top-1 | colour top-1 | transfer PSNR (dB) | build img/s | "
          "query ms (median) |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, rel, gray, colour, quality, rate, ms in rows:
        print(f"| {name} | {rel:.3f} | {gray:.0%} | {colour:.0%} | {quality:.2f} | {rate:.1f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
